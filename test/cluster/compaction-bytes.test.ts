import { createHash } from 'node:crypto';
import { afterAll, expect, test } from 'vitest';
import { http, metric, ProcessCluster } from '../support/process-cluster.js';

/** Far more entries than this test writes: only the bytes threshold can trigger compaction. */
const SNAPSHOT_ENTRIES = 100_000;
const SNAPSHOT_BYTES = 1024 * 1024;
const VALUE_BYTES = 64 * 1024;
const WRITES = 64; // 4 MiB of values: four times the threshold

let cluster: ProcessCluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

async function gauge(url: string, name: string): Promise<number> {
  const v = await metric(url, name);
  if (v === null) throw new Error(`${name} missing from ${url}/metrics`);
  return v;
}

function valueOf(i: number): string {
  const block = createHash('sha256').update(`big-${i}`).digest('hex');
  return block.repeat(Math.ceil(VALUE_BYTES / block.length)).slice(0, VALUE_BYTES);
}

/**
 * With big values the log reaches --snapshot-bytes long before --snapshot-entries: every member
 * compacts by bytes, keeps a tail of at most half the threshold, and still serves every value.
 */
test('the log is compacted once its entries hold --snapshot-bytes, whatever their count', { timeout: 120_000 }, async () => {
  cluster = await ProcessCluster.create({
    size: 3,
    extraFlags: ['--snapshot-entries', String(SNAPSHOT_ENTRIES), '--snapshot-catchup-entries', String(SNAPSHOT_ENTRIES / 2), '--snapshot-bytes', String(SNAPSHOT_BYTES)],
  });
  const c = cluster;
  await c.startAll();
  const leader = c.member(await c.waitForLeader());
  for (let i = 0; i < WRITES; i++) {
    const r = await http('PUT', `${leader.clientUrl}/v1/kv/big/${i}`, { body: valueOf(i) });
    expect(r.status).toBe(200);
  }
  const { commitIndex } = (await http('GET', `${leader.clientUrl}/v1/status`)).json<{ commitIndex: number }>();
  await c.waitForApplied(commitIndex);
  // Compaction runs between Readies: give every member a few more writes to get to it.
  for (let i = 0; i < 3; i++) expect((await http('PUT', `${leader.clientUrl}/v1/kv/nudge`, { body: String(i) })).status).toBe(200);
  for (const m of c.members) {
    let first = 0;
    let last = 0;
    for (let attempt = 0; attempt < 100; attempt++) {
      first = await gauge(m.clientUrl, 'flotilla_raft_first_index');
      last = await gauge(m.clientUrl, 'flotilla_raft_last_index');
      if (first > 1 && (last - first + 1) * VALUE_BYTES <= SNAPSHOT_BYTES + 4 * VALUE_BYTES) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(first, `${m.name} compacted its log`).toBeGreaterThan(1);
    // What stays is the tail (at most half the threshold) plus what arrived since the last compaction.
    expect((last - first + 1) * VALUE_BYTES, `${m.name} log bytes after compaction`).toBeLessThanOrEqual(SNAPSHOT_BYTES + 4 * VALUE_BYTES);
    for (const i of [0, WRITES / 2, WRITES - 1]) {
      const r = await http('GET', `${m.clientUrl}/v1/kv/big/${i}?consistency=stale`);
      expect(r.status).toBe(200);
      expect(r.body.toString('utf8') === valueOf(i), `${m.name} big/${i}`).toBe(true);
    }
  }
});
