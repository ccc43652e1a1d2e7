import { afterAll, expect, test } from 'vitest';
import { http, metric, ProcessCluster, sleep } from '../support/process-cluster.js';

/**
 * Compaction every few hundred entries, an image of several MiB, and writers that never stop: the
 * leader must not compact past the snapshot it is sending a joining member, or that member needs
 * another snapshot as soon as it has installed one, for as long as the writes go on.
 */
const PRELOAD_KEYS = 4000;
const VALUE = 'v'.repeat(2048);
const WRITERS = 8;
const NEW_MEMBER = 'n4';
const FLAGS = ['--snapshot-entries', '300', '--snapshot-catchup-entries', '30'];

let cluster: ProcessCluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

async function counter(url: string, name: string): Promise<number> {
  return (await metric(url, name)) ?? 0;
}

test('a member joining while writes continue installs one snapshot and becomes a voter', { timeout: 180_000 }, async () => {
  cluster = await ProcessCluster.create({ size: 3, extraFlags: FLAGS });
  const c = cluster;
  await c.startAll();
  const leader = await c.waitForLeader(15_000, true);
  const leaderUrl = c.member(leader).clientUrl;
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < PRELOAD_KEYS) {
        const i = next++;
        expect((await http('PUT', `${leaderUrl}/v1/kv/pre/${i}`, { body: VALUE })).status).toBe(200);
      }
    }),
  );

  let stop = false;
  let acked = 0;
  const errors: string[] = [];
  async function writer(id: number): Promise<void> {
    for (let seq = 0; !stop && seq < 1_000_000; seq++) {
      const r = await http('PUT', `${leaderUrl}/v1/kv/w/${id}/${seq % 500}`, { body: VALUE, timeoutMs: 10_000 }).catch((err: unknown) => {
        errors.push(String((err as { code?: string }).code ?? err));
        return null;
      });
      if (r?.status === 200) acked++;
      else if (r) errors.push(`${r.status} ${r.body.toString('utf8').slice(0, 200)}`);
    }
  }
  const writers = Array.from({ length: WRITERS }, (_, id) => writer(id));
  try {
    await sleep(500);
    const fresh = await c.addMember(NEW_MEMBER);
    c.start(NEW_MEMBER, { join: leaderUrl });
    const deadline = Date.now() + 90_000;
    let voter = false;
    let caughtUp = false;
    while (Date.now() < deadline && !(voter && caughtUp)) {
      await sleep(250);
      const members = (await http('GET', `${leaderUrl}/v1/cluster/members`)).json<{ members: Array<{ name: string; voter: boolean }> }>();
      voter = members.members.some((m) => m.name === NEW_MEMBER && m.voter);
      const [l, n] = await Promise.all([c.status(leader), c.status(NEW_MEMBER)]);
      caughtUp = l !== null && n !== null && n.appliedIndex >= l.commitIndex - 200;
    }
    const installs = await counter(fresh.clientUrl, 'flotilla_snapshots_installed_total');
    const writesSoFar = acked;
    console.log(`${NEW_MEMBER}: voter ${voter}, caught up ${caughtUp}, ${installs} snapshot installs, ${writesSoFar} writes meanwhile`);
    expect({ voter, caughtUp }, `${NEW_MEMBER} after ${installs} snapshot installs, ${writesSoFar} writes meanwhile`).toEqual({ voter: true, caughtUp: true });
    // Once, or twice if the first image raced a compaction; never a loop.
    expect(installs).toBeGreaterThanOrEqual(1);
    expect(installs).toBeLessThanOrEqual(2);
    expect(writesSoFar, 'writes went on during the join').toBeGreaterThan(300);
  } finally {
    stop = true;
    await Promise.all(writers);
  }
  expect(errors.slice(0, 5)).toEqual([]);
});
