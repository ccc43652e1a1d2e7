import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connect } from '../../src/client/client.js';
import type { Client } from '../../src/client/client.js';
import { OutcomeUnknownError, UnavailableError } from '../../src/client/errors.js';
import type { WatchEvent } from '../../src/client/types.js';
import { ProcessCluster, sleep } from '../support/process-cluster.js';

/** A watcher on the leader sees a concurrent writer's changes once each, in order, across the leader's SIGKILL. */
describe('watch across a leader SIGKILL', () => {
  let cluster: ProcessCluster;
  const clients: Client[] = [];

  beforeAll(async () => {
    cluster = await ProcessCluster.create({ size: 3, electionMs: 500 });
    await cluster.startAll();
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await cluster?.destroy();
  });

  test('every write exactly once and in revision order; nothing that was not written', async () => {
    const leader = await cluster.waitForLeader();
    const leaderUrl = cluster.member(leader).clientUrl;
    const others = cluster.members.filter((m) => m.name !== leader).map((m) => m.clientUrl);
    // The watcher talks to the leader first, so the kill cuts its stream mid-flight.
    const watcher = connect({ endpoints: [leaderUrl, ...others] });
    const writer = connect({ endpoints: [...others, leaderUrl] });
    clients.push(watcher, writer);

    const start = await writer.put('w/start', 'start');
    const seen: WatchEvent[] = [];
    const controller = new AbortController();
    const watching = (async () => {
      for await (const e of watcher.watch('w/', { prefix: true, fromRevision: start.modRevision, signal: controller.signal })) {
        seen.push(e);
        if (e.key === 'w/end') return;
      }
    })();

    // The writer: a put and a delete per step, sequential, never resending one it is unsure of.
    const applied = new Map<number, string>(); // modRevision → "put w/i v" | "delete w/i"
    const attempted = new Set<string>();
    let unsure = 0;
    const N = 120;
    for (let i = 0; i < N; i++) {
      if (i === 40) void cluster.kill(leader);
      for (const op of ['put', 'delete'] as const) {
        if (op === 'delete' && i % 3 !== 0) continue;
        const label = op === 'put' ? `put w/${i} v${i}` : `delete w/${i}`;
        attempted.add(label);
        for (;;) {
          try {
            if (op === 'put') applied.set((await writer.put(`w/${i}`, `v${i}`)).modRevision, label);
            else applied.set((await writer.delete(`w/${i}`)).revision, label);
            break;
          } catch (err) {
            if (err instanceof UnavailableError) continue; // definitely not applied
            expect(err).toBeInstanceOf(OutcomeUnknownError);
            unsure++;
            break; // maybe applied: the watch will tell; never resend
          }
        }
      }
    }
    const end = await writer.put('w/end', 'end');
    await Promise.race([watching, sleep(30_000).then(() => controller.abort())]);
    expect(seen.at(-1)?.key).toBe('w/end');

    const labels = seen.map((e) => (e.type === 'put' ? `put ${e.key} ${e.value.toString()}` : `delete ${e.key}`));
    // In revision order, strictly (one change per revision here), none twice.
    for (let k = 1; k < seen.length; k++) expect(seen[k].modRevision).toBeGreaterThan(seen[k - 1].modRevision);
    // Every acknowledged write, at its revision.
    const byRevision = new Map(seen.map((e, k) => [e.modRevision, labels[k]]));
    for (const [rev, label] of applied) expect(byRevision.get(rev), `revision ${rev}`).toBe(label);
    // Nothing that was never written; the writes in doubt appear at most once.
    const inner = labels.slice(1, -1);
    for (const label of inner) expect(attempted.has(label), label).toBe(true);
    expect(new Set(inner).size).toBe(inner.length);
    expect(inner.length).toBeGreaterThanOrEqual(applied.size);
    expect(inner.length).toBeLessThanOrEqual(applied.size + unsure);
    expect(seen[0]).toMatchObject({ key: 'w/start', modRevision: start.modRevision });
    expect(seen.at(-1)).toMatchObject({ key: 'w/end', modRevision: end.modRevision });

    // What the watch says matches what the store holds.
    const live = new Set<string>();
    for (const e of seen) if (e.type === 'put') live.add(e.key); else live.delete(e.key);
    const stored = [];
    for await (const kv of writer.listAll('w/')) stored.push(kv.key);
    expect(stored.sort()).toEqual([...live].sort());
    console.log(`watch: ${seen.length} events, ${unsure} writes in doubt`);
  });
});
