import { rm } from 'node:fs/promises';
import { afterAll, expect, test } from 'vitest';
import { http, httpFollow, ProcessCluster, sleep, waitFor } from '../support/process-cluster.js';

/** How long each step of the replacement may take. */
const WAIT_MS = 30_000;

/** Concurrent writers, each writing its own keys, one after another. */
const WRITERS = 4;
/** The longest time allowed without any acknowledged write. */
const MAX_GAP_MS = 3000;
const NEW_MEMBER = 'n4';

let cluster: ProcessCluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

interface MembersView {
  members: Array<{ name: string; peerUrl: string | null; clientUrl: string | null; voter: boolean }>;
}

interface Ack {
  key: string;
  value: string;
  modRevision: number;
  sentAt: number;
  ackedAt: number;
}

/** A membership change answered 503 while another change is pending: ask again (bounded). */
async function clusterCall(method: string, url: string, body?: string): Promise<number> {
  let status = 0;
  for (let attempt = 0; attempt < 50; attempt++) {
    status = (await httpFollow(method, url, body === undefined ? {} : { body })).status;
    if (status !== 503) return status;
    await sleep(200);
  }
  return status;
}

/** Every item under `prefix` on one member, read with the given consistency. */
async function listAll(url: string, prefix: string, consistency: 'linearizable' | 'stale'): Promise<Map<string, { value: string; modRevision: number }>> {
  const items = new Map<string, { value: string; modRevision: number }>();
  let after: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const q = new URLSearchParams({ prefix, limit: '1000', consistency });
    if (after !== undefined) q.set('after', after);
    const r = await http('GET', `${url}/v1/kv?${q}`);
    expect(r.status).toBe(200);
    const body = r.json<{ more: boolean; items: Array<{ key: string; value?: string; modRevision: number }> }>();
    for (const it of body.items) items.set(it.key, { value: it.value ?? '<not utf-8>', modRevision: it.modRevision });
    if (!body.more || body.items.length === 0) break;
    after = body.items[body.items.length - 1].key;
  }
  return items;
}

/**
 * A follower dies with its disk; it is removed through the Cluster API and a brand-new member
 * joins on an empty data dir, catches up and becomes a voter, while writers never stop. Then
 * the new member is needed for the quorum: with another original follower killed, writes go on.
 */
