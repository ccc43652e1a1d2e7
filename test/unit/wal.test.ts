import { createHook } from 'node:async_hooks';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { CorruptDataError } from '../../src/kv/errors.js';
import type { Entry, HardState } from '../../src/raft/types.js';
import { INLINE_WRITE_MAX_BYTES, Wal, type WalContents } from '../../src/storage/wal.js';

const SEGMENT = 4096;

function entry(index: number, term: number, bytes = 100): Entry {
  return { index, term, type: index % 7 === 0 ? 'config' : 'normal', data: Buffer.alloc(bytes, index % 251) };
}

function range(from: number, to: number, term: number, bytes = 100): Entry[] {
  return Array.from({ length: to - from + 1 }, (_, i) => entry(from + i, term, bytes));
}

/** index@term for each entry, and that each one's data is what entry() made. */
function shape(contents: WalContents): string[] {
  return contents.entries.map((e) => {
    expect(Buffer.from(e.data).every((b) => b === e.index % 251)).toBe(true);
    return `${e.index}@${e.term}`;
  });
}

let dir: string;
let wal: Wal;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-wal-'));
  wal = (await Wal.open(dir, { segmentBytes: SEGMENT })).wal;
});

afterEach(async () => {
  await wal.close();
  await rm(dir, { recursive: true, force: true });
});

async function reopen(): Promise<WalContents> {
  await wal.close();
  const opened = await Wal.open(dir, { segmentBytes: SEGMENT });
  wal = opened.wal;
  return opened.contents;
}

async function segmentFiles(): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.wal')).sort();
}

describe('replay rebuilds the log as it was written', () => {
  test('a new directory holds nothing; the first write makes a segment', async () => {
    expect(await reopen()).toEqual({ hardState: null, entries: [], after: 0, any: false, torn: null });
    await wal.append({ term: 1, vote: 'n1', commit: 0 }, range(1, 3, 1));
    const contents = await reopen();
    expect(contents.hardState).toEqual({ term: 1, vote: 'n1', commit: 0 });
    expect(shape(contents)).toEqual(['1@1', '2@1', '3@1']);
    expect(contents.any).toBe(true);
  });

  test('an entry at an index the log reaches replaces it and everything after it, across segments', async () => {
    for (let i = 1; i <= 60; i += 10) await wal.append(null, range(i, i + 9, 1));
    expect(wal.segmentCount).toBeGreaterThan(1);
    await wal.append({ term: 2, vote: 'n2', commit: 0 }, range(25, 27, 2));
    expect([wal.lastIndex, wal.termAt(24), wal.termAt(25), wal.termAt(28)]).toEqual([27, 1, 2, undefined]);
    const contents = await reopen();
    expect(shape(contents)).toEqual([...range(1, 24, 1), ...range(25, 27, 2)].map((e) => `${e.index}@${e.term}`));
    expect(contents.hardState).toEqual({ term: 2, vote: 'n2', commit: 0 });
  });

  test('large entries are written from where they lie and come back whole', async () => {
    await wal.append(null, [entry(1, 1, 10_000), entry(2, 1, 5), entry(3, 1, 70_000)]);
    expect((await reopen()).entries.map((e) => e.data.byteLength)).toEqual([10_000, 5, 70_000]);
    expect(shape(await reopen())).toEqual(['1@1', '2@1', '3@1']);
  });

  test('a reset keeps the entries after its index, or drops them all', async () => {
    await wal.append(null, range(1, 10, 1));
    await wal.reset(4, 1, true);
    expect(shape(await reopen())).toEqual(['5@1', '6@1', '7@1', '8@1', '9@1', '10@1']);
    await wal.reset(8, 3, false);
    expect([wal.lastIndex, wal.termAt(8), wal.termAt(9)]).toEqual([8, undefined, undefined]);
    await wal.append(null, range(9, 9, 3));
    const contents = await reopen();
    expect(shape(contents)).toEqual(['9@3']);
    expect(contents.after).toBe(8);
  });
});

describe('where a write is made', () => {
  /** How many file-system requests `write` handed to libuv's thread pool. */
  async function threadPoolRequests(write: () => Promise<void>): Promise<number> {
    let requests = 0;
    const hook = createHook({
      init(_id, type) {
        if (type.startsWith('FSREQ')) requests++;
      },
    });
    hook.enable();
    try {
      await write();
    } finally {
      hook.disable();
    }
    return requests;
  }

  test('one small entry, or a hard state alone, is written on the calling thread; anything more goes to the thread pool', async () => {
    await wal.append(null, range(1, 1, 1)); // opens the segment
    expect(await threadPoolRequests(() => wal.append(null, [entry(2, 1)]))).toBe(0);
    expect(await threadPoolRequests(() => wal.append({ term: 2, vote: 'n1', commit: 0 }, []))).toBe(0);
    expect(await threadPoolRequests(() => wal.append(null, range(3, 4, 2)))).toBeGreaterThan(0);
    const large = { ...entry(5, 2, INLINE_WRITE_MAX_BYTES), index: 5 };
    expect(await threadPoolRequests(() => wal.append(null, [large]))).toBeGreaterThan(0);
    const contents = await reopen();
    expect(contents.entries.map((e) => `${e.index}@${e.term}`)).toEqual(['1@1', '2@1', '3@2', '4@2', '5@2']);
    expect(contents.hardState).toEqual({ term: 2, vote: 'n1', commit: 0 });
  });
});

