import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { encodeCommand, type Command } from '../../src/kv/command.js';
import { CorruptDataError } from '../../src/kv/errors.js';
import type { Ready } from '../../src/raft/ready.js';
import type { ConfigState, Entry, HardState, SnapshotMeta } from '../../src/raft/types.js';
import { LevelStorage, type PersistedState } from '../../src/storage/level-storage.js';
import { AssertionError } from '../../src/util/assert.js';

const CONFIG: ConfigState = { voters: ['n1', 'n2', 'n3'], learners: ['n4'] };
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined): string => Buffer.from(b ?? []).toString('utf8');

function putEntry(index: number, term: number, key: string, value: string | Uint8Array): Entry {
  const command: Command = { op: 'put', requestId: `r${index}`, key, value: typeof value === 'string' ? bytes(value) : value };
  return { index, term, type: 'normal', data: encodeCommand(command) };
}

function ready(parts: Partial<Ready>): Ready {
  return {
    softState: null,
    hardState: null,
    entries: [],
    snapshot: null,
    messages: [],
    committed: [],
    readStates: [],
    mustSync: true,
    ...parts,
  };
}

/** The 8-byte big-endian key the docs promise for log entries. */
function logKeyOf(index: number): Buffer {
  const key = Buffer.alloc(8);
  key.writeBigUInt64BE(BigInt(index));
  return key;
}

/** Opens the LevelDB underneath, bypassing LevelStorage, to tamper with what it stored. */
async function withRawLog(dir: string, fn: (log: ReturnType<typeof rawLog>) => Promise<void>): Promise<void> {
  const db = new Level<Buffer, Buffer>(join(dir, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  try {
    await fn(rawLog(db));
  } finally {
    await db.close();
  }
}

function rawLog(db: Level<Buffer, Buffer>) {
  return db.sublevel<Buffer, Buffer>('log', { keyEncoding: 'buffer', valueEncoding: 'buffer' });
}

function describeEntries(entries: readonly Entry[]): string[] {
  return entries.map((e) => `${e.index}@${e.term}:${e.type}:${Buffer.from(e.data).toString('hex').slice(-8)}`);
}

let dir: string;
let storage: LevelStorage;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-level-storage-'));
  storage = await LevelStorage.open(join(dir, 'member'));
});

afterEach(async () => {
  await storage.close();
  await rm(dir, { recursive: true, force: true });
});

async function reopen(): Promise<PersistedState | null> {
  await storage.close();
  storage = await LevelStorage.open(join(dir, 'member'));
  return storage.load();
}

describe('first start', () => {
  test('a brand-new directory has no state; bootstrap writes the initial state', async () => {
    expect(await storage.load()).toBeNull();
    const initial = await storage.bootstrap(CONFIG);
    const expected: PersistedState = {
      hardState: { term: 0, vote: null, commit: 0 },
      snapshot: { index: 0, term: 0, config: CONFIG },
      entries: [],
      applied: 0,
      revision: 0,
    };
    expect(initial).toEqual(expected);
    expect(await reopen()).toEqual(expected);
  });

  test('bootstrap refuses a directory that already holds state', async () => {
    await storage.bootstrap(CONFIG);
    await expect(reopen()).resolves.not.toBeNull();
    await expect(storage.bootstrap(CONFIG)).rejects.toThrow(AssertionError);
  });

  test('persist before load or bootstrap is a bug', async () => {
    await expect(storage.persist(ready({}))).rejects.toThrow(/load\(\) or bootstrap\(\)/);
  });
});

