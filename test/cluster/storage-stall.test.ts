import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, expect, test } from 'vitest';
import { startMember } from '../../src/index.js';
import type { Member } from '../../src/index.js';
import type { Ready } from '../../src/raft/ready.js';
import type { ApplyResult } from '../../src/kv/kv-state.js';
import { LevelStorage } from '../../src/storage/level-storage.js';
import { freePort, sleep, waitFor } from '../support/process-cluster.js';

/**
 * LevelDB stalls its writers while a compaction catches up ("Too many L0 files; waiting..."), for
 * seconds under heavy writes of large values, and on all three members at once, since they apply
 * the same writes. A persist then waits for it. This stalls every member's persist for five
 * election timeouts, at the point where LevelDB would (after the log write, before the answer),
 * and checks that nobody campaigned: the heartbeats and their replies must not wait for it.
 * Three real members in this process, on real LevelDB and real HTTP; the stall is the only fault.
 */
const HEARTBEAT_MS = 50;
const ELECTION_MS = 300;
const STALL_MS = 5 * ELECTION_MS;

let gate: Promise<void> | null = null;
const persist = LevelStorage.prototype.persist;
LevelStorage.prototype.persist = async function stalled(this: LevelStorage, ready: Ready): Promise<ApplyResult[]> {
  const results = await persist.call(this, ready);
  if (gate !== null) await gate;
  return results;
};

let dir = '';
const members: Member[] = [];
afterAll(async () => {
  gate = null;
  LevelStorage.prototype.persist = persist;
  await Promise.all(members.map((m) => m.stop()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a storage stall of five election timeouts on every member causes no election', { timeout: 60_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-stall-'));
  const names = ['s1', 's2', 's3'];
  const ports = await Promise.all(names.flatMap(() => [freePort(), freePort()]));
  const peerUrl = (i: number) => `http://127.0.0.1:${ports[2 * i + 1]}`;
  const initialCluster = names.map((n, i) => `${n}=${peerUrl(i)}`).join(',');
  for (const [i, name] of names.entries()) {
    members.push(
      await startMember({
        name, dataDir: join(dir, name), listenClientUrl: `http://127.0.0.1:${ports[2 * i]}`, listenPeerUrl: peerUrl(i),
        initialCluster, heartbeatIntervalMs: HEARTBEAT_MS, electionTimeoutMs: ELECTION_MS,
        logger: pino({ level: 'silent' }),
      }),
    );
  }
  const leader = await waitFor('a leader all three follow', async () => {
    const views = members.map((m) => m.status());
    const l = views[0].leader;
    return l !== null && views.every((v) => v.leader === l) ? members.find((m) => m.name === l)! : null;
  }, 10_000);
  await leader.put('before', Buffer.from('x'), {});
  const term = leader.status().term;

  let open!: () => void;
  gate = new Promise<void>((resolve) => (open = resolve));
  // A write makes every member persist (the leader its entry, the followers the append), and
  // each then stays in its stalled Ready until the gate opens.
  const during = leader.put('during', Buffer.from('y'), {});
  await sleep(STALL_MS);
  gate = null;
  open();
  await during;
  await leader.put('after', Buffer.from('z'), {});

  for (const m of members) {
    const s = m.status();
    expect({ member: m.name, term: s.term, leader: s.leader }).toEqual({ member: m.name, term, leader: leader.name });
  }
});
