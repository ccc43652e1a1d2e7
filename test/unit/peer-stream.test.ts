import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import type { FastifyInstance } from 'fastify';
import type { Message } from '../../src/raft/types.js';
import { encodeFrame } from '../../src/transport/codec.js';
import { PeerTransport, PEER_HEADERS } from '../../src/transport/peer-client.js';
import { buildPeerApp } from '../../src/transport/peer-routes.js';
import { FrameError, FrameReader, PEER_STREAM_PATH, PEER_STREAM_PROTOCOL } from '../../src/transport/peer-stream.js';
import { SILENT_LOGGER } from '../../src/util/logger.js';
import { createLogger } from '../../src/util/log.js';
import { SeededRng } from '../../src/util/rng.js';

function append(i: number, from = 'n1', to = 'n2'): Message {
  return {
    type: 'append', from, to, term: 3, prevIndex: i, prevTerm: 3, commit: i,
    entries: [{ index: i + 1, term: 3, type: 'normal', data: new TextEncoder().encode(`value-${i}`) }],
  };
}

describe('FrameReader', () => {
  test('gives back every frame, in order, however the bytes are split', () => {
    const rng = new SeededRng(7);
    const messages = Array.from({ length: 200 }, (_, i) => append(i));
    const stream = Buffer.concat(messages.map((m) => encodeFrame([m])));
    for (let round = 0; round < 50; round++) {
      const reader = new FrameReader();
      const frames: Buffer[] = [];
      let at = 0;
      while (at < stream.length) {
        const n = 1 + rng.int(0, 300);
        frames.push(...reader.push(stream.subarray(at, at + n)));
        at += n;
      }
      expect(frames.length).toBe(messages.length);
      expect(reader.buffered).toBe(0);
      const again = Buffer.concat(frames.map((f) => Buffer.concat([Buffer.from(Uint32Array.of(f.length).buffer), f])));
      expect(again.equals(stream)).toBe(true);
    }
  });

  test('refuses a frame larger than its limit', () => {
    const reader = new FrameReader(1024);
    const header = Buffer.alloc(4);
    header.writeUInt32LE(1025, 0);
    expect(() => reader.push(header)).toThrow(FrameError);
  });
});

describe('peer streams over loopback', () => {
  let app: FastifyInstance | null = null;
  let transport: PeerTransport | null = null;
  afterEach(async () => {
    await transport?.close();
    await app?.close();
    app = null;
    transport = null;
  });

  async function listen(received: Message[], rejected: string[]): Promise<string> {
    app = buildPeerApp(
      {
        self: 'n2',
        receive: (_from, _url, ms) => received.push(...ms),
        rejected: (r) => rejected.push(r),
        snapshotOffset: async () => 0,
        receiveSnapshot: async () => ({ status: 400 }),
      },
      createLogger('silent', false),
    );
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    return `http://127.0.0.1:${address.port}`;
  }

  async function until(what: string, ok: () => boolean): Promise<void> {
    for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
    if (!ok()) throw new Error(`timed out waiting for ${what}`);
  }

  test('every message sent arrives once, in order, decoded', async () => {
    const received: Message[] = [];
    const url = await listen(received, []);
    const unreachable: string[] = [];
    transport = new PeerTransport({ self: 'n1', selfClientUrl: 'http://127.0.0.1:1', logger: SILENT_LOGGER, onUnreachable: (p) => unreachable.push(p) });
    transport.setPeer('n2', url);
    const sent = Array.from({ length: 3000 }, (_, i) => append(i));
    for (let i = 0; i < sent.length; i += 7) transport.send(sent.slice(i, i + 7));
    await until('all messages', () => received.length >= sent.length);
    expect(received.length).toBe(sent.length);
    expect(received.map((m) => (m.type === 'append' ? m.prevIndex : -1))).toEqual(sent.map((_, i) => i));
    const last = received.at(-1)!;
    expect(last.type === 'append' && new TextDecoder().decode(last.entries[0].data)).toBe('value-2999');
    expect(unreachable).toEqual([]);
  });

  test('a peer that went away is reported unreachable, and the link reconnects when it is back', async () => {
    const received: Message[] = [];
    const url = await listen(received, []);
    const port = Number(new URL(url).port);
    const unreachable: string[] = [];
    transport = new PeerTransport({ self: 'n1', selfClientUrl: 'http://127.0.0.1:1', logger: SILENT_LOGGER, onUnreachable: (p) => unreachable.push(p) });
    transport.setPeer('n2', url);
    transport.send([append(1)]);
    await until('the first message', () => received.length === 1);
    await app!.close();
    app = null;
    for (let i = 0; i < 100 && unreachable.length === 0; i++) {
      transport.send([append(2)]);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(unreachable.length).toBeGreaterThan(0);
    // The same port again: a restarted member.
    const again: Message[] = [];
    app = buildPeerApp(
      { self: 'n2', receive: (_f, _u, ms) => again.push(...ms), rejected: () => {}, snapshotOffset: async () => 0, receiveSnapshot: async () => ({ status: 400 }) },
      createLogger('silent', false),
    );
    await app.listen({ host: '127.0.0.1', port });
    for (let i = 0; i < 200 && again.length === 0; i++) {
      transport.send([append(3)]);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(again.length).toBeGreaterThan(0);
  });

  test('impostors and garbage are refused without crashing the listener', async () => {
    const received: Message[] = [];
    const rejected: string[] = [];
    const url = await listen(received, rejected);
    const port = Number(new URL(url).port);
    const open = (from: string) =>
      new Promise<Socket>((resolve, reject) => {
        const s = connect(port, '127.0.0.1', () => {
          s.write(`GET ${PEER_STREAM_PATH} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${PEER_STREAM_PROTOCOL}\r\n${PEER_HEADERS.from}: ${from}\r\n\r\n`);
          s.once('data', (d) => (d.toString().startsWith('HTTP/1.1 101') ? resolve(s) : reject(new Error(d.toString()))));
        });
        s.on('error', reject);
      });
    // n3 claims to be n3 but sends a message from n1: dropped, counted.
    const impostor = await open('n3');
    impostor.write(encodeFrame([append(1, 'n1', 'n2')]));
    await until('the impostor to be counted', () => rejected.length === 1);
    // Garbage inside a well-formed frame: the connection is closed.
    const closed = new Promise((r) => impostor.once('close', r));
    const junk = Buffer.alloc(12, 0xab);
    junk.writeUInt32LE(8, 0);
    impostor.write(junk);
    await closed;
    // The listener still works for an honest peer.
    const honest = await open('n1');
    honest.write(encodeFrame([append(5)]));
    await until('the honest message', () => received.length === 1);
    honest.destroy();
    expect(received[0].from).toBe('n1');
    // A plain request for an unknown upgrade gets an HTTP error, not a hang.
    const refused = await new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1', () => s.write(`GET /elsewhere HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`));
      s.once('data', (d) => {
        resolve(d.toString());
        s.destroy();
      });
    });
    expect(refused).toMatch(/^HTTP\/1\.1 404/);
  });
});