describe('restart resumes exactly', () => {
  test('hard state, entries, applied index, revision and data', async () => {
    await storage.bootstrap(CONFIG);
    const e1 = putEntry(1, 1, 'a', 'one');
    const e2: Entry = { index: 2, term: 1, type: 'config', data: bytes('config bytes') };
    const e3 = putEntry(3, 2, 'b', 'two');
    const e4 = putEntry(4, 2, 'a', 'three');
    const noop: Entry = { index: 5, term: 2, type: 'normal', data: new Uint8Array(0) };
    await storage.persist(ready({ hardState: { term: 1, vote: 'n2', commit: 0 }, entries: [e1, e2] }));
    await storage.persist(ready({ hardState: { term: 2, vote: 'n1', commit: 3 }, entries: [e3, e4, noop], committed: [e1, e2, e3] }));
    // A commit-only Ready needs no fsync, but is still written atomically with its effects.
    const results = await storage.persist(ready({ hardState: { term: 2, vote: 'n1', commit: 4 }, committed: [e4], mustSync: false }));
    expect(results).toEqual([expect.objectContaining({ kind: 'put', index: 4, key: 'a', revision: 3, version: 2 })]);

    const loaded = await reopen();
    expect(loaded?.hardState).toEqual<HardState>({ term: 2, vote: 'n1', commit: 4 });
    expect(loaded?.snapshot).toEqual<SnapshotMeta>({ index: 0, term: 0, config: CONFIG });
    expect(describeEntries(loaded?.entries ?? [])).toEqual(describeEntries([e1, e2, e3, e4, noop]));
    expect(loaded?.entries[1]).toMatchObject({ type: 'config', data: Buffer.from('config bytes') });
    expect([loaded?.applied, loaded?.revision]).toEqual([4, 3]);
    expect([storage.appliedIndex, storage.revision]).toEqual([4, 3]);
    expect(await storage.get('a')).toMatchObject({ key: 'a', createRevision: 1, modRevision: 3, version: 2, lease: 0 });
    expect(text((await storage.get('a'))?.value)).toBe('three');
    expect(text((await storage.get('b'))?.value)).toBe('two');

    // And it carries on from there: the next entry applies on top of the loaded state.
    await storage.persist(ready({ hardState: { term: 2, vote: 'n1', commit: 5 }, committed: [noop] }));
    await storage.persist(ready({ entries: [putEntry(6, 2, 'b', 'four')] }));
    const e6 = (await reopen())?.entries.at(-1);
    expect(e6?.index).toBe(6);
    const [r6] = await storage.persist(ready({ hardState: { term: 2, vote: 'n1', commit: 6 }, committed: e6 ? [e6] : [] }));
    expect(r6).toMatchObject({ kind: 'put', key: 'b', revision: 4, createRevision: 2, version: 2 });
  });

  test('the counters move only once the batch is visible', async () => {
    await storage.bootstrap(CONFIG);
    const e1 = putEntry(1, 1, 'k', 'v');
    let done = false;
    const pending = storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 1 }, entries: [e1], committed: [e1] }));
    void pending.then(() => (done = true));
    // Poll while the synced batch is in flight: whenever the counters say "applied", the data
    // must already be readable.
    let polls = 0;
    while (!done) {
      const applied = storage.appliedIndex;
      const record = await storage.get('k');
      if (applied === 1) expect(record).not.toBeNull();
      polls++;
    }
    expect(polls).toBeGreaterThan(0);
    expect([storage.appliedIndex, storage.revision]).toEqual([1, 1]);
  });

  test('one Ready at a time', async () => {
    await storage.bootstrap(CONFIG);
    const first = storage.persist(ready({ entries: [putEntry(1, 1, 'k', 'v')] }));
    await expect(storage.persist(ready({ entries: [putEntry(2, 1, 'k', 'v')] }))).rejects.toThrow(/one Ready at a time/);
    await first;
  });

  test('a committed entry that is not a command writes nothing of its Ready', async () => {
    await storage.bootstrap(CONFIG);
    const garbage: Entry = { index: 1, term: 1, type: 'normal', data: Uint8Array.of(9, 9, 9) };
    await expect(
      storage.persist(ready({ hardState: { term: 1, vote: null, commit: 1 }, entries: [garbage], committed: [garbage] })),
    ).rejects.toThrow(CorruptDataError);
    const loaded = await reopen();
    expect(loaded?.entries).toEqual([]);
    expect(loaded?.hardState.term).toBe(0);
  });
});

describe('log suffix replacement', () => {
  beforeEach(async () => {
    await storage.bootstrap(CONFIG);
    const entries = [1, 2, 3, 4, 5].map((i) => putEntry(i, 1, `k${i}`, `old${i}`));
    await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 1 }, entries, committed: [entries[0]] }));
  });

  test('a shorter suffix from a new leader removes the stale tail', async () => {
    const replacement = [putEntry(3, 2, 'k3', 'new3'), putEntry(4, 2, 'k4', 'new4')];
    await storage.persist(ready({ hardState: { term: 2, vote: 'n2', commit: 1 }, entries: replacement }));
    const loaded = await reopen();
    expect(loaded?.entries.map((e) => `${e.index}@${e.term}`)).toEqual(['1@1', '2@1', '3@2', '4@2']);
    expect(describeEntries(loaded?.entries.slice(2) ?? [])).toEqual(describeEntries(replacement));
  });

  test('a longer suffix replaces and extends', async () => {
    const replacement = [2, 3, 4, 5, 6, 7].map((i) => putEntry(i, 3, `k${i}`, `new${i}`));
    await storage.persist(ready({ hardState: { term: 3, vote: 'n3', commit: 1 }, entries: replacement }));
    await storage.persist(ready({ entries: [putEntry(8, 3, 'k8', 'v8')] }));
    const loaded = await reopen();
    expect(loaded?.entries.map((e) => `${e.index}@${e.term}`)).toEqual(['1@1', '2@3', '3@3', '4@3', '5@3', '6@3', '7@3', '8@3']);
  });

  test('entries must attach to the log, and committed entries are never replaced', async () => {
    await expect(storage.persist(ready({ entries: [putEntry(7, 2, 'k', 'v')] }))).rejects.toThrow(/does not attach/);
    await expect(storage.persist(ready({ entries: [putEntry(1, 2, 'k', 'v')] }))).rejects.toThrow(/replace committed/);
    expect((await reopen())?.entries).toHaveLength(5);
  });
});

