import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { encodeCommand, type Command, type TxnOp } from '../../src/kv/command.js';
import { CompactedError } from '../../src/kv/errors.js';
import type { ApplyResult, WatchEvent } from '../../src/kv/kv-state.js';
import type { Ready } from '../../src/raft/ready.js';
import type { Entry } from '../../src/raft/types.js';
import { LevelStorage, MAX_HISTORY_LIMIT, type LevelStorageOptions } from '../../src/storage/level-storage.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString('utf8'));

const put = (key: string, value: string, lease?: number): Command => ({
  op: 'put',
  requestId: `put ${key}`,
  key,
  value: bytes(value),
  ...(lease === undefined ? {} : { lease }),
});
const del = (key: string): Command => ({ op: 'delete', requestId: `del ${key}`, key });
const grant = (id: number, ttlSeconds = 10): Command => ({ op: 'leaseGrant', requestId: `grant ${id}`, id, ttlSeconds });
const revoke = (id: number): Command => ({ op: 'leaseRevoke', requestId: `revoke ${id}`, id, reason: 'revoke' });
const txn = (success: TxnOp[], compare: Extract<Command, { op: 'txn' }>['compare'] = [], failure: TxnOp[] = []): Command => ({
  op: 'txn',
  requestId: 'txn',
  compare,
  success,
  failure,
});

let dir: string;
let storage: LevelStorage;

async function open(options: LevelStorageOptions = {}): Promise<void> {
  storage = await LevelStorage.open(join(dir, 'member'), options);
}

async function reopen(options: LevelStorageOptions = {}): Promise<void> {
  await storage.close();
  await open(options);
  expect(await storage.load()).not.toBeNull();
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-coordination-'));
  await open();
  await storage.bootstrap({ voters: ['n1'], learners: [] });
});

afterEach(async () => {
  await storage.close();
  await rm(dir, { recursive: true, force: true });
});

/** Appends and commits commands in one Ready, as a single-member leader would. */
async function commit(...commands: Command[]): Promise<ApplyResult[]> {
  const first = storage.appliedIndex + 1;
  const entries: Entry[] = commands.map((c, i) => ({ index: first + i, term: 1, type: 'normal', data: encodeCommand(c) }));
  const ready: Ready = {
    softState: null,
    hardState: { term: 1, vote: 'n1', commit: first + entries.length - 1 },
    entries,
    snapshot: null,
    messages: [],
    committed: entries,
    readStates: [],
    mustSync: true,
  };
  return storage.persist(ready);
}

function brief(events: readonly WatchEvent[]): string[] {
  return events.map((e) => `${e.modRevision} ${e.type} ${e.key}${e.type === 'put' ? `=${text(e.value)}` : ''}`);
}

