import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { LevelStorage } from '../../src/storage/level-storage.js';
import { CLI, http, httpFollow, ProcessCluster, REPO, sleep } from '../support/process-cluster.js';

/**
 * Backup and restore with real processes: `snapshot save` from a 3-member cluster while a writer
 * is running, `snapshot restore` x3 and `serve` x3 make a new cluster, which must hold exactly
 * the source's state at the backup's revision R.
 *
 * Why the check is exact: every revision of the source is one change, and the source keeps the
 * watch history of all of them (fewer than its 10,000-revision retention). After the source is
 * stopped, its history read from disk is replayed up to R: that is the source's state at R, key by
 * key (value, modRevision, createRevision, version), independent of which writes were
 * acknowledged. The restored cluster must list exactly that, at revision R, on every member. The
 * writer's acknowledgements are checked too: each key shows its last acknowledged write at or
 * before R, and R lies strictly inside the writer's run (the backup was taken while it wrote).
 */

interface Item {
  readonly key: string;
  readonly value?: string;
  readonly valueBase64?: string;
  readonly modRevision: number;
  readonly createRevision: number;
  readonly version: number;
}

interface Ack {
  readonly value: string;
  readonly modRevision: number;
}

const clusters: ProcessCluster[] = [];
afterAll(async () => {
  for (const c of clusters) await c.destroy();
});

async function cli(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  return { code, stdout, stderr };
}

/** Every key, in order, paging through `GET /v1/kv` (linearizable, or stale from that member). */
async function listAll(clientUrl: string, stale = false): Promise<{ revision: number; items: Item[] }> {
  const items: Item[] = [];
  let after: string | undefined;
  let revision = -1;
  for (;;) {
    const query = new URLSearchParams({ prefix: '', limit: '1000', ...(after === undefined ? {} : { after }), ...(stale ? { consistency: 'stale' } : {}) });
    const r = await httpFollow('GET', `${clientUrl}/v1/kv?${query.toString()}`);
    expect(r.status, r.body.toString()).toBe(200);
    const page = r.json<{ revision: number; items: Item[]; more: boolean }>();
    if (revision === -1) revision = page.revision;
    expect(page.revision, 'every page at the same revision (nothing writes to the restored cluster)').toBe(revision);
    items.push(...page.items);
    if (!page.more) return { revision, items };
    after = page.items.at(-1)?.key;
  }
}

/** The source's state at `revision`, replayed from the watch history kept on a member's disk. */
async function stateAt(dataDirs: readonly string[], revision: number): Promise<Item[]> {
  // The member that applied the most: every member's history is the same prefix of one history.
  let best: { storage: LevelStorage; revision: number } | null = null;
  for (const dir of dataDirs) {
    const storage = await LevelStorage.open(dir);
    await storage.load();
    if (best === null || storage.revision > best.revision) {
      await best?.storage.close();
      best = { storage, revision: storage.revision };
    } else {
      await storage.close();
    }
  }
  const storage = best!.storage;
  try {
    expect(storage.revision).toBeGreaterThanOrEqual(revision);
    expect(storage.compactRevision, 'the source kept its whole history').toBe(0);
    const state = new Map<string, Item>();
    let from = 1;
    for (let more = true; more; ) {
      const page = await storage.readHistory({ fromRevision: from, key: '', prefix: true, limit: 10_000 });
      for (const e of page.events) {
        if (e.modRevision > revision) return [...state.values()].sort(byKey);
        if (e.type === 'delete') state.delete(e.key);
        else state.set(e.key, { key: e.key, value: Buffer.from(e.value).toString('utf8'), modRevision: e.modRevision, createRevision: e.createRevision, version: e.version });
      }
      more = page.more;
      from = (page.events.at(-1)?.modRevision ?? from) + 1;
    }
    return [...state.values()].sort(byKey);
  } finally {
    await storage.close();
  }
}

function byKey(a: Item, b: Item): number {
  return Buffer.compare(Buffer.from(a.key), Buffer.from(b.key));
}

