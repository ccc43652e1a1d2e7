import { afterAll, expect, test } from 'vitest';
import { SeededRng } from '../../src/util/rng.js';
import { http, ProcessCluster, sleep } from '../support/process-cluster.js';

const KEYS = 16;
const CYCLES = Number(process.env['FLOTILLA_KILL_CYCLES'] ?? 20);
const SEED = Number(process.env['FLOTILLA_SEED'] ?? Math.floor(Math.random() * 2 ** 31));

interface Ack {
  readonly value: string;
  readonly modRevision: number;
}

let cluster: ProcessCluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

/**
 * SIGKILL members (often the leader) under concurrent writers, restart them from their data
 * dirs, and check that no acknowledged write was lost: each key's final value is its last
 * acknowledged write, or a write whose outcome was unknown and that came later.
 */
test(`no acknowledged write is lost over ${CYCLES} SIGKILL/restart cycles (seed ${SEED})`, { timeout: 300_000 }, async () => {
  const rng = new SeededRng(SEED);
  cluster = await ProcessCluster.create({ size: 3, heartbeatMs: 50, electionMs: 500 });
  const c = cluster;
  await c.startAll();

  const acked = new Map<string, Ack[]>();
  const unknown = new Map<string, Set<string>>();
  let stop = false;
  let okCount = 0;
  let unknownCount = 0;

  async function writer(id: number): Promise<void> {
    for (let seq = 0; !stop && seq < 1_000_000; seq++) {
      const key = `k${rng.int(0, KEYS)}`;
      const value = `w${id}-${seq}`;
      const running = c.members.filter((m) => c.isRunning(m.name));
      if (running.length === 0) {
        await sleep(20);
        continue;
      }
      const target = running[rng.int(0, running.length)];
      const outcome = await putFollowing(`${target.clientUrl}/v1/kv/${key}`, value);
      if (outcome.kind === 'ok') {
        okCount++;
        const list = acked.get(key) ?? [];
        list.push({ value, modRevision: outcome.modRevision });
        acked.set(key, list);
      } else if (outcome.kind === 'unknown') {
        unknownCount++;
        const set = unknown.get(key) ?? new Set();
        set.add(value);
        unknown.set(key, set);
      } else {
        await sleep(20); // definitely not applied (no leader yet): back off a little
      }
    }
  }

  const writers = [writer(1), writer(2), writer(3)];
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    await sleep(rng.int(100, 600));
    const leader = await c.leader();
    const victim = leader !== null && rng.chance(0.6) ? leader : c.members[rng.int(0, c.members.length)].name;
    await c.kill(victim);
    await sleep(rng.int(100, 1200));
    c.start(victim);
    await c.waitForLeader(20_000);
  }
  await sleep(500);
  stop = true;
  await Promise.all(writers);

  const leader = await c.waitForLeader();
  expect(okCount, 'writes must make progress between faults').toBeGreaterThan(CYCLES);
  for (let k = 0; k < KEYS; k++) {
    const key = `k${k}`;
    const r = await http('GET', `${c.member(leader).clientUrl}/v1/kv/${key}`);
    const acks = acked.get(key) ?? [];
    const last = acks.reduce<Ack | null>((a, b) => (a === null || b.modRevision > a.modRevision ? b : a), null);
    const context = `seed ${SEED}, key ${key}: last ack ${JSON.stringify(last)}, read ${r.status} ${r.body.toString()} etag ${String(r.headers['etag'])}`;
    if (last === null) {
      if (r.status === 200) expect(unknown.get(key)?.has(r.body.toString()), context).toBe(true);
      continue;
    }
    expect(r.status, context).toBe(200);
    const value = r.body.toString();
    const etag = Number(String(r.headers['etag']).replaceAll('"', ''));
    expect(etag, context).toBeGreaterThanOrEqual(last.modRevision);
    if (etag === last.modRevision) expect(value, context).toBe(last.value);
    else expect(unknown.get(key)?.has(value) || acks.some((a) => a.value === value && a.modRevision === etag), context).toBe(true);
  }
  console.log(`kill/restart seed ${SEED}: ${CYCLES} cycles, ${okCount} acknowledged writes, ${unknownCount} unknown outcomes`, Object.fromEntries(unknownReasons));
});

const unknownReasons = new Map<string, number>();

type PutOutcome = { kind: 'ok'; modRevision: number } | { kind: 'unknown' } | { kind: 'failed' };

/** PUT with redirects followed; classify the outcome the way a careful client must. */
async function putFollowing(url: string, value: string): Promise<PutOutcome> {
  let target = url;
  for (let hop = 0; hop < 4; hop++) {
    let r;
    try {
      r = await http('PUT', target, { body: value, timeoutMs: 3000 });
    } catch (err) {
      // Refused: nothing was sent. Anything else: it may have reached a leader before it broke.
      if ((err as { code?: string }).code === 'ECONNREFUSED') return { kind: 'failed' };
      unknownReasons.set(String((err as { code?: string }).code), (unknownReasons.get(String((err as { code?: string }).code)) ?? 0) + 1);
      return { kind: 'unknown' };
    }
    if (r.status === 200) return { kind: 'ok', modRevision: r.json<{ modRevision: number }>().modRevision };
    if (r.status === 307) {
      target = String(r.headers['location']);
      continue;
    }
    const code = r.json<{ error: { code: string } }>().error.code;
    // Refused before proposing, or replaced by another leader's entry: definitely not applied.
    if (code === 'NO_LEADER' || code === 'LEADER_CHANGED' || code === 'OVERLOADED') return { kind: 'failed' };
    unknownReasons.set(code, (unknownReasons.get(code) ?? 0) + 1);
    return { kind: 'unknown' };
  }
  return { kind: 'failed' };
}
