import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { encodeCommand, type Command } from '../../src/kv/command.js';
import { CorruptDataError, InvalidArgumentError } from '../../src/kv/errors.js';
import type { KvRecord } from '../../src/kv/kv-record.js';
import type { Ready } from '../../src/raft/ready.js';
import type { ConfigState, Entry, SnapshotMeta } from '../../src/raft/types.js';
import {
  decodeSnapshotMeta,
  encodeGeneration,
  encodeInstalling,
  encodeSnapshotMeta,
  INSTALLING_KEY,
  RETIRED_KEY,
  stateSublevelName,
  type StateSublevel,
} from '../../src/storage/level-format.js';
import { LevelStorage, MAX_HISTORY_LIMIT, MAX_LIST_LIMIT, type LevelStorageOptions } from '../../src/storage/level-storage.js';
import {
  IMAGE_BLOCK_TARGET_BYTES,
  IMAGE_MAGIC,
  ImageReader,
  ImageWriter,
  readImageHeader,
  verifyImage,
  type ImageHeader,
  type ImageRecordKind,
} from '../../src/storage/snapshot-image.js';
import { AssertionError } from '../../src/util/assert.js';

// A full GC on demand, for the memory bound below (the flag applies to contexts made after it).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const META: SnapshotMeta = {
  index: 120,
  term: 7,
  config: { voters: ['n1', 'n2', 'n3'], learners: ['n4'], peerUrls: { n1: 'http://127.0.0.1:1', n4: 'http://127.0.0.1:4' } },
};
const HEADER: ImageHeader = { meta: META, revision: 99, compactRevision: 40 };

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-image-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Rec {
  readonly kind: ImageRecordKind;
  readonly key: Buffer;
  readonly value: Buffer;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** kv records over several blocks (one of them a record larger than a block), then the other kinds. */
function sampleRecords(): Rec[] {
  const records: Rec[] = [];
  for (let i = 0; i < 3000; i++) {
    records.push({ kind: 'kv', key: Buffer.from(`key/${String(i).padStart(5, '0')}`), value: Buffer.alloc(700, i % 251) });
  }
  records.push({ kind: 'kv', key: Buffer.from('key/big'), value: Buffer.alloc(IMAGE_BLOCK_TARGET_BYTES + 5, 7) });
  records.push({ kind: 'kv', key: Buffer.from('key/empty-value'), value: Buffer.alloc(0) });
  records.push({ kind: 'lease', key: u64(3), value: Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 9]) });
  records.push({ kind: 'leaseKey', key: Buffer.concat([u64(3), Buffer.from('key/00001')]), value: Buffer.alloc(0) });
  for (let r = 41; r <= 99; r++) records.push({ kind: 'history', key: u64(r), value: Buffer.from(`events of ${r}`) });
  return records;
}

async function writeSample(file: string, records: readonly Rec[] = sampleRecords()) {
  const writer = await ImageWriter.create(file, HEADER);
  for (const r of records) await writer.add(r.kind, r.key, r.value);
  return writer.finish();
}

/** The offset and type of every block, walking the frames (u8 type, u32 length, u32 crc). */
async function blocks(file: string): Promise<{ offset: number; type: number; length: number }[]> {
  const bytes = await readFile(file);
  const found: { offset: number; type: number; length: number }[] = [];
  for (let at = IMAGE_MAGIC.length; at < bytes.length; ) {
    const length = bytes.readUInt32BE(at + 1);
    found.push({ offset: at, type: bytes[at], length });
    at += 9 + length;
  }
  return found;
}

async function flipByte(file: string, at: number): Promise<void> {
  const bytes = await readFile(file);
  bytes[at] ^= 0x40;
  await writeFile(file, bytes);
}

