import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { encodeCommand, type Command } from '../../src/kv/command.js';
import { CorruptDataError } from '../../src/kv/errors.js';
import type { Ready } from '../../src/raft/ready.js';
import type { ConfigState, Entry, HardState, SnapshotMeta } from '../../src/raft/types.js';
import { encodeApplied, encodeHardState, encodeLogEntry, encodeSnapshotMeta } from '../../src/storage/level-format.js';
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

/** A write that did not finish: zeros from `from` to the end of the file (it was zeros before). */
async function zero(file: string, from: number): Promise<void> {
  const bytes = await readFile(file);
  bytes.fill(0, from);
  await writeFile(file, bytes);
}

interface Frame {
  readonly offset: number;
  readonly end: number;
}

/** The newest write-ahead log segment of the test member, and where each write (frame) in it lies. */
async function walFrames(): Promise<{ file: string; frames: Frame[] }> {
  const walDir = join(dir, 'member', 'wal');
  const names = (await readdir(walDir)).filter((n) => n.endsWith('.wal')).sort();
  // The newest segment that holds data (the next one is made ready, all zeros, ahead of time).
  let file = '';
  let bytes = Buffer.alloc(0);
  for (const name of names) {
    const content = await readFile(join(walDir, name));
    if (content.readUInt32BE(0) > 0) [file, bytes] = [join(walDir, name), content];
  }
  const frames: Frame[] = [];
  // Segments are written with zeros before use: the data ends at the first empty frame header.
  for (let offset = 0; offset + 8 <= bytes.length && bytes.readUInt32BE(offset) > 0; ) {
    const end = offset + 8 + bytes.readUInt32BE(offset);
    frames.push({ offset, end });
    offset = end;
  }
  return { file, frames };
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
  // Each persist is one write, one frame of the write-ahead log: entry i is in the frame of the
  // i-th persist after bootstrap's.
  beforeEach(async () => {
    await storage.bootstrap(CONFIG);
    const entries = [1, 2, 3].map((i) => putEntry(i, 1, `k${i}`, `value${i}`));
    await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 0 }, entries: [entries[0]] }));
    await storage.persist(ready({ entries: [entries[1]] }));
    await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 2 }, entries: [entries[2]], committed: entries.slice(0, 2) }));
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
    ['a byte of the data', (f: Frame) => f.end - 1],
    ['a byte of the term', (f: Frame) => f.end - 'value2'.length - 20],
    ['a byte of the checksum', (f: Frame) => f.offset + 4],
    ['a byte of the length', (f: Frame) => f.offset + 3],
  ])('flipping %s of a write the log has more after', async (_, at) => {
    const { file, frames } = await walFrames();
    const bytes = await readFile(file);
    bytes[at(frames[2])] ^= 0x01; // entry 2's frame (frames[0] is the segment's hard state)
    await writeFile(file, bytes);
    const err = await loadError();
    expect(err).toBeInstanceOf(CorruptDataError);
    expect((err as Error).message).toContain(join(dir, 'member'));
    expect((err as Error).message).toMatch(/write-ahead log .* at byte \d+: a frame (fails its checksum|of \d+ bytes is cut short)/);
  });

  test('a missing write (a gap in the log)', async () => {
    const { file, frames } = await walFrames();
    const bytes = await readFile(file);
    await writeFile(file, Buffer.concat([bytes.subarray(0, frames[2].offset), bytes.subarray(frames[2].end)]));
    expect(((await loadError()) as Error).message).toMatch(/entry 3 found where 2 belongs/);
  });

  test('a lost write-ahead log is not mistaken for a new member', async () => {
    await rm(join(dir, 'member', 'wal'), { recursive: true });
    expect(((await loadError()) as Error).message).toMatch(/write-ahead log \(wal\/\) is missing/);
  });

  test('a torn last write that holds an applied entry is corruption, and nothing is cut off', async () => {
    const { file, frames } = await walFrames();
    const before = await readFile(file);
    await zero(file, frames.at(-1)!.end - 3); // entry 3 and the commit of 1 and 2: 2 was applied
    const torn = await readFile(file);
    // The torn write holds entry 3 only; 1 and 2 were applied from earlier writes, so this loads.
    expect(await loadError()).toBeNull();
    expect(before.equals(torn)).toBe(false);
    await storage.close();
    // Cut into entry 2's write too: applied index 2 is then past the log, and the file stays as it was.
    await zero(file, frames[2].end - 3);
    const cut = await readFile(file);
    expect(((await loadError()) as Error).message).toMatch(/applied index 2 is outside the log \[0, 1\]/);
    expect((await readFile(file)).equals(cut)).toBe(true);
  });

  test('an untouched log loads fine (the tampering above is what fails)', async () => {
    expect(await loadError()).toBeNull();
    expect(storage.appliedIndex).toBe(2);
  });
});