test('a dead member is replaced by a new one without stopping writes', { timeout: 120_000 }, async () => {
  cluster = await ProcessCluster.create({ size: 3 });
  const c = cluster;
  await c.startAll();
  const leader = await c.waitForLeader(15_000, true);
  const leaderUrl = c.member(leader).clientUrl;
  const [victim, survivor] = c.members.filter((m) => m.name !== leader).map((m) => m.name);

  // Writers: each acknowledged write is kept with the time it was sent and acknowledged. A 307
  // (follow the leader) or 503 (no leader, or the write was not applied) is retried with the same
  // key and value; anything else, including a network error, is recorded as an error.
  const acks: Ack[] = [];
  const errors: string[] = [];
  let retried = 0;
  let target = leaderUrl;
  let stop = false;
  const started = Date.now();
  async function writer(id: number): Promise<void> {
    for (let seq = 0; !stop && seq < 1_000_000; seq++) {
      const key = `w/${id}/${String(seq).padStart(7, '0')}`;
      const value = `writer ${id} write ${seq}`;
      for (let attempt = 0; ; attempt++) {
        if (attempt === 100) {
          errors.push(`${key}: still refused after ${attempt} attempts`);
          break;
        }
        const sentAt = Date.now();
        const r = await http('PUT', `${target}/v1/kv/${key}`, { body: value, timeoutMs: 10_000 }).catch((err: unknown) => {
          errors.push(`${key}: ${(err as { code?: string }).code ?? String(err)}`);
          return null;
        });
        if (r === null) break;
        if (r.status === 200) {
          acks.push({ key, value, modRevision: r.json<{ modRevision: number }>().modRevision, sentAt, ackedAt: Date.now() });
          break;
        }
        if (r.status === 307 || r.status === 503) {
          retried++;
          const location = r.headers['location'];
          if (r.status === 307 && typeof location === 'string') target = new URL(location).origin;
          else await sleep(50);
          continue;
        }
        errors.push(`${key}: ${r.status} ${r.body.toString('utf8')}`);
        break;
      }
    }
  }
  const writers = Array.from({ length: WRITERS }, (_, id) => writer(id));
  /** When each step happened, to tell where a gap in the writes fell. */
  const steps: Array<[string, number]> = [['writers started', started]];
  const mark = (what: string) => steps.push([what, Date.now()]);
  await sleep(1000);

  // The follower dies, and its disk with it.
  await c.kill(victim);
  mark(`${victim} killed`);
  await rm(c.member(victim).dataDir, { recursive: true, force: true });
  expect(await clusterCall('DELETE', `${leaderUrl}/v1/cluster/members/${victim}`)).toBe(200);
  mark(`${victim} removed`);

  // A brand-new member on an empty data dir joins through the leader's client URL.
  const fresh = await c.addMember(NEW_MEMBER);
  c.start(NEW_MEMBER, { join: leaderUrl });
  mark(`${NEW_MEMBER} started`);
  const view = await waitFor(`${NEW_MEMBER} to become a voter`, async () => {
    const m = (await http('GET', `${leaderUrl}/v1/cluster/members`)).json<MembersView>();
    return m.members.some((x) => x.name === NEW_MEMBER && x.voter) ? m : null;
  }, WAIT_MS);
  mark(`${NEW_MEMBER} is a voter`);
  // Exactly three voters, the new member among them, as the leader and the new member see it.
  const expected = [leader, survivor, NEW_MEMBER].sort();
  expect(view.members.filter((m) => m.voter).map((m) => m.name).sort()).toEqual(expected);
  expect(view.members.map((m) => m.name).sort()).toEqual(expected);
  expect(view.members.find((m) => m.name === NEW_MEMBER)?.peerUrl).toBe(fresh.peerUrl);
  await waitFor(`${NEW_MEMBER} to catch up`, async () => {
    const [l, n] = await Promise.all([c.status(leader), c.status(NEW_MEMBER)]);
    return l && n && n.role === 'follower' && n.appliedIndex >= l.commitIndex - 50 ? true : null;
  }, WAIT_MS);
  mark(`${NEW_MEMBER} caught up`);
  const fromNew = (await http('GET', `${fresh.clientUrl}/v1/cluster/members`)).json<MembersView>();
  expect(fromNew.members.filter((m) => m.voter).map((m) => m.name).sort()).toEqual(expected);
  await sleep(1000);

  // Another original follower dies: the leader and the new member are the quorum now.
  await c.kill(survivor);
  const killedAt = Date.now();
  mark(`${survivor} killed`);
  await sleep(2000);
  stop = true;
  await Promise.all(writers);
  const stopped = Date.now();
  mark('writers stopped');

  expect(errors, errors.slice(0, 5).join('\n')).toEqual([]);
  const sinceKill = acks.filter((a) => a.sentAt > killedAt);
  expect(sinceKill.length, `writes sent after ${survivor} died`).toBeGreaterThanOrEqual(20);
  const times = [started, ...acks.map((a) => a.ackedAt).sort((a, b) => a - b), stopped];
  let gap = { ms: 0, from: started };
  for (let i = 1; i < times.length; i++) if (times[i] - times[i - 1] > gap.ms) gap = { ms: times[i] - times[i - 1], from: times[i - 1] };
  const timeline = steps.map(([what, at]) => `${what} at ${at - started} ms`).join(', ');
  expect(gap.ms, `longest time without an acknowledged write: from ${gap.from - started} ms (${timeline}; ${acks.length} acks, ${retried} retried)`)
    .toBeLessThan(MAX_GAP_MS);

  // Every acknowledged write is on the new member with its value and revision: stale reads of
  // its own state once it has applied everything, and linearizable reads.
  const commit = (await c.status(await c.waitForLeader()))!.commitIndex;
  await waitFor(`${NEW_MEMBER} to apply ${commit}`, async () => ((await c.status(NEW_MEMBER))!.appliedIndex >= commit ? true : null), WAIT_MS);
  for (const consistency of ['stale', 'linearizable'] as const) {
    const held = await listAll(fresh.clientUrl, 'w/', consistency);
    expect(held.size, consistency).toBe(acks.length);
    const wrong = acks.filter((a) => held.get(a.key)?.value !== a.value || held.get(a.key)?.modRevision !== a.modRevision);
    expect(wrong.map((a) => a.key).slice(0, 5), consistency).toEqual([]);
  }
  // Single-key reads too, for a spread of keys and the last write of each writer.
  const step = Math.max(1, Math.floor(acks.length / 100));
  const sample = acks.filter((_, i) => i % step === 0);
  for (let id = 0; id < WRITERS; id++) {
    const last = acks.filter((a) => a.key.startsWith(`w/${id}/`)).pop();
    if (last) sample.push(last);
  }
  for (const a of sample) {
    for (const q of ['', '?consistency=stale']) {
      const r = await http('GET', `${fresh.clientUrl}/v1/kv/${a.key}${q}`);
      expect(r.status, `${a.key}${q}`).toBe(200);
      expect(r.body.toString('utf8')).toBe(a.value);
      expect(r.headers['etag']).toBe(`"${a.modRevision}"`);
    }
  }
});