describe('corruption is detected on load', () => {
  beforeEach(async () => {
    await storage.bootstrap(CONFIG);
    const entries = [1, 2, 3].map((i) => putEntry(i, 1, `k${i}`, `value${i}`));
    await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 3 }, entries, committed: entries }));
    await storage.close();
  });

  async function loadError(): Promise<unknown> {
    storage = await LevelStorage.open(join(dir, 'member'));
    return storage.load().then(
      () => null,
      (err: unknown) => err,
    );
  }

  test.each([
    ['a byte of the data', -1],
    ['a byte of the term', 4 + 7],
    ['a byte of the checksum', 0],
  ])('flipping %s', async (_, offset) => {
    await withRawLog(join(dir, 'member'), async (log) => {
      const value = await log.get(logKeyOf(2));
      if (value === undefined) throw new Error('entry 2 missing: the key layout changed');
      const tampered = Buffer.from(value);
      tampered[offset < 0 ? tampered.length + offset : offset] ^= 0x01;
      await log.put(logKeyOf(2), tampered);
    });
    const err = await loadError();
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as Error).message).toContain(join(dir, 'member'));
    expect((err as Error).message).toMatch(/log entry 2 fails its checksum/);
  });

  test('an entry stored under another index', async () => {
    await withRawLog(join(dir, 'member'), async (log) => {
      const value = await log.get(logKeyOf(3));
      await log.put(logKeyOf(4), value ?? Buffer.alloc(0));
    });
    expect((await loadError()) as Error).toMatchObject({ code: 'CORRUPT_DATA', message: expect.stringMatching(/log entry 4/) });
  });

  test('a gap in the log', async () => {
    await withRawLog(join(dir, 'member'), (log) => log.del(logKeyOf(2)));
    expect(((await loadError()) as Error).message).toMatch(/log entry 3 found where 2 belongs/);
  });

  test('an untouched log loads fine (the tampering above is what fails)', async () => {
    expect(await loadError()).toBeNull();
  });
});