describe('the image format', () => {
  test('round trip: header, every record in order, counts, size and SHA-256', async () => {
    const file = join(dir, 'a.img');
    const records = sampleRecords();
    const written = await writeSample(file, records);
    expect(written).toMatchObject({ ...HEADER, records: records.length, bytes: (await stat(file)).size });
    expect(written.counts).toEqual({ kv: 3002, lease: 1, leaseKey: 1, history: 59 });
    expect(written.sha256).toMatch(/^[0-9a-f]{64}$/);
    await expect(stat(`${file}.tmp`)).rejects.toThrow(/ENOENT/);

    expect(await readImageHeader(file)).toEqual(HEADER);
    expect(await verifyImage(file)).toEqual(written);

    const reader = await ImageReader.open(file);
    const read: Rec[] = [];
    let blockCount = 0;
    for (let batch = await reader.next(); batch !== null; batch = await reader.next()) {
      blockCount++;
      read.push(...batch);
    }
    await reader.close();
    expect(reader.info).toEqual(written);
    expect(read.length).toBe(records.length);
    for (let i = 0; i < records.length; i++) {
      expect(read[i].kind).toBe(records[i].kind);
      expect(read[i].key.equals(records[i].key)).toBe(true);
      expect(read[i].value.equals(records[i].value)).toBe(true);
    }
    // ~2.1 MB of 700-byte values in 1 MiB blocks, the big record alone, then the rest.
    expect(blockCount).toBeGreaterThanOrEqual(4);
    const types = (await blocks(file)).map((b) => b.type);
    expect(types[0]).toBe(1);
    expect(types.at(-1)).toBe(3);
    expect(types.slice(1, -1).every((t) => t === 2)).toBe(true);
  });

  test('an empty store makes a valid image with no record blocks', async () => {
    const file = join(dir, 'empty.img');
    const info = await writeSample(file, []);
    expect(info.records).toBe(0);
    expect((await blocks(file)).map((b) => b.type)).toEqual([1, 3]);
    expect(await verifyImage(file)).toEqual(info);
  });

  test('a flipped byte in any block (frame or payload) is caught, naming the file and the block offset', async () => {
    const file = join(dir, 'a.img');
    await writeSample(file);
    const pristine = await readFile(file);
    const all = await blocks(file);
    expect(all.length).toBeGreaterThanOrEqual(5);
    for (const block of all) {
      for (const at of [block.offset, block.offset + 2, block.offset + 6, block.offset + 9 + Math.floor(block.length / 2), block.offset + 9 + block.length - 1]) {
        await writeFile(file, pristine);
        await flipByte(file, at);
        const error = await verifyImage(file).then(
          () => null,
          (err: unknown) => err,
        );
        expect(error, `flip at ${at} in the block at ${block.offset}`).toBeInstanceOf(CorruptDataError);
        expect((error as Error).message).toContain(file);
        expect((error as Error).message).toContain(`at byte ${block.offset}:`);
      }
    }
  });

  test('a flipped byte in the magic says it is not an image', async () => {
    const file = join(dir, 'a.img');
    await writeSample(file);
    await flipByte(file, 3);
    await expect(readImageHeader(file)).rejects.toThrow(/at byte 0: .*not a flotilla snapshot image/);
  });

  test('a truncated file, at a block boundary or inside a block, is CorruptDataError', async () => {
    const file = join(dir, 'a.img');
    const info = await writeSample(file);
    const pristine = await readFile(file);
    const all = await blocks(file);
    const cuts = [
      0,
      5,
      IMAGE_MAGIC.length + 3,
      all[2].offset, // whole blocks, then nothing: no trailer
      all[2].offset + 100,
      all.at(-1)!.offset, // everything but the trailer
      info.bytes - 1,
    ];
    for (const cut of cuts) {
      await writeFile(file, pristine);
      await truncate(file, cut);
      const error = await verifyImage(file).then(
        () => null,
        (err: unknown) => err,
      );
      expect(error, `cut at ${cut}`).toBeInstanceOf(CorruptDataError);
      expect((error as Error).message).toMatch(/truncated/);
      expect((error as Error).message).toContain(file);
    }
  });

  test('bytes after the trailer, or a block repeated, are caught', async () => {
    const file = join(dir, 'a.img');
    await writeSample(file);
    const pristine = await readFile(file);
    const all = await blocks(file);
    await writeFile(file, Buffer.concat([pristine, Buffer.from('x')]));
    await expect(verifyImage(file)).rejects.toThrow(/1 bytes after the trailer/);

    // A records block sent twice: each copy passes its CRC, the key order does not.
    const second = all[2];
    const copy = pristine.subarray(second.offset, second.offset + 9 + second.length);
    await writeFile(file, Buffer.concat([pristine.subarray(0, all[3].offset), copy, pristine.subarray(all[3].offset)]));
    await expect(verifyImage(file)).rejects.toThrow(new RegExp(`at byte ${all[3].offset}: kv keys out of order`));
  });

  test('the snapshot meta keeps the peer URLs (format 2) and still reads format 1', () => {
    const fail = (reason: string) => new CorruptDataError(reason);
    expect(decodeSnapshotMeta(encodeSnapshotMeta(META), fail)).toEqual(META);
    const format1 = Buffer.concat([Buffer.from([1]), u64(9), u64(3), Buffer.from([0, 1, 2]), Buffer.from('n1'), Buffer.from([0, 0])]);
    expect(decodeSnapshotMeta(format1, fail)).toEqual({ index: 9, term: 3, config: { voters: ['n1'], learners: [] } });
    expect(() => decodeSnapshotMeta(Buffer.concat([Buffer.from([3]), format1.subarray(1)]), fail)).toThrow(/format version 3/);
  });

  test('the writer refuses records out of order; a failed write leaves no file behind', async () => {
    const file = join(dir, 'a.img');
    const writer = await ImageWriter.create(file, HEADER);
    await writer.add('kv', Buffer.from('b'), Buffer.from('1'));
    await expect(writer.add('kv', Buffer.from('a'), Buffer.from('1'))).rejects.toThrow(AssertionError);
    await writer.add('lease', u64(1), Buffer.from('x'));
    await expect(writer.add('kv', Buffer.from('c'), Buffer.from('1'))).rejects.toThrow(AssertionError);
    await writer.abort();
    await expect(stat(`${file}.tmp`)).rejects.toThrow(/ENOENT/);
    await expect(stat(file)).rejects.toThrow(/ENOENT/);
  });
});