/** Counts the records of a sublevel, bypassing LevelStorage. */
async function countRaw(sublevel: string): Promise<number> {
  await storage.close();
  const db = new Level<Buffer, Buffer>(join(dir, 'member', 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  try {
    return (await db.sublevel<Buffer, Buffer>(sublevel, { keyEncoding: 'buffer', valueEncoding: 'buffer' }).keys().all()).length;
  } finally {
    await db.close();
    await open();
    await storage.load();
  }
}

describe('leases on disk', () => {
  test('grant, attach, restart, then revoke deletes the attached keys at one revision', async () => {
    await commit(grant(1, 30), grant(2 ** 40, 5), put('a', '1', 1), put('b', '2', 1), put('c', '3', 2 ** 40), put('d', '4'));
    expect(await storage.leases()).toEqual([
      { id: 1, ttlSeconds: 30 },
      { id: 2 ** 40, ttlSeconds: 5 },
    ]);
    await reopen();
    expect(await storage.leases()).toEqual([
      { id: 1, ttlSeconds: 30 },
      { id: 2 ** 40, ttlSeconds: 5 },
    ]);
    expect(await storage.lease(1)).toEqual({ id: 1, ttlSeconds: 30, keys: 2 });
    expect(await storage.lease(2 ** 40)).toEqual({ id: 2 ** 40, ttlSeconds: 5, keys: 1 });
    expect(await storage.get('a')).toMatchObject({ lease: 1 });

    const [revoked] = await commit(revoke(1));
    expect(revoked).toMatchObject({ kind: 'leaseRevoke', id: 1, deletedKeys: 2, revision: 5 });
    expect(await storage.get('a')).toBeNull();
    expect(await storage.get('b')).toBeNull();
    expect(text((await storage.get('c'))?.value)).toBe('3');
    expect(await storage.lease(1)).toBeNull();
    expect(await storage.leases()).toEqual([{ id: 2 ** 40, ttlSeconds: 5 }]);
    expect(await countRaw('lease-keys')).toBe(1); // only c's entry is left in the index
    expect(storage.revision).toBe(5);
  });

  test('the largest lease id (2^53 - 1) and its neighbour keep their keys apart', async () => {
    const top = Number.MAX_SAFE_INTEGER;
    await commit(grant(top), grant(top - 1), put('a', '1', top), put('b', '1', top - 1), put('c', '1', top));
    expect(await storage.lease(top)).toEqual({ id: top, ttlSeconds: 10, keys: 2 });
    expect(await storage.lease(top - 1)).toMatchObject({ keys: 1 });
    expect(await commit(revoke(top))).toEqual([expect.objectContaining({ deletedKeys: 2 })]);
    expect((await storage.list({ prefix: '', limit: 10 })).items.map((i) => i.key)).toEqual(['b']);
  });

  test('a put with a missing lease fails; with a live one it attaches', async () => {
    const [missing] = await commit(put('k', 'v', 9));
    expect(missing).toMatchObject({ kind: 'error', error: { code: 'LEASE_NOT_FOUND', id: 9 } });
    expect(await storage.get('k')).toBeNull();
    expect(storage.revision).toBe(0);
    await commit(grant(9));
    expect(await commit(put('k', 'v', 9))).toEqual([expect.objectContaining({ kind: 'put', revision: 1 })]);
    expect(await storage.lease(9)).toMatchObject({ keys: 1 });
  });

  test('re-putting without the lease, or deleting, detaches: the revoke leaves the key alone', async () => {
    await commit(grant(1), put('a', '1', 1), put('b', '1', 1), put('c', '1', 1));
    await commit(put('a', '2'), del('b'));
    await commit(put('b', 'again'));
    expect(await storage.lease(1)).toMatchObject({ keys: 1 });
    await reopen();
    const [revoked] = await commit(revoke(1));
    expect(revoked).toMatchObject({ kind: 'leaseRevoke', deletedKeys: 1 });
    expect(text((await storage.get('a'))?.value)).toBe('2');
    expect(text((await storage.get('b'))?.value)).toBe('again');
    expect(await storage.get('c')).toBeNull();
    expect(await countRaw('lease-keys')).toBe(0);
  });

  test('attach and revoke in one batch, over keys stored attached before it', async () => {
    await commit(grant(4), put('old', '1', 4), put('moved', '1', 4));
    const results = await commit(put('new', '1', 4), put('moved', '2'), revoke(4), put('later', '1'));
    expect(results[2]).toMatchObject({ kind: 'leaseRevoke', deletedKeys: 2 });
    const page = await storage.list({ prefix: '', limit: 10 });
    expect(page.items.map((i) => [i.key, i.lease])).toEqual([
      ['later', 0],
      ['moved', 0],
    ]);
    expect(await countRaw('lease-keys')).toBe(0);
    expect(await countRaw('leases')).toBe(0);
  });

  test('the lease count (which bounds grants) is counted again on restart', async () => {
    await commit(grant(1), grant(2), grant(3), revoke(2), revoke(8), grant(1));
    expect(storage.leaseCount).toBe(2);
    await reopen();
    expect(storage.leaseCount).toBe(2);
    expect((await commit(grant(2), revoke(3))).map((r) => r.kind)).toEqual(['leaseGrant', 'leaseRevoke']);
    expect(storage.leaseCount).toBe(2);
    expect((await storage.leases()).map((l) => l.id)).toEqual([1, 2]);
  });

  test('lease(id) rejects ids that cannot exist', async () => {
    await expect(storage.lease(0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(storage.lease(1.5)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('txn on disk', () => {
  test('compares and gets see values stored by earlier batches', async () => {
    await commit(put('cfg', 'v1'), put('other', 'x'));
    const [result] = await commit(
      txn(
        [{ op: 'get', key: 'cfg' }, { op: 'put', key: 'cfg', value: bytes('v2') }, { op: 'delete', key: 'other' }],
        [{ key: 'cfg', target: 'value', op: '=', value: bytes('v1') }],
      ),
    );
    expect(result).toMatchObject({ kind: 'txn', succeeded: true, revision: 3 });
    if (result.kind !== 'txn') return;
    const got = result.results[0];
    expect(got.op === 'get' && text(got.item?.value)).toBe('v1');
    expect(got).toMatchObject({ item: { key: 'cfg', modRevision: 1, createRevision: 1, version: 1, lease: 0 } });
    expect(await storage.get('cfg')).toMatchObject({ modRevision: 3, version: 2 });
    expect(await storage.get('other')).toBeNull();
    expect(brief((await storage.readHistory({ fromRevision: 3, key: '', prefix: true, limit: 10 })).events)).toEqual([
      '3 put cfg=v2',
      '3 delete other',
    ]);
  });

  test('a failed txn writes nothing, not even history', async () => {
    await commit(put('a', '1'));
    const [result] = await commit(txn([{ op: 'put', key: 'a', value: bytes('2') }, { op: 'put', key: 'b', value: bytes('2'), lease: 5 }]));
    expect(result).toMatchObject({ kind: 'error', error: { code: 'LEASE_NOT_FOUND' } });
    expect(text((await storage.get('a'))?.value)).toBe('1');
    expect(storage.revision).toBe(1);
    expect(await countRaw('history')).toBe(1);
  });
});

describe('watch history', () => {
  /** Revisions 1..6: a put, a txn of three, a delete, a revoke of two keys, two more puts. */
  async function fixture(): Promise<void> {
    await commit(put('a/1', 'x'));
    await commit(
      grant(7),
      txn([
        { op: 'put', key: 'a/2', value: bytes('y'), lease: 7 },
        { op: 'put', key: 'b', value: bytes('z') },
        { op: 'put', key: 'a/3', value: bytes('w'), lease: 7 },
      ]),
      del('a/1'),
    );
    await commit(revoke(7), put('a', 'top'), put('b', 'z2'));
  }

  const ALL = [
    '1 put a/1=x',
    '2 put a/2=y',
    '2 put b=z',
    '2 put a/3=w',
    '3 delete a/1',
    '4 delete a/2',
    '4 delete a/3',
    '5 put a=top',
    '6 put b=z2',
  ];

  test('every event in revision order, with full metadata and values', async () => {
    await fixture();
    const page = await storage.readHistory({ fromRevision: 1, key: '', prefix: true, limit: 100 });
    expect(brief(page.events)).toEqual(ALL);
    expect(page).toMatchObject({ more: false, revision: 6 });
    expect(page.events[1]).toEqual({
      type: 'put',
      key: 'a/2',
      value: Buffer.from('y'),
      modRevision: 2,
      createRevision: 2,
      version: 1,
      lease: 7,
    });
    expect(page.events[8]).toMatchObject({ createRevision: 2, version: 2, lease: 0 });
    expect(page.events[5]).toEqual({ type: 'delete', key: 'a/2', value: Buffer.alloc(0), modRevision: 4, createRevision: 0, version: 0, lease: 0 });
  });

  test('the events a batch returns are the events history keeps', async () => {
    const results = await commit(put('k', 'v'), grant(1), txn([{ op: 'put', key: 'k', value: bytes('w'), lease: 1 }]), revoke(1));
    const returned = results.flatMap((r) => ('events' in r ? r.events : []));
    const read = await storage.readHistory({ fromRevision: 0, key: 'k', prefix: false, limit: 100 });
    expect(read.events).toEqual(returned.map((e) => ({ ...e, value: Buffer.from(e.value) })));
    expect(brief(read.events)).toEqual(['1 put k=v', '2 put k=w', '3 delete k']);
  });

  test('returned event values are views into the entry data, not copies', async () => {
    const command = put('k', 'value');
    const data = encodeCommand(command);
    const entry: Entry = { index: 1, term: 1, type: 'normal', data };
    const [result] = await storage.persist({
      softState: null,
      hardState: { term: 1, vote: 'n1', commit: 1 },
      entries: [entry],
      snapshot: null,
      messages: [],
      committed: [entry],
      readStates: [],
      mustSync: true,
    });
    expect(result.kind === 'put' && result.events[0].value.buffer).toBe(data.buffer);
  });

  test('filters by key and by prefix', async () => {
    await fixture();
    const read = (key: string, prefix: boolean, fromRevision = 1) => storage.readHistory({ fromRevision, key, prefix, limit: 100 });
    expect(brief((await read('b', false)).events)).toEqual(['2 put b=z', '6 put b=z2']);
    expect(brief((await read('a', false)).events)).toEqual(['5 put a=top']);
    expect(brief((await read('a/', true)).events)).toEqual(['1 put a/1=x', '2 put a/2=y', '2 put a/3=w', '3 delete a/1', '4 delete a/2', '4 delete a/3']);
    expect(brief((await read('a', true, 4)).events)).toEqual(['4 delete a/2', '4 delete a/3', '5 put a=top']);
    expect((await read('zzz', true)).events).toEqual([]);
    expect((await read('a/2', false, 3)).events.map((e) => e.type)).toEqual(['delete']);
  });

  test('pages never split a revision, and more says whether matching events follow', async () => {
    await fixture();
    const pages: string[][] = [];
    let from = 1;
    for (let i = 0; i < 20; i++) {
      const page = await storage.readHistory({ fromRevision: from, key: '', prefix: true, limit: 2 });
      pages.push(brief(page.events));
      expect(page.revision).toBe(6);
      if (!page.more) break;
      from = (page.events.at(-1)?.modRevision ?? 0) + 1;
    }
    expect(pages).toEqual([
      ['1 put a/1=x', '2 put a/2=y', '2 put b=z', '2 put a/3=w'], // past the limit, to finish revision 2
      ['3 delete a/1', '4 delete a/2', '4 delete a/3'],
      ['5 put a=top', '6 put b=z2'],
    ]);
    expect(pages.flat()).toEqual(ALL);
    // A full page with nothing matching after it says so.
    expect(await storage.readHistory({ fromRevision: 1, key: 'a/', prefix: true, limit: 4 })).toMatchObject({ more: true });
    const last = await storage.readHistory({ fromRevision: 4, key: 'a/', prefix: true, limit: 2 });
    expect(last).toMatchObject({ more: false, events: [expect.anything(), expect.anything()] });
  });

  test('from the current revision + 1 on, nothing yet; fromRevision 0 reads from the start', async () => {
    await fixture();
    expect(await storage.readHistory({ fromRevision: 7, key: '', prefix: true, limit: 10 })).toEqual({ events: [], more: false, revision: 6 });
    expect(await storage.readHistory({ fromRevision: 1000, key: '', prefix: true, limit: 10 })).toEqual({ events: [], more: false, revision: 6 });
    expect(brief((await storage.readHistory({ fromRevision: 0, key: '', prefix: true, limit: 100 })).events)).toEqual(ALL);
  });

  test('history survives a restart', async () => {
    await fixture();
    await reopen();
    expect(brief((await storage.readHistory({ fromRevision: 1, key: '', prefix: true, limit: 100 })).events)).toEqual(ALL);
    await commit(put('after', 'restart'));
    expect(brief((await storage.readHistory({ fromRevision: 6, key: '', prefix: true, limit: 100 })).events)).toEqual([
      '6 put b=z2',
      '7 put after=restart',
    ]);
  });

  test('bad arguments are INVALID_ARGUMENT', async () => {
    const bad = [
      { fromRevision: -1, key: 'k', prefix: false, limit: 1 },
      { fromRevision: 1.5, key: 'k', prefix: false, limit: 1 },
      { fromRevision: 1, key: '', prefix: false, limit: 1 },
      { fromRevision: 1, key: 'k', prefix: false, limit: 0 },
      { fromRevision: 1, key: 'k', prefix: false, limit: MAX_HISTORY_LIMIT + 1 },
    ];
    for (const options of bad) await expect(storage.readHistory(options), JSON.stringify(options)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  test('a read beside persists sees whole batches: its revision matches the events it returns', async () => {
    const writes: Promise<unknown>[] = [];
    const reads: Promise<void>[] = [];
    for (let round = 0; round < 30; round++) {
      const pending = commit(put(`k${round}`, 'v'), put(`k${round}`, 'w'));
      writes.push(pending);
      reads.push(
        storage.readHistory({ fromRevision: 1, key: '', prefix: true, limit: MAX_HISTORY_LIMIT }).then((page) => {
          expect(page.events.map((e) => e.modRevision)).toEqual(Array.from({ length: page.revision }, (_, i) => i + 1));
        }),
      );
      await pending;
    }
    await Promise.all([...writes, ...reads]);
  });
});

describe('history retention', () => {
  test('keeps the last historyRetention revisions; older reads fail with COMPACTED', async () => {
    await reopen({ historyRetention: 3 });
    expect(storage.compactRevision).toBe(0);
    await commit(put('a', '1'), put('a', '2'));
    expect(storage.compactRevision).toBe(0);
    await commit(put('a', '3'), put('b', '4'), put('a', '5'));
    expect([storage.revision, storage.compactRevision]).toEqual([5, 2]);
    expect(brief((await storage.readHistory({ fromRevision: 3, key: '', prefix: true, limit: 10 })).events)).toEqual([
      '3 put a=3',
      '4 put b=4',
      '5 put a=5',
    ]);
    for (const fromRevision of [0, 1, 2]) {
      const err = await storage.readHistory({ fromRevision, key: 'a', prefix: false, limit: 10 }).catch((e: unknown) => e);
      expect(err, `from ${fromRevision}`).toBeInstanceOf(CompactedError);
      expect(err).toMatchObject({ code: 'COMPACTED', compactRevision: 2 });
    }
    expect(await countRaw('history')).toBe(3);
  });

  test('a batch larger than the window writes only what stays, and the window survives restarts', async () => {
    await reopen({ historyRetention: 2 });
    await commit(...Array.from({ length: 6 }, (_, i) => put(`k${i}`, `${i}`)));
    expect(storage.compactRevision).toBe(4);
    expect(await countRaw('history')).toBe(2);
    await reopen({ historyRetention: 2 });
    expect(storage.compactRevision).toBe(4);
    await expect(storage.readHistory({ fromRevision: 4, key: '', prefix: true, limit: 10 })).rejects.toBeInstanceOf(CompactedError);
    expect(brief((await storage.readHistory({ fromRevision: 5, key: '', prefix: true, limit: 10 })).events)).toEqual(['5 put k4=4', '6 put k5=5']);
  });

  test('revisions without changes (failed writes, reads) do not move the window', async () => {
    await reopen({ historyRetention: 2 });
    await commit(put('a', '1'), put('a', '2'));
    await commit(del('absent'), txn([{ op: 'get', key: 'a' }]), put('a', '3', 99));
    expect([storage.revision, storage.compactRevision]).toEqual([2, 0]);
  });

  test('a smaller retention after a restart drops the excess at the next write', async () => {
    await commit(...Array.from({ length: 10 }, (_, i) => put('k', `${i}`)));
    expect(storage.compactRevision).toBe(0);
    await reopen({ historyRetention: 4 });
    await commit(put('k', 'last'));
    expect([storage.revision, storage.compactRevision]).toEqual([11, 7]);
    expect(await countRaw('history')).toBe(4);
  });

  test('historyRetention must be a positive integer', async () => {
    await expect(LevelStorage.open(join(dir, 'other'), { historyRetention: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  test('a store written before history existed reads as compacted up to its revision', async () => {
    await commit(put('a', '1'), put('a', '2'));
    await storage.close();
    // Rewrite the applied record in its first format: u8 1, u64 appliedIndex, u64 revision.
    const db = new Level<Buffer, Buffer>(join(dir, 'member', 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    const meta = db.sublevel<string, Buffer>('meta', { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    const v1 = Buffer.alloc(17);
    v1[0] = 1;
    v1.writeBigUInt64BE(2n, 1);
    v1.writeBigUInt64BE(2n, 9);
    await meta.put('applied', v1);
    await db.close();
    await open();
    await storage.load();
    expect([storage.revision, storage.compactRevision]).toEqual([2, 2]);
    await expect(storage.readHistory({ fromRevision: 2, key: 'a', prefix: false, limit: 10 })).rejects.toBeInstanceOf(CompactedError);
    await commit(put('a', '3'));
    await reopen();
    expect([storage.revision, storage.compactRevision]).toEqual([3, 2]);
    expect(brief((await storage.readHistory({ fromRevision: 3, key: 'a', prefix: false, limit: 10 })).events)).toEqual(['3 put a=3']);
  });
});
