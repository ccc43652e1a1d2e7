import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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