describe('segments', () => {
  test('old segments go once a snapshot covers them; the hard state survives', async () => {
    const hardState: HardState = { term: 5, vote: 'n3', commit: 0 };
    await wal.append(hardState, range(1, 10, 5));
    for (let i = 11; i <= 200; i += 10) await wal.append(null, range(i, i + 9, 5));
    const before = (await segmentFiles()).length;
    expect(before).toBeGreaterThan(4);
    await wal.releaseThrough(150);
    const after = await segmentFiles();
    expect(after.length).toBeLessThan(before - 2);
    const contents = await reopen();
    expect(contents.hardState).toEqual(hardState);
    // What is left starts at or before 151 and runs to the end.
    expect(contents.entries[0].index).toBeLessThanOrEqual(151);
    expect(contents.entries.at(-1)?.index).toBe(200);
    // Every segment file is the same size: written with zeros before use.
    for (const name of await segmentFiles()) expect((await readFile(join(dir, name))).length).toBe(SEGMENT);
  });

  test('writing carries on in the newest segment after a restart', async () => {
    await wal.append(null, range(1, 3, 1));
    await reopen();
    const files = await segmentFiles();
    await wal.append(null, range(4, 5, 1));
    await wal.close(); // lets a segment being made ready finish
    await reopen();
    expect(await segmentFiles()).toEqual(files);
    expect(shape(await reopen())).toEqual(['1@1', '2@1', '3@1', '4@1', '5@1']);
  });

  test('a segment left half-made by a crash is removed', async () => {
    await wal.append(null, range(1, 3, 1));
    await wal.close();
    await writeFile(join(dir, '00000000000000ff.wal.tmp'), Buffer.alloc(100));
    expect(shape(await reopen())).toEqual(['1@1', '2@1', '3@1']);
    expect((await readdir(dir)).some((n) => n.endsWith('.tmp'))).toBe(false);
  });
});

describe('damage and torn writes', () => {
  /** The segments holding data, oldest first, with their bytes. */
  async function dataSegments(): Promise<{ path: string; bytes: Buffer }[]> {
    const found = [];
    for (const name of await segmentFiles()) {
      const bytes = await readFile(join(dir, name));
      if (bytes.readUInt32BE(0) > 0) found.push({ path: join(dir, name), bytes });
    }
    return found;
  }

  function frameEnds(bytes: Buffer): number[] {
    const ends = [];
    for (let at = 0; at + 8 <= bytes.length && bytes.readUInt32BE(at) > 0; at += 8 + bytes.readUInt32BE(at)) {
      ends.push(at + 8 + bytes.readUInt32BE(at));
    }
    return ends;
  }

  test('a bad frame in an older segment is corruption', async () => {
    for (let i = 1; i <= 100; i += 10) await wal.append(null, range(i, i + 9, 1));
    await wal.close();
    const [oldest] = await dataSegments();
    oldest.bytes[frameEnds(oldest.bytes)[1] - 1] ^= 0x10;
    await writeFile(oldest.path, oldest.bytes);
    await expect(Wal.open(dir, { segmentBytes: SEGMENT })).rejects.toThrow(CorruptDataError);
    wal = (await Wal.open(join(dir, 'elsewhere'))).wal; // for afterEach
  });

  test('a bad frame with a whole frame after it, in the newest segment, is corruption, not a torn write', async () => {
    await wal.append(null, range(1, 2, 1));
    await wal.append(null, range(3, 4, 1));
    await wal.close();
    const newest = (await dataSegments()).at(-1)!;
    const ends = frameEnds(newest.bytes);
    newest.bytes[ends.at(-2)! - 1] ^= 0x10; // the write before the last
    await writeFile(newest.path, newest.bytes);
    await expect(Wal.open(dir, { segmentBytes: SEGMENT })).rejects.toThrow(/fails its checksum/);
    wal = (await Wal.open(join(dir, 'elsewhere'))).wal;
  });

  test('the torn last write is left out, then zeroed; a blank next segment does not hide it', async () => {
    await wal.append(null, range(1, 2, 1));
    await wal.append(null, range(3, 4, 1));
    await wal.close();
    expect((await segmentFiles()).length).toBe(2); // the newest holds data, the next is ready
    const newest = (await dataSegments()).at(-1)!;
    const ends = frameEnds(newest.bytes);
    newest.bytes.fill(0, ends.at(-1)! - 10, ends.at(-1)! - 4);
    await writeFile(newest.path, newest.bytes);
    const opened = await Wal.open(dir, { segmentBytes: SEGMENT });
    wal = opened.wal;
    expect(shape(opened.contents)).toEqual(['1@1', '2@1']);
    expect(opened.contents.torn?.offset).toBe(ends.at(-2));
    await expect(wal.append(null, range(3, 3, 2))).rejects.toThrow(/dropTornTail/);
    await wal.dropTornTail();
    expect((await readFile(newest.path)).subarray(ends.at(-2)!).every((b) => b === 0)).toBe(true);
    await wal.append(null, range(3, 3, 2));
    expect(shape(await reopen())).toEqual(['1@1', '2@1', '3@2']);
  });
});
