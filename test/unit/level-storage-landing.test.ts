import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { encodeCommand, type Command } from '../../src/kv/command.js';
import type { Ready } from '../../src/raft/ready.js';
import type { ConfigState, Entry } from '../../src/raft/types.js';
import { LevelStorage, MAX_READIES_PER_BATCH, MAX_UNLANDED_BATCHES } from '../../src/storage/level-storage.js';
import { Wal } from '../../src/storage/wal.js';

// persist() answers once the log write is durable; the state machine's LevelDB batch lands after.
// Until it does, point reads and the next apply must see its writes, every other read must wait
// for it, batches must land in order, and a batch that fails to land must stop the storage.
// LevelDB's own batch call is held back here (the real call, run later), so the window is wide.

const CONFIG: ConfigState = { voters: ['n1', 'n2', 'n3'], learners: [] };

type BatchFn = (this: unknown, ops: unknown[], options: { sync: boolean }) => Promise<void>;
const proto = Level.prototype as unknown as { _batch: BatchFn };
const realBatch = proto._batch;

/** LevelDB batches waiting to be let through, in the order they were handed over. */
let held: { ops: unknown[]; release: () => void; fail: (err: Error) => void }[] = [];
let holding = false;
/** Every batch handed to LevelDB, held or not. */
let handed: unknown[][] = [];

function holdBatches(): void {
  holding = true;
}

/** Lets the held batches (and any later ones) through, in order. */
function releaseBatches(): void {
  holding = false;
  for (const h of held.splice(0)) h.release();
}

let dir: string;
let storage: LevelStorage;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-landing-'));
  held = [];
  handed = [];
  holding = false;
  proto._batch = function (this: unknown, ops, options) {
    handed.push(ops);
    if (!holding) return realBatch.call(this, ops, options);
    return new Promise<void>((resolve, reject) => {
      held.push({
        ops,
        release: () => realBatch.call(this, ops, options).then(resolve, reject),
        fail: reject,
      });
    });
  };
  storage = await LevelStorage.open(join(dir, 'member'));
  await storage.bootstrap(CONFIG);
});

afterEach(async () => {
  releaseBatches();
  proto._batch = realBatch;
  await storage.close();
  await rm(dir, { recursive: true, force: true });
});

function ready(parts: Partial<Ready>): Ready {
  return { softState: null, hardState: null, entries: [], snapshot: null, messages: [], committed: [], readStates: [], mustSync: true, ...parts };
}

function entry(index: number, command: Command): Entry {
  return { index, term: 1, type: 'normal', data: encodeCommand(command) };
}

const put = (index: number, key: string, value: string, extra: Partial<Command> = {}): Entry =>
  entry(index, { op: 'put', requestId: `r${index}`, key, value: Buffer.from(value), ...extra } as Command);

/** Logs the entries in one Ready, then commits them in another (a follower's or leader's usual order). */
async function logThenCommit(...entries: Entry[]): Promise<ReturnType<LevelStorage['persist']>> {
  await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 0 }, entries }));
  return storage.persist(ready({ committed: entries, mustSync: false }));
}

const valueOf = (key: string): string | null => {
  const r = storage.getSync(key);
  return r === null ? null : Buffer.from(r.value).toString();
};

