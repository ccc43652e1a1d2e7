import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { buildApi } from '../../src/api/build-api.js';
import type { KvService } from '../../src/api/kv-service.js';
import type { KvRecord } from '../../src/kv/kv-record.js';
import { ShuttingDownError } from '../../src/member/errors.js';

// GET /v1/kv/KEY?consistency=stale is answered before Fastify (src/api/stale-read.ts). Over a real
// socket (inject() never reaches the server's request handler), its answer must be byte for byte
// the Fastify route's, and everything it does not take must still reach the route.

const MAX_KEY_BYTES = 64;

class FakeKv {
  readonly store = new Map<string, KvRecord>();
  readonly gets: string[] = [];
  readonly observed: string[] = [];
  stopping = false;

  get(key: string, consistency: string): KvRecord | null | Promise<KvRecord | null> {
    this.gets.push(`${consistency} ${key}`);
    if (this.stopping) return Promise.reject(new ShuttingDownError());
    return this.store.get(key) ?? null;
  }

  observeHttp(method: string, route: string, status: number): void {
    this.observed.push(`${method} ${route} ${status}`);
  }
}

const kv = new FakeKv();
let app: FastifyInstance;
let port = 0;

/** One raw HTTP/1.1 exchange; the whole response as text, minus the Date header (it changes). */
function exchange(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1').replace(/\r\nDate: [^\r]*/, '')));
    socket.write(request);
  });
}