// ---------------------------------------------------------------------------------------------
// LevelStorage: writeImage, installImage, restoreImage, compactLog
// ---------------------------------------------------------------------------------------------

const CONFIG: ConfigState = { voters: ['n1'], learners: [], peerUrls: { n1: 'http://127.0.0.1:12380' } };
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

const put = (key: string, value: string | Uint8Array, lease?: number): Command => ({
  op: 'put',
  requestId: `put ${key}`,
  key,
  value: typeof value === 'string' ? bytes(value) : value,
  ...(lease === undefined ? {} : { lease }),
});
const del = (key: string): Command => ({ op: 'delete', requestId: `del ${key}`, key });
const grant = (id: number, ttlSeconds = 10): Command => ({ op: 'leaseGrant', requestId: `grant ${id}`, id, ttlSeconds });
const revoke = (id: number): Command => ({ op: 'leaseRevoke', requestId: `revoke ${id}`, id, reason: 'revoke' });

function emptyReady(parts: Partial<Ready>): Ready {
  return { softState: null, hardState: null, entries: [], snapshot: null, messages: [], committed: [], readStates: [], mustSync: true, ...parts };
}

function entriesOf(first: number, term: number, commands: readonly Command[]): Entry[] {
  return commands.map((c, i) => ({ index: first + i, term, type: 'normal', data: encodeCommand(c) }));
}

/** Appends and commits commands in one Ready, as a single-member leader in `term` would. */
async function commit(storage: LevelStorage, commands: readonly Command[], term = 1): Promise<void> {
  const entries = entriesOf(storage.appliedIndex + 1, term, commands);
  const last = entries.at(-1)?.index ?? storage.appliedIndex;
  await storage.persist(emptyReady({ hardState: { term, vote: 'n1', commit: last }, entries, committed: entries }));
}

const metaAt = (term: number, config: ConfigState = CONFIG) => (index: number): SnapshotMeta => ({ index, term, config });

async function openStore(name: string, options: LevelStorageOptions = {}): Promise<LevelStorage> {
  return LevelStorage.open(join(dir, name), options);
}

async function reopenStore(storage: LevelStorage, name: string, options: LevelStorageOptions = {}) {
  await storage.close();
  const next = await openStore(name, options);
  const loaded = await next.load();
  return { storage: next, loaded };
}

/** Every key, in order, with its metadata and value (hex), paging through list(). */
async function everyKey(storage: LevelStorage): Promise<string[]> {
  const out: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await storage.list({ prefix: '', limit: MAX_LIST_LIMIT, ...(after === undefined ? {} : { after }) });
    for (const r of page.items) {
      out.push(`${r.key} c${r.createRevision} m${r.modRevision} v${r.version} l${r.lease} ${Buffer.from(r.value).toString('hex')}`);
    }
    if (!page.more) return out;
    after = page.items.at(-1)?.key;
  }
}