/** Turns of the event loop, enough for any promise that could settle to settle. */
async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('applied writes before their batch lands', () => {
  test('persist answers without waiting for LevelDB; point reads see the write, list waits', async () => {
    const e1 = put(1, 'a', 'one');
    await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 0 }, entries: [e1] }));
    holdBatches();
    const [result] = await storage.persist(ready({ committed: [e1], mustSync: false }));
    expect(result).toMatchObject({ kind: 'put', key: 'a', revision: 1 });
    expect(held).toHaveLength(1); // the batch is still with us, not in LevelDB
    expect(storage.appliedIndex).toBe(1);
    expect(valueOf('a')).toBe('one');
    expect(Buffer.from((await storage.get('a'))?.value ?? []).toString()).toBe('one');

    let listed: string[] | null = null;
    const listing = storage.list({ prefix: '', limit: 10 }).then((page) => (listed = page.items.map((i) => i.key)));
    await turns();
    expect(listed).toBeNull(); // a range read waits for the batch
    releaseBatches();
    await listing;
    expect(listed).toEqual(['a']);
  });

  test('the next apply sees an unlanded write: preconditions, versions and revisions carry on', async () => {
    holdBatches();
    await logThenCommit(put(1, 'a', 'one'));
    await logThenCommit(put(2, 'a', 'two', { ifMatch: 1 }), put(3, 'b', 'x', { ifNoneMatch: true }));
    const [again] = await logThenCommit(put(4, 'b', 'y', { ifNoneMatch: true }));
    expect(again).toMatchObject({ kind: 'error', error: { code: 'PRECONDITION_FAILED' } });
    expect(storage.getSync('a')).toMatchObject({ version: 2, modRevision: 2, createRevision: 1 });
    expect(valueOf('b')).toBe('x');
    expect(held).toHaveLength(1); // each batch waits for the one before it
    releaseBatches();
    await storage.list({ prefix: '', limit: 10 }); // everything has landed
    expect(held).toHaveLength(0);
    await storage.close();
    storage = await LevelStorage.open(join(dir, 'member'));
    const loaded = await storage.load();
    expect([loaded?.applied, loaded?.revision]).toEqual([4, 3]);
    expect(valueOf('a')).toBe('two');
    expect(valueOf('b')).toBe('x');
  });

  test('a delete before it lands: the key reads as absent', async () => {
    await logThenCommit(put(1, 'a', 'one'));
    holdBatches();
    await logThenCommit(entry(2, { op: 'delete', requestId: 'd', key: 'a' }));
    expect(storage.getSync('a')).toBeNull();
    releaseBatches();
    await storage.list({ prefix: '', limit: 10 });
    expect(storage.getSync('a')).toBeNull();
  });

  test('at most MAX_UNLANDED_BATCHES batches wait to land: then persist waits for them', async () => {
    holdBatches();
    let index = 0;
    for (let i = 0; i < MAX_UNLANDED_BATCHES; i++) await logThenCommit(put(++index, `k${index}`, 'v'));
    let answered = false;
    const next = logThenCommit(put(++index, `k${index}`, 'v')).then(() => (answered = true));
    // Without the bound it answers as soon as its log write is done (milliseconds).
    for (let i = 0; i < 50 && !answered; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(answered).toBe(false);
    releaseBatches();
    await next;
    expect(storage.appliedIndex).toBe(MAX_UNLANDED_BATCHES + 1);
  });

  test('a batch that fails to land stops the storage: the next persist and range reads throw', async () => {
    holdBatches();
    await logThenCommit(put(1, 'a', 'one'));
    expect(held).toHaveLength(1);
    held.splice(0)[0].fail(new Error('disk on fire'));
    await turns();
    holding = false;
    await expect(storage.persist(ready({ entries: [put(2, 'a', 'two')] }))).rejects.toThrow('disk on fire');
    await expect(storage.list({ prefix: '', limit: 10 })).rejects.toThrow('disk on fire');
  });
});

describe('the read cache', () => {
  test('a write replaces what the cache held, before and after it lands', async () => {
    await logThenCommit(put(1, 'a', 'one'));
    await storage.list({ prefix: '', limit: 1 }); // landed
    expect(valueOf('a')).toBe('one'); // read from LevelDB and kept
    expect(storage.getSync('a')).toBe(storage.getSync('a')); // the same record: a cache hit
    holdBatches();
    await logThenCommit(put(2, 'a', 'two'));
    expect(valueOf('a')).toBe('two');
    releaseBatches();
    await storage.list({ prefix: '', limit: 1 });
    expect(valueOf('a')).toBe('two');
    expect(storage.getSync('a')).toMatchObject({ version: 2, modRevision: 2 });
  });

  test('bounded: with room for 2 records, the oldest goes', async () => {
    await storage.close();
    storage = await LevelStorage.open(join(dir, 'member'), { readCache: { entries: 2, bytes: 1 << 20, valueBytes: 1024 } });
    await storage.load();
    await logThenCommit(put(1, 'a', '1'), put(2, 'b', '2'), put(3, 'c', '3'));
    await storage.list({ prefix: '', limit: 1 });
    const a = storage.getSync('a');
    expect(storage.getSync('a')).toBe(a);
    storage.getSync('b');
    storage.getSync('c'); // 'a' goes
    expect(storage.getSync('a')).not.toBe(a);
    expect(storage.getSync('a')).toEqual(a);
  });
});

