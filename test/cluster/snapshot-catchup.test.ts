import { createHash } from 'node:crypto';
import { afterAll, expect, test } from 'vitest';
import { http, ProcessCluster, sleep } from '../support/process-cluster.js';

/** Writes while a member is down: enough that the leader compacts past where it stopped. */
const WRITES = Number(process.env['FLOTILLA_SNAPSHOT_WRITES'] ?? 3000);
const CONCURRENCY = 16;

let cluster: ProcessCluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

/** Every key with its value and revisions, hashed in key order, from one member's own state. */
async function stateHash(url: string): Promise<{ hash: string; keys: number; revision: number }> {
  const h = createHash('sha256');
  let after: string | undefined;
  let keys = 0;
  let revision = 0;
  for (let page = 0; page < 10_000; page++) {
    const q = new URLSearchParams({ prefix: '', limit: '1000', consistency: 'stale' });
    if (after !== undefined) q.set('after', after);
    const r = (await http('GET', `${url}/v1/kv?${q}`)).json<{
      revision: number; more: boolean;
      items: Array<{ key: string; value?: string; valueBase64?: string; modRevision: number; createRevision: number; version: number }>;
    }>();
    if (page === 0) revision = r.revision;
    for (const it of r.items) {
      h.update(`${it.key}\0${it.value ?? it.valueBase64}\0${it.modRevision}\0${it.createRevision}\0${it.version}\n`);
      keys++;
    }
    if (!r.more || r.items.length === 0) break;
    after = r.items[r.items.length - 1].key;
  }
  return { hash: h.digest('hex'), keys, revision };
}

/**
 * A follower stopped while the leader takes many writes and compacts its log rejoins by
 * InstallSnapshot and ends up with exactly the leader's data, key by key.
 */
test(`a member that missed ${WRITES} writes rejoins by snapshot with identical data`, { timeout: 300_000 }, async () => {
  cluster = await ProcessCluster.create({ size: 3, extraFlags: ['--snapshot-entries', '500', '--snapshot-catchup-entries', '50'] });
  const c = cluster;
  await c.startAll();
  const leader = await c.waitForLeader();
  const lagger = c.members.find((m) => m.name !== leader)!.name;
  const url = c.member(leader).clientUrl;
  await http('PUT', `${url}/v1/kv/seen-by-all`, { body: 'x' });
  await c.kill(lagger);

  let next = 0;
  async function writer(): Promise<void> {
    while (next < WRITES) {
      const i = next++;
      const r = await http('PUT', `${url}/v1/kv/k/${String(i).padStart(6, '0')}`, { body: `value-${i}` });
      expect(r.status).toBe(200);
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, () => writer()));
  // A few deletes and overwrites, so the image is not just inserts.
  for (let i = 0; i < 50; i++) await http('DELETE', `${url}/v1/kv/k/${String(i * 7).padStart(6, '0')}`);
  for (let i = 0; i < 50; i++) await http('PUT', `${url}/v1/kv/k/${String(i * 11).padStart(6, '0')}`, { body: `again-${i}` });

  c.start(lagger);
  const target = (await c.status(leader))!.commitIndex;
  await c.waitForApplied(target, 120_000);
  await sleep(200);
  const [a, b] = await Promise.all([stateHash(c.member(leader).clientUrl), stateHash(c.member(lagger).clientUrl)]);
  expect(b.keys).toBe(a.keys);
  expect(b.hash).toBe(a.hash);
  expect(c.logs(lagger)).toMatch(/installed a snapshot/);
  // The garbage of writing and of installing the image is collected at once rather than left
  // committed in the heap.
  expect(c.logs(leader)).toMatch(/"gcMs":\d+.*"msg":"released memory after writing a snapshot image"/);
  expect(c.logs(lagger)).toMatch(/"gcMs":\d+.*"msg":"released memory after installing a snapshot"/);
  // It serves writes and reads as a normal member afterwards.
  expect((await http('PUT', `${url}/v1/kv/after-rejoin`, { body: 'y' })).status).toBe(200);
  expect((await http('GET', `${c.member(lagger).clientUrl}/v1/kv/after-rejoin`)).body.toString()).toBe('y');
});