/** Every event of the watch history, paging through readHistory(). */
async function everyEvent(storage: LevelStorage): Promise<string[]> {
  const out: string[] = [];
  let from = storage.compactRevision + 1;
  for (;;) {
    const page = await storage.readHistory({ fromRevision: from, key: '', prefix: true, limit: MAX_HISTORY_LIMIT });
    for (const e of page.events) {
      out.push(`${e.modRevision} ${e.type} ${e.key} c${e.createRevision} v${e.version} l${e.lease} ${Buffer.from(e.value).toString('hex')}`);
    }
    if (!page.more) return out;
    from = (page.events.at(-1)?.modRevision ?? from) + 1;
  }
}

/** A record with its value as a digest (deep equality over a 3 MiB Uint8Array is slow). */
function brief(record: KvRecord | null): unknown {
  if (record === null) return null;
  return { ...record, value: createHash('sha256').update(record.value).digest('hex') };
}

async function everyLease(storage: LevelStorage): Promise<unknown[]> {
  const leases = await storage.leases();
  return Promise.all(leases.map((l) => storage.lease(l.id)));
}

/** Opens the LevelDB underneath a (closed) storage, bypassing LevelStorage. */
async function withRawDb(name: string, fn: (db: Level<Buffer, Buffer>) => Promise<void>): Promise<void> {
  const db = new Level<Buffer, Buffer>(join(dir, name, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  try {
    await fn(db);
  } finally {
    await db.close();
  }
}

const rawMeta = (db: Level<Buffer, Buffer>) => db.sublevel<string, Buffer>('meta', { keyEncoding: 'utf8', valueEncoding: 'buffer' });
const rawSublevel = (db: Level<Buffer, Buffer>, name: string) => db.sublevel<Buffer, Buffer>(name, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
const IMAGE_PARTS: Record<ImageRecordKind, StateSublevel> = { kv: 'kv', lease: 'leases', leaseKey: 'lease-keys', history: 'history' };

async function countRaw(name: string, sublevel: string): Promise<number> {
  let n = 0;
  await withRawDb(name, async (db) => {
    n = (await rawSublevel(db, sublevel).keys().all()).length;
  });
  return n;
}

/** A store with keys, values that are not UTF-8, a large value, leases, a txn, deletes and a revoke. */
async function fillSource(storage: LevelStorage, keys: number): Promise<void> {
  await storage.bootstrap(CONFIG);
  await commit(storage, [grant(1, 30), grant(2, 60), grant(2 ** 53 - 1, 5)]);
  for (let start = 0; start < keys; start += 1000) {
    const batch: Command[] = [];
    for (let i = start; i < Math.min(keys, start + 1000); i++) {
      const key = `k/${String(i).padStart(6, '0')}`;
      const lease = i % 50 === 0 ? 1 : i % 77 === 0 ? 2 : undefined;
      batch.push(put(key, i % 10 === 0 ? Uint8Array.of(0xff, 0xfe, i & 0xff) : `value ${i}`, lease));
    }
    await commit(storage, batch);
  }
  await commit(storage, [put('big', new Uint8Array(3 * 1024 * 1024).fill(9)), put('k/000001', 'rewritten'), del('k/000002')]);
  await commit(storage, [
    { op: 'txn', requestId: 't', compare: [], success: [{ op: 'put', key: 'txn/a', value: bytes('1'), lease: 2 ** 53 - 1 }, { op: 'delete', key: 'k/000003' }], failure: [] },
  ]);
  await commit(storage, [revoke(2), put('ü/ключ/🔑', 'unicode')], 2);
}

describe('images of a LevelStorage', () => {
  test('a round trip of 20,000 keys, leases and history into a fresh member', { timeout: 120_000 }, async () => {
    const options = { historyRetention: 5000 };
    const source = await openStore('src', options);
    await fillSource(source, 20_000);
    const file = join(dir, 'src.img');
    const info = await source.writeImage(metaAt(2), file);
    expect(info.meta).toEqual({ index: source.appliedIndex, term: 2, config: CONFIG });
    expect(info.revision).toBe(source.revision);
    expect(info.compactRevision).toBe(source.compactRevision);
    expect(info.compactRevision).toBeGreaterThan(0);
    expect(info.counts.kv).toBe((await everyKey(source)).length);
    expect(info.counts.history).toBe(info.revision - info.compactRevision);
    expect(await verifyImage(file)).toEqual(info);

    let target = await openStore('dst', options);
    await target.bootstrap({ voters: ['n1', 'n2'], learners: [] });
    expect(await target.installImage(file)).toEqual(info);
    const expectSame = async () => {
      expect(target.appliedIndex).toBe(source.appliedIndex);
      expect(target.revision).toBe(source.revision);
      expect(target.compactRevision).toBe(source.compactRevision);
      expect(target.leaseCount).toBe(source.leaseCount);
      expect(await everyKey(target)).toEqual(await everyKey(source));
      expect(await everyEvent(target)).toEqual(await everyEvent(source));
      expect(await everyLease(target)).toEqual(await everyLease(source));
      for (const key of ['k/000000', 'k/000001', 'k/000002', 'k/019999', 'big', 'txn/a', 'ü/ключ/🔑', 'absent']) {
        expect(brief(await target.get(key)), key).toEqual(brief(await source.get(key)));
      }
    };
    await expectSame();

    // After a restart it resumes from the image's boundary, with no log.
    const reopened = await reopenStore(target, 'dst', options);
    target = reopened.storage;
    expect(reopened.loaded).toMatchObject({ snapshot: info.meta, entries: [], applied: info.meta.index, revision: info.revision });
    expect(reopened.loaded?.hardState.commit).toBe(info.meta.index);
    await expectSame();

    // The core reports the install in its next Ready: the boundary is already stored. Then writes go on.
    const next = entriesOf(info.meta.index + 1, 3, [put('after', 'install'), revoke(1)]);
    await target.persist(emptyReady({ snapshot: info.meta, hardState: { term: 3, vote: null, commit: next[1].index }, entries: next, committed: next }));
    await commit(source, [put('after', 'install'), revoke(1)], 3);
    await expectSame();
    await source.close();
    await target.close();
  });

  test('an image is one consistent instant while batches keep landing', { timeout: 60_000 }, async () => {
    const source = await openStore('src');
    await source.bootstrap(CONFIG);
    const filler = new Uint8Array(1024).fill(1);
    for (let start = 0; start < 20_000; start += 2000) {
      await commit(source, Array.from({ length: 2000 }, (_, i) => put(`f/${start + i}`, filler)));
    }
    const round = (n: number) => Array.from({ length: 200 }, (_, i) => put(`c/${String(i).padStart(3, '0')}`, `round ${n}`));
    await commit(source, round(0));
    const before = { index: source.appliedIndex, revision: source.revision };
    const file = join(dir, 'busy.img');
    // The LevelDB snapshot is taken once every batch applied before the call has landed (round 0
    // may still be landing: persist does not wait for it); the rounds below land while it streams.
    const writing = source.writeImage(metaAt(1), file);
    let done = false;
    void writing.finally(() => (done = true));
    let rounds = 0;
    while (!done && rounds < 1000) await commit(source, round(++rounds));
    const info = await writing;
    expect(rounds).toBeGreaterThan(1);
    expect(source.revision).toBe(before.revision + 200 * rounds);

    const target = await openStore('dst');
    await target.restoreImage(file, CONFIG);
    const items = (await target.list({ prefix: 'c/', limit: 1000 })).items;
    expect(items).toHaveLength(200);
    // One instant: every key from the same round n, and the counters of exactly that round.
    const values = new Set(items.map((r) => Buffer.from(r.value).toString()));
    expect(values.size).toBe(1);
    const n = Number([...values][0].replace('round ', ''));
    expect(n).toBeLessThan(rounds);
    expect(info).toMatchObject({ meta: { index: before.index + 200 * n }, revision: before.revision + 200 * n });
    expect(target.revision).toBe(before.revision + 200 * n);
    await source.close();
    await target.close();
  });

  test('installImage keeps the log after a matching boundary, and drops it otherwise', async () => {
    const source = await openStore('src');
    await source.bootstrap(CONFIG);
    await commit(source, [put('a', '1'), put('b', '2'), put('c', '3'), put('d', '4'), put('e', '5')]);
    const file = join(dir, 'at5.img');
    await source.writeImage(metaAt(1), file);
    await source.close();

    const cases = [
      { name: 'match', terms: [1, 1, 1, 1, 1, 1, 1, 1], kept: [6, 7, 8] },
      { name: 'other-term', terms: [1, 1, 1, 2, 2, 2, 2, 2], kept: [] },
      { name: 'short', terms: [1, 1, 1], kept: [] },
    ];
    for (const c of cases) {
      let target = await openStore(c.name);
      await target.bootstrap(CONFIG);
      const entries = c.terms.map((term, i) => entriesOf(i + 1, term, [put(`x${i}`, 'x')])[0]);
      await target.persist(emptyReady({ hardState: { term: c.terms.at(-1)!, vote: null, commit: 0 }, entries })); // none applied
      const info = await target.installImage(file);
      expect(info.meta.index).toBe(5);
      expect(await target.get('e')).toMatchObject({ modRevision: 5 });
      const reopened = await reopenStore(target, c.name);
      target = reopened.storage;
      expect(reopened.loaded?.snapshot).toEqual(info.meta);
      expect(reopened.loaded?.entries.map((e) => e.index), c.name).toEqual(c.kept);
      expect(reopened.loaded?.applied).toBe(5);
      expect(reopened.loaded?.hardState).toEqual({ term: c.terms.at(-1), vote: null, commit: 5 });
      // An image at or before the applied index is refused.
      await expect(target.installImage(file)).rejects.toBeInstanceOf(InvalidArgumentError);
      await target.close();
    }
  });

  test('a corrupt image throws and changes nothing; an image cannot be installed beside persist', async () => {
    const source = await openStore('src');
    await fillSource(source, 3000);
    const file = join(dir, 'src.img');
    await source.writeImage(metaAt(2), file);
    await source.close();
    const pristine = await readFile(file);
    const all = await blocks(file);

    const target = await openStore('dst');
    await target.bootstrap(CONFIG);
    await commit(target, [put('mine', 'kept')]);
    for (const at of [all[2].offset + 30, all.at(-1)!.offset + 20]) {
      await writeFile(file, pristine);
      await flipByte(file, at);
      await expect(target.installImage(file)).rejects.toBeInstanceOf(CorruptDataError);
      expect(await everyKey(target)).toEqual([expect.stringMatching(/^mine c1 m1 v1 l0 /)]);
      expect(target.appliedIndex).toBe(1);
    }
    await target.close();
    expect(await countRaw('dst', stateSublevelName('kv', 1))).toBe(0);
    await withRawDb('dst', async (db) => {
      expect(await rawMeta(db).keys().all()).toEqual(['applied', 'snapshot']); // the hard state is in wal/
    });

    const again = await openStore('dst');
    await again.load();
    await writeFile(file, pristine);
    const persisting = commit(again, [put('during', 'x')]);
    await expect(again.installImage(file)).rejects.toThrow(AssertionError);
    await persisting;
    await again.installImage(file);
    expect(await again.get('mine')).toBeNull();
    await again.close();
  });

  test('a crash while filling the new generation leaves the old state; load() drops the half image', async () => {
    const source = await openStore('src');
    await fillSource(source, 3000);
    const file = join(dir, 'src.img');
    await source.writeImage(metaAt(2), file);
    await source.close();

    let target = await openStore('dst');
    await target.bootstrap(CONFIG);
    await commit(target, [put('mine', 'kept'), grant(9)]);
    const unapplied = entriesOf(3, 1, [put('pending', 'x')]);
    await target.persist(emptyReady({ entries: unapplied }));
    const before = { keys: await everyKey(target), events: await everyEvent(target), leases: await everyLease(target) };
    await target.close();

    // What installImage does up to the crash: the marker, then half the records in generation 1.
    await withRawDb('dst', async (db) => {
      await rawMeta(db).put(INSTALLING_KEY, encodeInstalling({ generation: 1, restore: false }));
      const reader = await ImageReader.open(file);
      for (let i = 0, records = await reader.next(); records !== null && i < 2; i++, records = await reader.next()) {
        await db.batch(records.map((r) => ({ type: 'put' as const, sublevel: rawSublevel(db, stateSublevelName(IMAGE_PARTS[r.kind], 1)), key: r.key, value: r.value })));
      }
      await reader.close();
    });
    expect(await countRaw('dst', 'kv-g1')).toBeGreaterThan(0);

    target = await openStore('dst');
    const loaded = await target.load();
    expect(loaded).toMatchObject({ applied: 2, revision: 1, hardState: { term: 1, vote: 'n1', commit: 2 } });
    expect(loaded?.entries.map((e) => e.index)).toEqual([1, 2, 3]);
    expect({ keys: await everyKey(target), events: await everyEvent(target), leases: await everyLease(target) }).toEqual(before);
    await target.close();
    expect(await countRaw('dst', 'kv-g1')).toBe(0);
    await withRawDb('dst', async (db) => {
      expect(await rawMeta(db).get(INSTALLING_KEY)).toBeUndefined();
    });

    // The leader sends the image again, and this time it lands.
    target = await openStore('dst');
    await target.load();
    await target.installImage(file);
    expect(await target.get('mine')).toBeNull();
    expect(await everyKey(target)).toHaveLength((await verifyImage(file)).counts.kv);
    await target.close();
  });

  test('a crash after the switch: load() finishes clearing the old generation', async () => {
    const source = await openStore('src');
    await fillSource(source, 1000);
    const file = join(dir, 'src.img');
    const info = await source.writeImage(metaAt(2), file);
    const expected = await everyKey(source);
    await source.close();

    let target = await openStore('dst');
    await target.bootstrap(CONFIG);
    await commit(target, [put('old', 'x')]);
    await target.installImage(file);
    await target.close(); // waits for the old generation to be cleared
    expect(await countRaw('dst', 'kv')).toBe(0);
    expect(await countRaw('dst', 'kv-g1')).toBe(info.counts.kv);

    // As if the process died right after the switch: the old generation still full, the marker set.
    await withRawDb('dst', async (db) => {
      await rawSublevel(db, 'kv').put(Buffer.from('stale'), Buffer.from('x'));
      await rawSublevel(db, 'history').put(Buffer.alloc(8, 1), Buffer.from('x'));
      await rawMeta(db).put(RETIRED_KEY, encodeGeneration(0));
    });
    target = await openStore('dst');
    expect((await target.load())?.snapshot).toEqual(info.meta);
    expect(await everyKey(target)).toEqual(expected);
    await target.close();
    expect(await countRaw('dst', 'kv')).toBe(0);
    expect(await countRaw('dst', 'history')).toBe(0);

    // A second install moves to generation 2 and retires generation 1.
    target = await openStore('dst');
    await target.load();
    await commit(target, [put('more', 'x')], 3);
    const source2 = await openStore('src');
    await source2.load();
    await commit(source2, [put('more', 'y'), put('and more', 'z')], 3);
    await source2.writeImage(metaAt(3), file);
    const expected2 = await everyKey(source2);
    await source2.close();
    await target.installImage(file);
    expect(await everyKey(target)).toEqual(expected2);
    await target.close();
    expect(await countRaw('dst', 'kv-g1')).toBe(0);
    expect(await countRaw('dst', 'kv-g2')).toBe(expected2.length);
  });

  test('restoreImage makes an empty directory a new cluster at the image; an interrupted restore is reported', async () => {
    const source = await openStore('src');
    await fillSource(source, 2000);
    const file = join(dir, 'src.img');
    const info = await source.writeImage(metaAt(2), file);
    const config: ConfigState = { voters: ['a', 'b', 'c'], learners: [], peerUrls: { a: 'http://a:1', b: 'http://b:1', c: 'http://c:1' } };

    let restored = await openStore('restored');
    expect(await restored.restoreImage(file, config)).toEqual(info);
    const reopened = await reopenStore(restored, 'restored');
    restored = reopened.storage;
    expect(reopened.loaded).toEqual({
      hardState: { term: 2, vote: null, commit: info.meta.index },
      snapshot: { index: info.meta.index, term: 2, config },
      entries: [],
      applied: info.meta.index,
      revision: info.revision,
    });
    expect(await everyKey(restored)).toEqual(await everyKey(source));
    expect(await everyEvent(restored)).toEqual(await everyEvent(source));
    await expect(restored.restoreImage(file, config)).rejects.toThrow(AssertionError); // state is loaded
    await restored.close();
    await source.close();

    const used = await openStore('restored');
    await expect(used.restoreImage(file, config)).rejects.toBeInstanceOf(InvalidArgumentError);
    await used.close();

    await withRawDb('half', async (db) => {
      await rawMeta(db).put(INSTALLING_KEY, encodeInstalling({ generation: 1, restore: true }));
      await rawSublevel(db, 'kv-g1').put(Buffer.from('a'), Buffer.from('x'));
    });
    const half = await openStore('half');
    await expect(half.load()).rejects.toThrow(/snapshot restore.*was interrupted/);
    await half.close();
  });

  test('compactLog folds applied entries into the boundary; load() returns it and the later entries', async () => {
    let storage = await openStore('m');
    await storage.bootstrap(CONFIG);
    await commit(storage, [put('a', '1'), put('b', '2'), put('c', '3')], 1);
    await commit(storage, [put('d', '4'), put('e', '5')], 2);
    const pending = entriesOf(6, 2, [put('f', '6'), put('g', '7')]);
    await storage.persist(emptyReady({ entries: pending }));

    await expect(storage.compactLog({ index: 6, term: 2, config: CONFIG })).rejects.toThrow(/past the applied index 5/);
    await expect(storage.compactLog({ index: 4, term: 1, config: CONFIG })).rejects.toThrow(/not of term 1/);
    await storage.compactLog({ index: 4, term: 2, config: CONFIG });
    await storage.compactLog({ index: 3, term: 1, config: CONFIG }); // behind the boundary: nothing to do
    let reopened = await reopenStore(storage, 'm');
    storage = reopened.storage;
    expect(reopened.loaded?.snapshot).toEqual({ index: 4, term: 2, config: CONFIG });
    expect(reopened.loaded?.entries.map((e) => `${e.index}@${e.term}`)).toEqual(['5@2', '6@2', '7@2']);
    expect(reopened.loaded?.applied).toBe(5);
    expect(await storage.get('a')).toMatchObject({ modRevision: 1 });

    await storage.compactLog({ index: 5, term: 2, config: CONFIG });
    reopened = await reopenStore(storage, 'm');
    storage = reopened.storage;
    expect(reopened.loaded?.snapshot.index).toBe(5);
    expect(reopened.loaded?.entries.map((e) => e.index)).toEqual([6, 7]);
    await storage.close();
    // The log lives in wal/ now; LevelDB's old log sublevel stays empty.
    await withRawDb('m', async (db) => {
      expect(await rawSublevel(db, 'log').keys().all()).toEqual([]);
    });
  });

  test('memory stays bounded while writing and installing an image of 200,000 keys', { timeout: 300_000 }, async () => {
    const source = await openStore('src');
    await source.bootstrap(CONFIG);
    const value = new Uint8Array(400).fill(7); // 200,000 x 400 bytes: ~80 MB of values
    for (let start = 0; start < 200_000; start += 2000) {
      await commit(source, Array.from({ length: 2000 }, (_, i) => put(`m/${String(start + i).padStart(7, '0')}`, value)));
    }
    const file = join(dir, 'big.img');
    /**
     * The most memory (JS heap + Buffers) the work holds at once above where it started. Sampled
     * after a forced full GC, so it measures what is alive, not garbage waiting to be collected
     * (which V8 lets pile up to tens of MiB at its own pace): holding the image's records would
     * show as ~95 MB here.
     */
    const liveGrowthDuring = async <T>(work: () => Promise<T>): Promise<{ result: T; growth: number }> => {
      const live = () => {
        gc();
        const m = process.memoryUsage();
        return m.heapUsed + m.arrayBuffers;
      };
      const base = live();
      let peak = base;
      const sampler = setInterval(() => (peak = Math.max(peak, live())), 25);
      try {
        const result = await work();
        return { result, growth: Math.max(peak, live()) - base };
      } finally {
        clearInterval(sampler);
      }
    };
    const written = await liveGrowthDuring(() => source.writeImage(metaAt(1), file));
    expect(written.result.counts.kv).toBe(200_000);
    expect(written.result.bytes).toBeGreaterThan(80_000_000);
    expect(written.growth, `heap + buffers grew by ${written.growth} bytes while writing`).toBeLessThan(64 * 1024 * 1024);

    const target = await openStore('dst');
    await target.bootstrap(CONFIG);
    const installed = await liveGrowthDuring(() => target.installImage(file));
    expect(installed.result.counts.kv).toBe(200_000);
    expect(installed.growth, `heap + buffers grew by ${installed.growth} bytes while installing`).toBeLessThan(64 * 1024 * 1024);
    expect(await target.get('m/0199999')).toMatchObject({ modRevision: 200_000 });
    await source.close();
    await target.close();
  });
});