describe('the metadata kept for applies', () => {
  // A put or delete needs only the metadata of the key's record; LevelDB would hand over the
  // whole record. Every point read LevelDB serves is counted here (the real call, counted).
  type GetSyncFn = (this: unknown, key: unknown, options: unknown) => unknown;
  const getProto = Level.prototype as unknown as { _getSync: GetSyncFn };
  const realGetSync = getProto._getSync;
  let pointReads = 0;
  beforeEach(() => {
    pointReads = 0;
    getProto._getSync = function (this: unknown, key, options) {
      pointReads++;
      return realGetSync.call(this, key, options);
    };
  });
  afterEach(() => {
    getProto._getSync = realGetSync;
  });
  const landed = () => storage.list({ prefix: '', limit: 1 });
  const del = (index: number, key: string): Entry => entry(index, { op: 'delete', requestId: `r${index}`, key } as Command);

  test('a put or delete over a landed write reads no record from LevelDB; versions carry on', async () => {
    await logThenCommit(put(1, 'a', 'one'));
    await landed();
    const before = pointReads;
    const [second] = await logThenCommit(put(2, 'a', 'two', { ifMatch: 1 }));
    expect(second).toMatchObject({ kind: 'put', version: 2, createRevision: 1, modRevision: 2 });
    await landed();
    const [stale] = await logThenCommit(put(3, 'a', 'three', { ifMatch: 1 }));
    expect(stale).toMatchObject({ kind: 'error', error: { code: 'PRECONDITION_FAILED' } });
    const [gone] = await logThenCommit(del(4, 'a'));
    expect(gone).toMatchObject({ kind: 'delete', deleted: 1 });
    expect(pointReads - before).toBe(0);
    await landed();
    const [fresh] = await logThenCommit(put(5, 'a', 'four'));
    expect(fresh).toMatchObject({ kind: 'put', version: 1, createRevision: 4 }); // a delete keeps nothing: LevelDB says absent
    expect(pointReads - before).toBe(1);
  });

  const txnOn = (index: number, compare: unknown[], success: unknown[]): Entry =>
    entry(index, { op: 'txn', requestId: `r${index}`, compare, success, failure: [] } as unknown as Command);

  test('a txn comparing a value reads the record, with its metadata kept', async () => {
    await logThenCommit(put(1, 'a', 'one'));
    await landed();
    const before = pointReads;
    const [result] = await logThenCommit(txnOn(2, [{ key: 'a', target: 'value', op: '=', value: Buffer.from('one') }], [{ op: 'delete', key: 'a' }]));
    expect(result).toMatchObject({ kind: 'txn', succeeded: true });
    expect(pointReads - before).toBe(1);
  });

  test('a txn getting a value reads the record, with its metadata kept', async () => {
    await logThenCommit(put(1, 'a', 'one'));
    await landed();
    const before = pointReads;
    const [result] = await logThenCommit(txnOn(2, [{ key: 'a', target: 'version', op: '=', value: 1 }], [{ op: 'get', key: 'a' }]));
    expect(result).toMatchObject({ kind: 'txn', succeeded: true });
    const got = (result as unknown as { results: { item: { value: Uint8Array; version: number } }[] }).results[0];
    expect([Buffer.from(got.item.value).toString(), got.item.version]).toEqual(['one', 1]);
    expect(pointReads - before).toBe(1);
  });

  test('after a reopen nothing is kept: the first apply reads the record, the next does not', async () => {
    await logThenCommit(put(1, 'a', 'one'));
    await landed();
    await storage.close();
    storage = await LevelStorage.open(join(dir, 'member'));
    await storage.load();
    const before = pointReads;
    for (const e of [put(2, 'a', 'two'), put(3, 'a', 'three')]) {
      await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: e.index - 1 }, entries: [e] }));
      await storage.persist(ready({ committed: [e], mustSync: false }));
      await landed(); // so the next put finds no unlanded write to build on
      expect(pointReads - before, `after entry ${e.index}`).toBe(1);
    }
    expect(storage.getSync('a')).toMatchObject({ version: 3, createRevision: 1 });
  });
});