describe('a crash during a write: the torn last write is left out', () => {
  beforeEach(async () => {
    await storage.bootstrap(CONFIG);
    const e1 = putEntry(1, 1, 'k1', 'v1');
    await storage.persist(ready({ hardState: { term: 1, vote: 'n1', commit: 0 }, entries: [e1] }));
    await storage.persist(ready({ entries: [putEntry(2, 1, 'k2', 'v2'), putEntry(3, 1, 'k3', 'v3')] }));
    await storage.close();
  });

  test.each([
    ['cut short', async (file: string, last: Frame) => zero(file, last.end - 5)],
    ['cut inside its header', async (file: string, last: Frame) => zero(file, last.offset + 3)],
    ['cut short, in a file that ends there', async (file: string, last: Frame) => truncate(file, last.end - 5)],
    ['zeros where it should be', async (file: string, last: Frame) => {
      const bytes = await readFile(file);
      bytes.fill(0, last.offset);
      await writeFile(file, bytes);
    }],
    ['its bytes garbled up to the end of the file', async (file: string, last: Frame) => {
      const bytes = await readFile(file);
      bytes[last.end - 2] ^= 0xff;
      await writeFile(file, bytes);
    }],
  ])('%s: load drops it, cuts it off, and writing carries on', async (_, tear) => {
    const { file, frames } = await walFrames();
    await tear(file, frames.at(-1)!);
    const loaded = await reopen();
    expect(loaded?.entries.map((e) => e.index)).toEqual([1]);
    expect(loaded?.hardState).toEqual({ term: 1, vote: 'n1', commit: 0 });
    expect((await readFile(file)).subarray(frames.at(-1)!.offset).every((b) => b === 0)).toBe(true);
    const e2 = putEntry(2, 2, 'k2', 'again');
    await storage.persist(ready({ hardState: { term: 2, vote: 'n2', commit: 2 }, entries: [e2], committed: [loaded!.entries[0], e2] }));
    const again = await reopen();
    expect(describeEntries(again?.entries ?? [])).toEqual(describeEntries([loaded!.entries[0], e2]));
    expect(text((await storage.get('k2'))?.value)).toBe('again');
  });
});

describe('a data dir from before the write-ahead log', () => {
  test('its LevelDB log and hard state move into wal/, once', async () => {
    await storage.close();
    const member = join(dir, 'member');
    const entries = [putEntry(1, 1, 'a', 'one'), putEntry(2, 2, 'b', 'two'), putEntry(3, 2, 'c', 'three')];
    const db = new Level<Buffer, Buffer>(join(member, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open();
    const meta = db.sublevel<string, Buffer>('meta', { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    await meta.put('hardState', encodeHardState({ term: 2, vote: 'n3', commit: 0 }));
    await meta.put('snapshot', encodeSnapshotMeta({ index: 0, term: 0, config: CONFIG }));
    await meta.put('applied', encodeApplied({ appliedIndex: 0, revision: 0, compactRevision: 0 }));
    for (const e of entries) await rawLog(db).put(logKeyOf(e.index), encodeLogEntry(e));
    await db.close();

    storage = await LevelStorage.open(member);
    const loaded = await storage.load();
    expect(loaded?.hardState).toEqual({ term: 2, vote: 'n3', commit: 0 });
    expect(describeEntries(loaded?.entries ?? [])).toEqual(describeEntries(entries));
    await storage.persist(ready({ hardState: { term: 2, vote: 'n3', commit: 3 }, committed: entries, mustSync: false }));
    await storage.close();
    await withRawLog(member, async (log) => expect(await log.keys().all()).toEqual([]));
    const again = await reopen();
    expect(describeEntries(again?.entries ?? [])).toEqual(describeEntries(entries));
    expect(text((await storage.get('c'))?.value)).toBe('three');
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