function get(path: string, extraHeaders = ''): Promise<string> {
  return exchange(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extraHeaders}Connection: close\r\n\r\n`);
}

function newApi(): FastifyInstance {
  return buildApi(kv as unknown as KvService, {
    logger: pino({ level: 'silent' }),
    maxKeyBytes: MAX_KEY_BYTES,
    maxValueBytes: 1024,
    forwardToLeader: false,
    requestTimeoutMs: 1000,
  });
}

beforeAll(async () => {
  app = newApi();
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await app.close();
});
beforeEach(() => {
  kv.stopping = false;
  kv.store.clear();
  kv.gets.length = 0;
  kv.observed.length = 0;
  const value = Buffer.from([0, 1, 0xff, 13, 10, 0x41]);
  kv.store.set('a/b', { key: 'a/b', value, createRevision: 3, modRevision: 7, version: 2, lease: 0 });
  // A value that is a view into a larger buffer (as LevelDB's are): only the view is sent.
  const big = Buffer.from('xxxxHELLOyyyy');
  kv.store.set('view', { key: 'view', value: big.subarray(4, 9), createRevision: 1, modRevision: 1, version: 1, lease: 9 });
  kv.store.set('empty', { key: 'empty', value: new Uint8Array(0), createRevision: 5, modRevision: 6, version: 2, lease: 0 });
});

const OK_HEAD = (etag: number, create: number, version: number, length: number) =>
  'HTTP/1.1 200 OK\r\n' +
  `etag: "${etag}"\r\nx-flotilla-create-revision: ${create}\r\nx-flotilla-version: ${version}\r\n` +
  `content-type: application/octet-stream\r\ncontent-length: ${length}\r\nConnection: close\r\n\r\n`;

describe('GET ?consistency=stale before Fastify', () => {
  test('a stale GET answers the exact bytes the Fastify route does', async () => {
    for (const key of ['a/b', 'view', 'empty']) {
      const fast = await get(`/v1/kv/${key}?consistency=stale`);
      // An extra query parameter is not the fast path's shape: the Fastify route answers this one.
      const routed = await get(`/v1/kv/${key}?consistency=stale&x=1`);
      expect(fast).toBe(routed);
    }
    expect(await get('/v1/kv/a/b?consistency=stale')).toBe(`${OK_HEAD(7, 3, 2, 6)}\x00\x01\xff\r\nA`);
    expect(await get('/v1/kv/view?consistency=stale')).toBe(`${OK_HEAD(1, 1, 1, 5)}HELLO`);
    expect(await get('/v1/kv/empty?consistency=stale')).toBe(OK_HEAD(6, 5, 2, 0));
  });

  test('keep-alive: the same headers as the route, and Keep-Alive from the same server settings', async () => {
    const req = (q: string) => `GET /v1/kv/view?${q} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const both = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let text = '';
      socket.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        if (text.split('HELLO').length === 3) {
          socket.destroy();
          resolve(text);
        }
      });
      socket.on('error', reject);
      socket.write(req('consistency=stale') + req('consistency=stale&x=1'));
    });
    const [fast, routed] = both.replace(/\r\nDate: [^\r]*/g, '').split(/(?<=HELLO)/);
    expect(fast).toBe(routed);
    expect(fast).toContain('\r\nConnection: keep-alive\r\nKeep-Alive: timeout=72\r\n');
  });

  test('an answer is kept with its record: a read after a write answers the new record', async () => {
    expect(await get('/v1/kv/a/b?consistency=stale')).toBe(`${OK_HEAD(7, 3, 2, 6)}\x00\x01\xff\r\nA`);
    expect(await get('/v1/kv/a/b?consistency=stale')).toBe(`${OK_HEAD(7, 3, 2, 6)}\x00\x01\xff\r\nA`);
    // A write makes a new record for the key (records never change in place).
    kv.store.set('a/b', { key: 'a/b', value: Buffer.from('new!!'), createRevision: 3, modRevision: 9, version: 3, lease: 0 });
    expect(await get('/v1/kv/a/b?consistency=stale')).toBe(`${OK_HEAD(9, 3, 3, 5)}new!!`);
    // The key deleted: the route's 404, not an answer kept from before.
    kv.store.delete('a/b');
    expect(await get('/v1/kv/a/b?consistency=stale')).toMatch(/^HTTP\/1\.1 404 /);
  });

  test('each read is counted in the latency metrics under the route, as before', async () => {
    await get('/v1/kv/a/b?consistency=stale');
    await get('/v1/kv/a/b?consistency=stale&x=1');
    expect(kv.observed).toEqual(['GET /v1/kv/* 200', 'GET /v1/kv/* 200']);
    expect(kv.gets).toEqual(['stale a/b', 'stale a/b']);
  });

  test('an absent key gets the route 404 and its JSON body', async () => {
    const r = await get('/v1/kv/nope?consistency=stale');
    expect(r).toMatch(/^HTTP\/1\.1 404 Not Found\r\ncontent-type: application\/json; charset=utf-8\r\n/);
    expect(r.endsWith('{"error":{"code":"KEY_NOT_FOUND","message":"Key \\"nope\\" not found"}}')).toBe(true);
    expect(kv.observed).toEqual(['GET /v1/kv/* 404']);
  });

  test('what the fast path does not take reaches the route unchanged', async () => {
    kv.store.set('a b', { key: 'a b', value: Buffer.from('sp'), createRevision: 1, modRevision: 2, version: 2, lease: 0 });
    expect(await get('/v1/kv/a%20b?consistency=stale')).toBe(`${OK_HEAD(2, 1, 2, 2)}sp`); // percent-decoded by the route
    expect((await get('/v1/kv/a/b')).startsWith('HTTP/1.1 200 OK\r\n')).toBe(true); // linearizable
    expect(await get('/v1/kv/?consistency=stale')).toMatch(/^HTTP\/1\.1 400 /); // empty key
    expect(await get(`/v1/kv/${'k'.repeat(MAX_KEY_BYTES + 1)}?consistency=stale`)).toMatch(/^HTTP\/1\.1 413 /);
    expect(await get('/v1/kv/a/b?consistency=bogus')).toMatch(/^HTTP\/1\.1 400 /);
    const withBody = await exchange('GET /v1/kv/a/b?consistency=stale HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi');
    expect(withBody.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
    const head = await exchange('HEAD /v1/kv/a/b?consistency=stale HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(head.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
    expect(kv.gets).toContain('linearizable a/b');
  });

  test('a member that is shutting down is answered by the route (503, Retry-After)', async () => {
    kv.stopping = true;
    const r = await get('/v1/kv/a/b?consistency=stale');
    expect(r).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\nretry-after: 1\r\n/);
    expect(r).toContain('"code":"SHUTTING_DOWN"');
  });
});

describe('the front door in the member API', () => {
  test('close() does not wait for a keep-alive connection the front door answered on', async () => {
    const own = newApi();
    await own.listen({ host: '127.0.0.1', port: 0 });
    const socket = connect((own.server.address() as AddressInfo).port, '127.0.0.1');
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
    const answered = new Promise<string>((resolve) => socket.once('data', (c: Buffer) => resolve(c.toString('latin1'))));
    socket.write('GET /v1/kv/view?consistency=stale HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await answered).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\nConnection: keep-alive\r\nKeep-Alive: timeout=72\r\n\r\nHELLO$/);
    const gets = kv.gets.length;
    // Fastify closes the server, and the idle keep-alive connection with it: were it left open,
    // close() would wait for its 72 s keep-alive timeout and the test would time out.
    await own.close();
    await closed;
    expect(kv.gets.length).toBe(gets);
  });
});
