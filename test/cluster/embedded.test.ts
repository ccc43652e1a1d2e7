import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, expect, test } from 'vitest';
import { connect, startMember } from '../../src/index.js';
import type { Member } from '../../src/index.js';
import { freePort } from '../support/process-cluster.js';

let dir = '';
let member: Member | undefined;
afterAll(async () => {
  await member?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A service carries its own store: startMember runs a member in this process, the client talks to it. */
test('startMember runs a member in-process; the client reads and writes through it; stop is clean', { timeout: 60_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-embedded-'));
  const client = `http://127.0.0.1:${await freePort()}`;
  const peer = `http://127.0.0.1:${await freePort()}`;
  member = await startMember({
    name: 'solo', dataDir: dir, listenClientUrl: client, listenPeerUrl: peer,
    initialCluster: `solo=${peer}`, heartbeatIntervalMs: 20, electionTimeoutMs: 200,
    logger: pino({ level: 'silent' }),
  });
  const c = connect({ endpoints: [client] });
  try {
    const put = await c.put('config/app', 'v1');
    expect(put.modRevision).toBeGreaterThan(0);
    expect((await c.get('config/app'))?.value.toString()).toBe('v1');
    expect(member.status().role).toBe('leader');
  } finally {
    await c.close();
  }
  await member.stop();
  member = undefined;
  await expect(startMember({ name: 'bad name!', dataDir: dir, listenClientUrl: client, listenPeerUrl: peer })).rejects.toThrow(/name/);
});

/** A member that cannot listen on its client URL fails to start and leaves nothing behind. */
test('a failed start (client port taken) closes what it opened: the peer port, the data dir', { timeout: 60_000 }, async () => {
  const failedDir = await mkdtemp(join(tmpdir(), 'flotilla-embedded-'));
  const taken = createServer();
  try {
    const clientPort = await freePort();
    await new Promise<void>((resolve) => taken.listen(clientPort, '127.0.0.1', resolve));
    const client = `http://127.0.0.1:${clientPort}`;
    const peer = `http://127.0.0.1:${await freePort()}`;
    const fatal: unknown[] = [];
    const options = {
      name: 'solo', dataDir: failedDir, listenClientUrl: client, listenPeerUrl: peer,
      initialCluster: `solo=${peer}`, heartbeatIntervalMs: 20, electionTimeoutMs: 200,
      logger: pino({ level: 'silent' }), onFatal: (err: unknown) => void fatal.push(err),
    };
    await expect(startMember(options)).rejects.toThrow(/EADDRINUSE/);
    // The peer listener it had opened is closed again: the port can be bound.
    const probe = createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(Number(new URL(peer).port), '127.0.0.1', resolve);
    });
    await new Promise((resolve) => probe.close(resolve));
    // And the data dir is free: once the port is, the same member starts and serves.
    await new Promise((resolve) => taken.close(resolve));
    const again = await startMember(options);
    try {
      const c = connect({ endpoints: [client] });
      try {
        await c.put('k', 'v');
      } finally {
        await c.close();
      }
    } finally {
      await again.stop();
    }
    expect(fatal).toEqual([]);
  } finally {
    if (taken.listening) await new Promise((resolve) => taken.close(resolve));
    await rm(failedDir, { recursive: true, force: true });
  }
});