test('a backup taken under writes restores into a new cluster holding exactly its revision', { timeout: 240_000 }, async () => {
  const source = await ProcessCluster.create({ size: 3 });
  clusters.push(source);
  await source.startAll();
  const leaderUrl = async (c: ProcessCluster) => c.member(await c.waitForLeader()).clientUrl;

  // Some data of every kind: plain keys, a key on a lease, deletes, a txn.
  let url = await leaderUrl(source);
  for (let i = 0; i < 200; i++) expect((await httpFollow('PUT', `${url}/v1/kv/p/${i}`, { body: `preload ${i} `.padEnd(8192, String.fromCharCode(97 + (i % 26))) })).status).toBe(200);
  const lease = (await httpFollow('POST', `${url}/v1/leases`, { body: JSON.stringify({ ttl: 600 }), headers: { 'content-type': 'application/json' } })).json<{ id: number }>();
  expect((await httpFollow('PUT', `${url}/v1/kv/leased?lease=${lease.id}`, { body: 'on a lease' })).status).toBe(200);
  for (let i = 0; i < 20; i++) expect((await httpFollow('DELETE', `${url}/v1/kv/p/${i * 7}`)).status).toBe(200);
  const txn = { compare: [], success: [{ op: 'put', key: 'txn/a', value: 'A' }, { op: 'put', key: 'txn/b', value: 'B' }], failure: [] };
  expect((await httpFollow('POST', `${url}/v1/txn`, { body: JSON.stringify(txn), headers: { 'content-type': 'application/json' } })).status).toBe(200);

  // A writer that keeps going until the backup is saved.
  const acked = new Map<string, Ack[]>();
  const unknown = new Set<string>();
  let stop = false;
  let ackCount = 0;
  const writer = (async () => {
    for (let n = 0; !stop; n++) {
      const key = `w/${n % 40}`;
      try {
        const r = await httpFollow('PUT', `${url}/v1/kv/${key}`, { body: `write ${n}`, timeoutMs: 5000 });
        if (r.status === 200) {
          const list = acked.get(key) ?? [];
          list.push({ value: `write ${n}`, modRevision: r.json<{ modRevision: number }>().modRevision });
          acked.set(key, list);
          ackCount++;
          continue;
        }
        if (r.status !== 503 || r.json<{ error: { code: string } }>().error.code !== 'NO_LEADER') unknown.add(key);
      } catch {
        unknown.add(key);
      }
      await sleep(20);
      url = await leaderUrl(source);
    }
  })();
  while (ackCount < 50) await sleep(10);

  const file = join(source.members[0].dataDir, '..', 'backup.snap');
  const endpoints = ['http://127.0.0.1:1', ...source.members.map((m) => m.clientUrl)].join(',');
  const saved = await cli(['snapshot', 'save', file, '--endpoints', endpoints]);
  expect(saved.code, saved.stderr).toBe(0);
  stop = true;
  await writer;
  const summary = JSON.parse(saved.stdout) as { index: number; revision: number; keys: number; bytes: number; sha256: string };
  expect(saved.stdout.trim().split('\n')).toHaveLength(1);
  expect(summary).toMatchObject({ index: expect.any(Number), revision: expect.any(Number), bytes: (await readFile(file)).length });
  expect(await readdir(join(file, '..'))).not.toContain('backup.snap.part');
  const R = summary.revision;

  // The backup was taken while the writer ran: acknowledged writes lie on both sides of R.
  const allAcks = [...acked.values()].flat().map((a) => a.modRevision);
  expect(Math.min(...allAcks)).toBeLessThan(R);
  expect(Math.max(...allAcks)).toBeGreaterThan(R);

  for (const m of source.members) await source.signal(m.name, 'SIGTERM');
  const expected = await stateAt(source.members.map((m) => m.dataDir), R);
  expect(expected.length).toBe(summary.keys);

  // A new cluster, each founding member restored from the same file.
  const restored = await ProcessCluster.create({ size: 3 });
  clusters.push(restored);
  for (const m of restored.members) {
    const r = await cli(['snapshot', 'restore', file, '--name', m.name, '--data-dir', m.dataDir, '--initial-cluster', restored.initialCluster]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: m.name, index: summary.index, revision: R, sha256: summary.sha256 });
  }
  await restored.startAll();
  const restoredUrl = await leaderUrl(restored);
  const listed = await listAll(restoredUrl);
  expect(listed.revision).toBe(R);
  expect(listed.items).toEqual(expected);
  // Every member holds the same state (read locally once all have applied the leader's no-op).
  const status = await restored.status(await restored.waitForLeader());
  await restored.waitForApplied(status!.commitIndex);
  for (const m of restored.members) expect(await listAll(m.clientUrl, true), m.name).toEqual({ revision: R, items: expected });

  // Every write acknowledged at or before R is there, unless a later one (at or before R) replaced it.
  const byKeyName = new Map(listed.items.map((item) => [item.key, item]));
  for (const [key, acks] of acked) {
    const last = acks.filter((a) => a.modRevision <= R).at(-1);
    if (last === undefined || unknown.has(key)) continue;
    expect(byKeyName.get(key), key).toMatchObject({ value: last.value, modRevision: last.modRevision });
  }

  // The restored cluster carries on: the next write is revision R + 1, the lease is alive.
  const put = await httpFollow('PUT', `${restoredUrl}/v1/kv/after-restore`, { body: 'x' });
  expect(put.json()).toMatchObject({ revision: R + 1 });
  expect((await httpFollow('POST', `${restoredUrl}/v1/leases/${lease.id}/keepalive`)).status).toBe(200);
  expect((await httpFollow('DELETE', `${restoredUrl}/v1/leases/${lease.id}`)).status).toBe(200);
  expect((await httpFollow('GET', `${restoredUrl}/v1/kv/leased`)).status).toBe(404);
});

