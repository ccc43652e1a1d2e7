import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, expect, test } from 'vitest';
import { connect, startMember } from '../../src/index.js';
import type { Member } from '../../src/index.js';
import { freePort } from '../support/process-cluster.js';

/**
 * A leader does not send a message of its own for each commit (lazy commit notification): the next
 * append carries the commit index, and when none follows, a short timer sends it. Here nothing
 * follows each write and heartbeats are a second apart, so only that timer can let the followers
 * apply a write within the 300 ms this allows. Six writes at random moments: without the timer,
 * each would have to land within 300 ms before a heartbeat.
 */
const HEARTBEAT_MS = 1000;
const APPLY_WITHIN_MS = 300;
const WRITES = 6;

let dir = '';
const members: Member[] = [];
afterAll(async () => {
  await Promise.all(members.map((m) => m.stop()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function until(what: string, timeoutMs: number, probe: () => boolean): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < 10_000; i++) {
    if (probe()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`gave up waiting for ${what}`);
}

test('followers apply a write without waiting for the next heartbeat', { timeout: 60_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-commit-notify-'));
  const names = ['a', 'b', 'c'];
  const ports = await Promise.all(names.map(async () => ({ client: await freePort(), peer: await freePort() })));
  const initialCluster = names.map((n, i) => `${n}=http://127.0.0.1:${ports[i].peer}`).join(',');
  for (const [i, name] of names.entries()) {
    members.push(
      await startMember({
        name, dataDir: join(dir, name), initialCluster,
        listenClientUrl: `http://127.0.0.1:${ports[i].client}`, listenPeerUrl: `http://127.0.0.1:${ports[i].peer}`,
        heartbeatIntervalMs: HEARTBEAT_MS, electionTimeoutMs: 4 * HEARTBEAT_MS,
        logger: pino({ level: 'silent' }),
      }),
    );
  }
  await until('a leader', 30_000, () => members.some((m) => m.status().role === 'leader'));
  const leader = members.find((m) => m.status().role === 'leader')!;
  const followers = members.filter((m) => m !== leader);
  const c = connect({ endpoints: [leader.clientUrl] });
  try {
    for (let i = 0; i < WRITES; i++) {
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * HEARTBEAT_MS)));
      await c.put(`notify/${i}`, `v${i}`);
      const index = leader.status().appliedIndex;
      const waited = await until(`the followers to apply ${index}`, 5 * HEARTBEAT_MS, () => followers.every((f) => f.status().appliedIndex >= index));
      expect(waited, `write ${i} reached the followers after ${Math.round(waited)} ms`).toBeLessThan(APPLY_WITHIN_MS);
    }
  } finally {
    await c.close();
  }
});