describe('list', () => {
  // In byte order of their UTF-8: note U+FFFF (EF BF BF) sorts before U+1F600 (F0 9F 98 80),
  // unlike JS string order.
  const KEYS = ['a', 'a/b', 'a/c', 'a0', 'b', 'é', '\uFFFF', '😀', 'a/b/c'];
  const BYTE_ORDER = [...KEYS].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));

  beforeEach(async () => {
    await storage.bootstrap(CONFIG);
    const entries = KEYS.map((k, i) => putEntry(i + 1, 1, k, `v:${k}`));
    await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: entries.length }, entries, committed: entries }));
  });

  test('all keys in byte order, with values and metadata', async () => {
    const page = await storage.list({ prefix: '', limit: 100 });
    expect(page.items.map((i) => i.key)).toEqual(BYTE_ORDER);
    expect(BYTE_ORDER).not.toEqual([...KEYS].sort()); // the fixture does exercise byte order
    expect(page.revision).toBe(KEYS.length);
    expect(page.more).toBe(false);
    const ab = page.items.find((i) => i.key === 'a/b');
    expect(ab).toMatchObject({ createRevision: 2, modRevision: 2, version: 1, lease: 0 });
    expect(text(ab?.value)).toBe('v:a/b');
  });

  test('prefix', async () => {
    expect((await storage.list({ prefix: 'a/', limit: 100 })).items.map((i) => i.key)).toEqual(['a/b', 'a/b/c', 'a/c']);
    expect((await storage.list({ prefix: 'a', limit: 100 })).items.map((i) => i.key)).toEqual(['a', 'a/b', 'a/b/c', 'a/c', 'a0']);
    expect((await storage.list({ prefix: 'zz', limit: 100 })).items).toEqual([]);
    expect((await storage.list({ prefix: '\uFFFF', limit: 100 })).items.map((i) => i.key)).toEqual(['\uFFFF']);
  });

  test('paging with after and limit visits every key once, and more says when to stop', async () => {
    const seen: string[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const page = await storage.list({ prefix: '', limit: 2, ...(after === undefined ? {} : { after }) });
      seen.push(...page.items.map((i) => i.key));
      after = page.items.at(-1)?.key;
      if (!page.more) break;
    }
    expect(seen).toEqual(BYTE_ORDER);
  });

  test('after combines with prefix; more is false when the prefix ends exactly at the limit', async () => {
    expect(await storage.list({ prefix: 'a/', after: 'a/b', limit: 1 })).toMatchObject({
      items: [expect.objectContaining({ key: 'a/b/c' })],
      more: true,
    });
    expect(await storage.list({ prefix: 'a/', after: 'a/b/c', limit: 1 })).toMatchObject({
      items: [expect.objectContaining({ key: 'a/c' })],
      more: false,
    });
    expect((await storage.list({ prefix: 'a/', after: 'a', limit: 10 })).items).toHaveLength(3);
    expect((await storage.list({ prefix: 'a/', after: 'b', limit: 10 })).items).toHaveLength(0);
  });

  test('bad limits are INVALID_ARGUMENT', async () => {
    await expect(storage.list({ prefix: '', limit: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(storage.list({ prefix: '', limit: 1e9 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  test('a list running beside persists sees whole batches only', async () => {
    // Each Ready rewrites both keys; a torn read would show them at different versions.
    let index = KEYS.length;
    const pairs: Promise<unknown>[] = [];
    for (let round = 0; round < 30; round++) {
      const entries = [putEntry(++index, 1, 'pair/x', `${round}`), putEntry(++index, 1, 'pair/y', `${round}`)];
      const persisted = storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: index }, entries, committed: entries }));
      const listed = storage.list({ prefix: 'pair/', limit: 10 }).then((page) => {
        if (page.items.length === 0) return;
        const [x, y] = page.items;
        expect(text(x.value)).toBe(text(y.value));
        expect(page.revision).toBe(y.modRevision);
      });
      pairs.push(persisted, listed);
      await persisted;
    }
    await Promise.all(pairs);
  });
});

test('a 4 MiB value round-trips through the log and the store', async () => {
  await storage.bootstrap(CONFIG);
  const value = new Uint8Array(4 * 1024 * 1024).map((_, i) => (i * 131 + (i >> 12)) & 0xff);
  const entry = putEntry(1, 1, 'big', value);
  await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 1 }, entries: [entry], committed: [entry] }));
  expect(Buffer.compare((await storage.get('big'))?.value ?? new Uint8Array(0), value)).toBe(0);
  const loaded = await reopen();
  expect(Buffer.compare(loaded?.entries[0].data ?? new Uint8Array(0), entry.data)).toBe(0);
  expect(Buffer.compare((await storage.get('big'))?.value ?? new Uint8Array(0), value)).toBe(0);
});

describe('snapshot boundary', () => {
  beforeEach(async () => {
    await storage.bootstrap(CONFIG);
    const entries = [1, 2, 3, 4].map((i) => putEntry(i, 1, `k${i}`, `v${i}`));
    await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 3 }, entries, committed: entries.slice(0, 3) }));
  });

  test('a boundary matching the log drops the entries it covers and keeps the rest', async () => {
    const snapshot: SnapshotMeta = { index: 2, term: 1, config: { voters: ['n1'], learners: [] } };
    await storage.persist(ready({ snapshot }));
    const loaded = await reopen();
    expect(loaded?.snapshot).toEqual(snapshot);
    expect(loaded?.entries.map((e) => e.index)).toEqual([3, 4]);
    expect(loaded?.applied).toBe(3);
    expect(text((await storage.get('k1'))?.value)).toBe('v1'); // the key-value state stays
  });

  test('a boundary from another term discards the whole log', async () => {
    const snapshot: SnapshotMeta = { index: 3, term: 5, config: CONFIG };
    await storage.persist(ready({ snapshot }));
    const loaded = await reopen();
    expect(loaded?.snapshot).toEqual(snapshot);
    expect(loaded?.entries).toEqual([]);
    expect(loaded?.applied).toBe(3);
  });

  test('a conflicting boundary below the applied index is a bug, and writes nothing', async () => {
    await expect(storage.persist(ready({ snapshot: { index: 2, term: 5, config: CONFIG } }))).rejects.toThrow(
      /conflicts with applied index 3/,
    );
    expect((await reopen())?.entries).toHaveLength(4);
  });

  test('installing an image beyond the applied index is refused before writing', async () => {
    await expect(storage.persist(ready({ snapshot: { index: 4, term: 1, config: CONFIG } }))).rejects.toThrow(/not supported yet/);
    expect((await reopen())?.snapshot.index).toBe(0);
  });
});

describe('get', () => {
  test('absent keys are null; keys that cannot exist are INVALID_ARGUMENT', async () => {
    await storage.bootstrap(CONFIG);
    expect(await storage.get('nope')).toBeNull();
    await expect(storage.get('')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