test('snapshot save and restore fail with one line and a non-zero exit', { timeout: 60_000 }, async () => {
  const c = await ProcessCluster.create({ size: 1 });
  clusters.push(c);
  const root = join(c.members[0].dataDir, '..');
  await mkdir(root, { recursive: true });

  const nobody = await cli(['snapshot', 'save', join(root, 'x.snap'), '--endpoints', 'http://127.0.0.1:1']);
  expect(nobody.code).toBe(1);
  expect(nobody.stderr.trim().split('\n')).toHaveLength(1);
  expect(nobody.stderr).toMatch(/^flotilla snapshot save: no endpoint gave a backup/);
  expect(await readdir(root)).toEqual([]);

  await c.startAll();
  const file = join(root, 'ok.snap');
  expect((await httpFollow('PUT', `${c.members[0].clientUrl}/v1/kv/a`, { body: '1' })).status).toBe(200);
  expect((await cli(['snapshot', 'save', file, '--endpoints', c.members[0].clientUrl])).code).toBe(0);

  const usage = await cli(['snapshot', 'restore', file, '--name', 'zz', '--data-dir', join(root, 'd1'), '--initial-cluster', 'n1=http://127.0.0.1:9']);
  expect(usage.code).toBe(2);
  expect(usage.stderr).toMatch(/does not list this member/);

  await mkdir(join(root, 'full'));
  await writeFile(join(root, 'full', 'something'), 'x');
  const nonEmpty = await cli(['snapshot', 'restore', file, '--name', 'n1', '--data-dir', join(root, 'full'), '--initial-cluster', 'n1=http://127.0.0.1:9']);
  expect(nonEmpty.code).toBe(1);
  expect(nonEmpty.stderr).toMatch(/is not empty/);

  const bytes = await readFile(file);
  bytes[bytes.length - 40] ^= 1;
  await writeFile(join(root, 'bad.snap'), bytes);
  const corrupt = await cli(['snapshot', 'restore', join(root, 'bad.snap'), '--name', 'n1', '--data-dir', join(root, 'd2'), '--initial-cluster', 'n1=http://127.0.0.1:9']);
  expect(corrupt.code).toBe(1);
  expect(corrupt.stderr.trim().split('\n')).toHaveLength(1);
  expect(corrupt.stderr).toMatch(/is corrupt at byte \d+/);
  expect(await readdir(root)).not.toContain('d2');

  const status = await cli(['snapshot', 'status', file]);
  expect(status.code).toBe(0);
  expect(JSON.parse(status.stdout)).toMatchObject({ keys: 1, revision: 1 });
  expect((await http('GET', `${c.members[0].clientUrl}/v1/snapshot`)).headers['x-flotilla-snapshot-index']).toBeDefined();
});