describe('the order of a Ready that logs and applies', () => {
  test('the log write starts before the apply reads the keys it changes', async () => {
    // Entries logged by an earlier Ready are durable: their apply need not hold the log write back.
    // On a follower, that write is what stands between an append and its acknowledgement.
    type Fn = (...args: unknown[]) => unknown;
    const walProto = Wal.prototype as unknown as { append: Fn };
    const levelProto = Level.prototype as unknown as { _getSync: Fn };
    const realAppend = walProto.append;
    const realGetSync = levelProto._getSync;
    const order: string[] = [];
    walProto.append = function (this: unknown, ...args: unknown[]) {
      order.push('log write');
      return realAppend.apply(this, args);
    };
    levelProto._getSync = function (this: unknown, ...args: unknown[]) {
      order.push('apply read');
      return realGetSync.apply(this, args);
    };
    try {
      await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 0 }, entries: [put(1, 'a', 'one')] }));
      order.length = 0;
      await storage.persist(ready({ entries: [put(2, 'b', 'two')], committed: [put(1, 'a', 'one')] }));
      expect(order.indexOf('apply read')).toBeGreaterThan(-1);
      expect(order.indexOf('log write')).toBeLessThan(order.indexOf('apply read'));
      expect(valueOf('a')).toBe('one');
    } finally {
      walProto.append = realAppend;
      levelProto._getSync = realGetSync;
    }
  });
});

describe('applied writes gathered into one LevelDB batch (landDelayMs)', () => {
  let index = 0;
  /** The next entry to log and apply. */
  const next = (key: string, value: string): Entry => put(++index, key, value);

  /** A storage with this landDelayMs, past its first apply (which syncs, so is handed over at once). */
  async function reopen(landDelayMs: number): Promise<void> {
    await storage.close();
    storage = await LevelStorage.open(join(dir, `gathering-${landDelayMs}`), { landDelayMs });
    await storage.bootstrap(CONFIG);
    index = 0;
    await logThenCommit(next('first', 'synced'));
    await storage.list({ prefix: '', limit: 1 });
    handed = [];
  }

  test('the writes of several Readies go to LevelDB as one batch, handed over when a read must wait', async () => {
    await reopen(60_000);
    holdBatches();
    await logThenCommit(next('a', 'one'));
    await logThenCommit(next('b', 'two'));
    await logThenCommit(next('a', 'three'));
    expect(handed).toHaveLength(0); // gathered, not handed over
    expect(valueOf('a')).toBe('three');
    expect(valueOf('b')).toBe('two');
    const listing = storage.list({ prefix: '', limit: 10 });
    await turns();
    expect(handed).toHaveLength(1); // a range read hands them over at once, as one batch
    releaseBatches();
    expect((await listing).items.map((i) => i.key)).toEqual(['a', 'b', 'first']);
    await storage.close();
    storage = await LevelStorage.open(join(dir, 'gathering-60000'));
    expect((await storage.load())?.applied).toBe(4);
    expect(valueOf('a')).toBe('three');
  });

  test(`at most ${MAX_READIES_PER_BATCH} Readies are gathered: the next batch starts after that`, async () => {
    await reopen(60_000);
    for (let i = 1; i <= MAX_READIES_PER_BATCH + 1; i++) await logThenCommit(next(`k${i}`, 'v'));
    expect(handed).toHaveLength(1);
    await storage.list({ prefix: '', limit: 1 });
    expect(handed).toHaveLength(2);
  });

  test('without anyone waiting, the gathered writes are handed over after landDelayMs', async () => {
    await reopen(20);
    await logThenCommit(next('a', 'one'));
    await logThenCommit(next('b', 'two'));
    expect(handed).toHaveLength(0);
    for (let i = 0; i < 100 && handed.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(handed).toHaveLength(1);
  });

  test('close hands the gathered writes over', async () => {
    await reopen(60_000);
    await logThenCommit(next('a', 'one'));
    expect(handed).toHaveLength(0);
    await storage.close();
    expect(handed).toHaveLength(1);
    storage = await LevelStorage.open(join(dir, 'gathering-60000'));
    await storage.load();
  });

  test('a batch that fails to land stops the storage, gathered or not', async () => {
    await reopen(60_000);
    holdBatches();
    await logThenCommit(next('a', 'one'));
    const listing = storage.list({ prefix: '', limit: 10 });
    await turns();
    held.splice(0)[0].fail(new Error('disk on fire'));
    await expect(listing).rejects.toThrow('disk on fire');
    holding = false;
    await expect(storage.persist(ready({ entries: [put(index + 1, 'a', 'two')] }))).rejects.toThrow('disk on fire');
  });
});
