/**
 * A state-machine image: everything a member's key-value state holds at one applied index, as a
 * file that is written and read as a stream (never whole in memory: a member may hold millions of
 * keys and gigabytes of values) and checked block by block and as a whole. It is what a leader
 * ships to a lagging follower (InstallSnapshot), what `GET /v1/snapshot` serves and what
 * `flotilla snapshot save` keeps as a backup.
 *
 * Layout (IMAGE_FORMAT_VERSION 1), integers big-endian:
 *
 *   file    := magic "FLOTIMG\n" (8 bytes), header block, record block*, trailer block, end of file
 *   block   := u8 block type (1 header, 2 records, 3 trailer), u32 payload length,
 *              u32 crc32 over the type, the length field and the payload, then the payload
 *   header  := u8 format version, u64 index, u64 term (the Raft snapshot boundary),
 *              config := u16 voter count, (u8 length, UTF-8 name)*, u16 learner count, (same)*,
 *                        u16 peerUrl count, (u8 name length, name, u16 URL length, URL)*,
 *              u64 revision, u64 compactRevision (the watch history kept is (compactRevision, revision])
 *   records := record+, a record := u8 kind (1 kv, 2 lease, 3 leaseKey, 4 history),
 *              u32 key length, key, u32 value length, value
 *              (key and value exactly as LevelStorage stores them in that kind's sublevel)
 *   trailer := u64 record count, u64 count of each kind (kv, lease, leaseKey, history),
 *              32 bytes SHA-256 over every byte of the file before the trailer block
 *
 * A record block holds whole records and at most IMAGE_BLOCK_TARGET_BYTES of them, unless one
 * record is larger (a value may be 64 MiB): that record gets a block of its own, up to
 * MAX_IMAGE_BLOCK_BYTES. Records come in kind order, and within a kind in strictly increasing
 * byte order of their keys (LevelDB's order), which the reader checks: so a block repeated or
 * dropped in transit is caught even before the SHA-256 at the end.
 *
 * A reader checks each block's CRC as it reads it, the record counts and the SHA-256 at the
 * trailer, and that nothing follows the trailer. Every failure is a CorruptDataError naming the
 * file and the byte offset of the block at fault.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CorruptDataError } from '../kv/errors.js';
import type { SnapshotMeta } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { ByteReader, ByteWriter, isU64, U64_BYTES } from '../util/bytes.js';
import { crc32 } from './crc32.js';
import { encodeConfig, readConfig } from './level-format.js';
import { syncPath } from './sync-path.js';

export const IMAGE_MAGIC = Buffer.from('FLOTIMG\n', 'latin1');
export const IMAGE_FORMAT_VERSION = 1;
/** The most payload bytes of a record block (records are never split: a larger one gets its own block). */
export const IMAGE_BLOCK_TARGET_BYTES = 1024 * 1024;
/** The largest block a reader accepts: one record of the largest value or revision, with room. */
export const MAX_IMAGE_BLOCK_BYTES = 128 * 1024 * 1024;

/** The state-machine sublevels an image carries (the Raft log and meta are not part of it). */
export type ImageRecordKind = 'kv' | 'lease' | 'leaseKey' | 'history';
export const IMAGE_RECORD_KINDS: readonly ImageRecordKind[] = ['kv', 'lease', 'leaseKey', 'history'];

const KIND_CODE: Record<ImageRecordKind, number> = { kv: 1, lease: 2, leaseKey: 3, history: 4 };

const BLOCK_HEADER = 1;
const BLOCK_RECORDS = 2;
const BLOCK_TRAILER = 3;
const BLOCK_TYPE_NAMES: Record<number, string> = { [BLOCK_HEADER]: 'header', [BLOCK_RECORDS]: 'records', [BLOCK_TRAILER]: 'trailer' };

/** u8 block type, u32 length, u32 crc. */
const FRAME_BYTES = 1 + 4 + 4;
/** u8 kind, u32 key length, u32 value length. */
const RECORD_OVERHEAD_BYTES = 1 + 4 + 4;
const SHA256_BYTES = 32;
const TRAILER_PAYLOAD_BYTES = (1 + IMAGE_RECORD_KINDS.length) * U64_BYTES + SHA256_BYTES;
/** A header is small; this bounds what a reader allocates before the header's CRC is checked. */
const MAX_HEADER_BYTES = 16 * 1024 * 1024;

/** What an image is of: the Raft boundary and the store's counters at that index. */
export interface ImageHeader {
  /** The snapshot boundary: the image holds the effect of every entry up to meta.index. */
  readonly meta: SnapshotMeta;
  /** The store revision after meta.index. */
  readonly revision: number;
  /** The highest revision whose watch history the image does not hold (0 if it holds it all). */
  readonly compactRevision: number;
}

export type ImageCounts = Readonly<Record<ImageRecordKind, number>>;

/** A whole image, as verified: its header, its contents and its size and digest. */
export interface ImageInfo extends ImageHeader {
  /** How many records of each kind (kv = keys). */
  readonly counts: ImageCounts;
  /** Every record. */
  readonly records: number;
  /** The file's size in bytes. */
  readonly bytes: number;
  /** Hex SHA-256 of the file before the trailer block (as stored in the trailer). */
  readonly sha256: string;
}

/** One record; key and value are views into the block that was read. */
export interface ImageRecord {
  readonly kind: ImageRecordKind;
  readonly key: Buffer;
  readonly value: Buffer;
}

// ---- writing ----

/**
 * Writes an image to `file + '.tmp'`, then on finish() writes the trailer, fsyncs, renames it to
 * `file` and fsyncs the directory: `file` either does not exist or is a whole image. Memory: one
 * block buffer (IMAGE_BLOCK_TARGET_BYTES), or one record when a record is larger.
 */
export class ImageWriter {
  readonly #file: string;
  readonly #tmp: string;
  readonly #fh: FileHandle;
  readonly #header: ImageHeader;
  readonly #hash: Hash = createHash('sha256');
  readonly #counts: Record<ImageRecordKind, number> = { kv: 0, lease: 0, leaseKey: 0, history: 0 };
  /** The block being filled: frame space, then payload from FRAME_BYTES to #used. */
  readonly #block = Buffer.allocUnsafe(FRAME_BYTES + IMAGE_BLOCK_TARGET_BYTES);
  #used = FRAME_BYTES;
  #bytes = 0;
  #lastKind = 0;
  /** A copy of the last key added (in a buffer reused while keys fit), for the order check. */
  #lastKey = Buffer.allocUnsafe(256);
  #lastKeyBytes = -1;
  #closed = false;
  #done = false;

  private constructor(file: string, fh: FileHandle, header: ImageHeader) {
    this.#file = file;
    this.#tmp = `${file}.tmp`;
    this.#fh = fh;
    this.#header = header;
  }

  /** Creates (truncating) `file + '.tmp'` and writes the magic and the header block. */
  static async create(file: string, header: ImageHeader): Promise<ImageWriter> {
    checkHeader(header);
    const fh = await open(`${file}.tmp`, 'w');
    const writer = new ImageWriter(file, fh, header);
    try {
      await writer.#write(IMAGE_MAGIC);
      await writer.#write(frame(BLOCK_HEADER, encodeHeader(header)));
    } catch (err) {
      await writer.abort();
      throw err;
    }
    return writer;
  }

  /**
   * Adds one record. Records must come in kind order (kv, lease, leaseKey, history) and within a
   * kind in strictly increasing key order, as LevelDB iterates them. The bytes are copied.
   */
  async add(kind: ImageRecordKind, key: Uint8Array, value: Uint8Array): Promise<void> {
    assert(!this.#done, 'ImageWriter: add after finish or abort');
    this.#checkOrder(KIND_CODE[kind], key);
    const size = RECORD_OVERHEAD_BYTES + key.byteLength + value.byteLength;
    if (this.#used + size > this.#block.length && this.#used > FRAME_BYTES) await this.#flush();
    this.#counts[kind]++;
    if (size > IMAGE_BLOCK_TARGET_BYTES) {
      // A record larger than a block: a block of its own.
      assert(size <= MAX_IMAGE_BLOCK_BYTES, `ImageWriter: a record of ${size} bytes exceeds a block`);
      const payload = Buffer.allocUnsafe(size);
      writeRecord(payload, 0, KIND_CODE[kind], key, value);
      await this.#write(frame(BLOCK_RECORDS, payload));
      return;
    }
    this.#used = writeRecord(this.#block, this.#used, KIND_CODE[kind], key, value);
  }

  /** Flushes, writes the trailer, fsyncs and renames into place; returns what was written. */
  async finish(): Promise<ImageInfo> {
    assert(!this.#done, 'ImageWriter: finish twice');
    try {
      if (this.#used > FRAME_BYTES) await this.#flush();
      const sha256 = this.#hash.digest();
      const records = IMAGE_RECORD_KINDS.reduce((n, kind) => n + this.#counts[kind], 0);
      const w = new ByteWriter(TRAILER_PAYLOAD_BYTES).u64(records);
      for (const kind of IMAGE_RECORD_KINDS) w.u64(this.#counts[kind]);
      const trailer = frame(BLOCK_TRAILER, w.bytes(sha256).done());
      await writeAll(this.#fh, trailer);
      this.#bytes += trailer.length;
      await this.#fh.sync();
      this.#closed = true;
      await this.#fh.close();
      await rename(this.#tmp, this.#file);
      this.#done = true;
      await syncPath(dirname(this.#file));
      return { ...this.#header, counts: { ...this.#counts }, records, bytes: this.#bytes, sha256: sha256.toString('hex') };
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  /** Closes and removes the temporary file (after a failure); harmless after finish(). */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    if (!this.#closed) {
      this.#closed = true;
      await this.#fh.close().catch(() => undefined);
    }
    await rm(this.#tmp, { force: true });
  }

  #checkOrder(kind: number, key: Uint8Array): void {
    assert(kind >= this.#lastKind, 'ImageWriter: records out of kind order');
    if (kind === this.#lastKind && this.#lastKeyBytes >= 0) {
      assert(Buffer.compare(this.#lastKey.subarray(0, this.#lastKeyBytes), key) < 0, 'ImageWriter: keys out of order');
    }
    this.#lastKind = kind;
    if (key.byteLength > this.#lastKey.length) this.#lastKey = Buffer.allocUnsafe(key.byteLength);
    this.#lastKey.set(key);
    this.#lastKeyBytes = key.byteLength;
  }

  async #flush(): Promise<void> {
    const payloadBytes = this.#used - FRAME_BYTES;
    writeFrame(this.#block, BLOCK_RECORDS, payloadBytes);
    await this.#write(this.#block.subarray(0, this.#used));
    this.#used = FRAME_BYTES;
  }

  /** Writes bytes that the SHA-256 covers (everything but the trailer). */
  async #write(bytes: Buffer): Promise<void> {
    this.#hash.update(bytes);
    await writeAll(this.#fh, bytes);
    this.#bytes += bytes.length;
  }
}

async function writeAll(fh: FileHandle, bytes: Buffer): Promise<void> {
  for (let offset = 0; offset < bytes.length; ) {
    const { bytesWritten } = await fh.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}

function writeRecord(buf: Buffer, at: number, kind: number, key: Uint8Array, value: Uint8Array): number {
  let offset = buf.writeUInt8(kind, at);
  offset = buf.writeUInt32BE(key.byteLength, offset);
  buf.set(key, offset);
  offset = buf.writeUInt32BE(value.byteLength, offset + key.byteLength);
  buf.set(value, offset);
  return offset + value.byteLength;
}

/** A block: frame and payload in one buffer. */
function frame(type: number, payload: Buffer): Buffer {
  const block = Buffer.allocUnsafe(FRAME_BYTES + payload.length);
  payload.copy(block, FRAME_BYTES);
  writeFrame(block, type, payload.length);
  return block;
}

/** Fills the frame at the start of `block`, whose payload follows it. */
function writeFrame(block: Buffer, type: number, payloadBytes: number): void {
  block.writeUInt8(type, 0);
  block.writeUInt32BE(payloadBytes, 1);
  block.writeUInt32BE(blockChecksum(block.subarray(0, 5), block.subarray(FRAME_BYTES, FRAME_BYTES + payloadBytes)), 5);
}

function blockChecksum(typeAndLength: Buffer, payload: Buffer): number {
  return crc32(payload, crc32(typeAndLength));
}

// ---- the header ----

function checkHeader(header: ImageHeader): void {
  const { meta, revision, compactRevision } = header;
  assert(isU64(meta.index) && isU64(meta.term), `image: bad boundary ${meta.index}@${meta.term}`);
  assert(isU64(revision) && isU64(compactRevision) && compactRevision <= revision, `image: bad revisions ${compactRevision}/${revision}`);
}

export function encodeHeader(header: ImageHeader): Buffer {
  const config = encodeConfig(header.meta.config);
  return new ByteWriter(1 + 2 * U64_BYTES + config.length + 2 * U64_BYTES)
    .u8(IMAGE_FORMAT_VERSION)
    .u64(header.meta.index)
    .u64(header.meta.term)
    .bytes(config)
    .u64(header.revision)
    .u64(header.compactRevision)
    .done();
}

function decodeHeader(payload: Buffer, fail: (reason: string) => Error): ImageHeader {
  const r = new ByteReader(payload, fail);
  const format = r.u8('format version');
  if (format !== IMAGE_FORMAT_VERSION) throw fail(`format version ${format}, expected ${IMAGE_FORMAT_VERSION}`);
  const index = r.u64('index');
  const term = r.u64('term');
  const config = readConfig(r);
  const revision = r.u64('revision');
  const compactRevision = r.u64('compactRevision');
  r.end('header');
  if (compactRevision > revision) throw fail(`compactRevision ${compactRevision} is past revision ${revision}`);
  return { meta: { index, term, config }, revision, compactRevision };
}

// ---- reading ----

/**
 * Reads an image front to back: open() reads and checks the magic and the header; each next()
 * reads one record block (CRC checked) and returns its records; after the last one, next()
 * checks the trailer (counts, SHA-256, end of file) and returns null, and `info` is set.
 * Records are views into a buffer allocated for their block, so callers may keep them.
 */
export class ImageReader {
  readonly file: string;
  readonly header: ImageHeader;
  readonly #fh: FileHandle;
  readonly #size: number;
  /** Over every byte before the trailer block. */
  readonly #hash: Hash;
  readonly #counts: Record<ImageRecordKind, number> = { kv: 0, lease: 0, leaseKey: 0, history: 0 };
  #offset: number;
  #lastKind = 0;
  #lastKey: Buffer | null = null;
  #info: ImageInfo | null = null;

  private constructor(file: string, fh: FileHandle, size: number, header: ImageHeader, offset: number, hash: Hash) {
    this.file = file;
    this.#fh = fh;
    this.#size = size;
    this.header = header;
    this.#offset = offset;
    this.#hash = hash;
  }

  /** Opens `file` and reads its header. Throws CorruptDataError if it is not an image. */
  static async open(file: string): Promise<ImageReader> {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      const hash = createHash('sha256');
      const magic = await readExactly(fh, file, 0, IMAGE_MAGIC.length, size, 'the magic');
      if (!magic.equals(IMAGE_MAGIC)) throw imageError(file, 0, 'it does not start with the image magic (not a flotilla snapshot image)');
      hash.update(magic);
      const { type, payload, next } = await readBlock(fh, file, IMAGE_MAGIC.length, size, MAX_HEADER_BYTES);
      if (type !== BLOCK_HEADER) {
        throw imageError(file, IMAGE_MAGIC.length, `the first block is a ${blockName(type)} block, not the header`);
      }
      hash.update(payload.frame);
      const header = decodeHeader(payload.body, (reason) => imageError(file, IMAGE_MAGIC.length, `header: ${reason}`));
      return new ImageReader(file, fh, size, header, next, hash);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** Set once next() has returned null: the whole image checked out. */
  get info(): ImageInfo | null {
    return this.#info;
  }

  /** The next block's records, or null once the trailer is read and everything checked out. */
  async next(): Promise<ImageRecord[] | null> {
    if (this.#info !== null) return null;
    const at = this.#offset;
    if (at >= this.#size) throw imageError(this.file, at, 'truncated: the file ends without its trailer');
    const { type, payload, next } = await readBlock(this.#fh, this.file, at, this.#size, MAX_IMAGE_BLOCK_BYTES);
    this.#offset = next;
    if (type === BLOCK_TRAILER) {
      this.#info = this.#checkTrailer(at, payload.body);
      return null;
    }
    if (type !== BLOCK_RECORDS) throw imageError(this.file, at, `unexpected ${blockName(type)} block`);
    this.#hash.update(payload.frame);
    return this.#parseRecords(at, payload.body);
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }

  #parseRecords(at: number, body: Buffer): ImageRecord[] {
    const fail = (reason: string) => imageError(this.file, at, reason);
    if (body.length === 0) throw fail('an empty records block');
    const r = new ByteReader(body, fail);
    const records: ImageRecord[] = [];
    let lastKey = this.#lastKey;
    while (r.remaining > 0) {
      const code = r.u8('record kind');
      const kind = IMAGE_RECORD_KINDS[code - 1];
      if (kind === undefined) throw fail(`unknown record kind ${code}`);
      const key = r.bytes(r.u32('key length'), 'key');
      const value = r.bytes(r.u32('value length'), 'value');
      checkKey(kind, key, fail);
      if (code < this.#lastKind) throw fail(`a ${kind} record after ${IMAGE_RECORD_KINDS[this.#lastKind - 1]} records`);
      if (code === this.#lastKind && lastKey !== null && Buffer.compare(lastKey, key) >= 0) {
        throw fail(`${kind} keys out of order (a block repeated or misplaced?)`);
      }
      this.#lastKind = code;
      lastKey = key;
      this.#counts[kind]++;
      records.push({ kind, key, value });
    }
    // The block's buffer stays alive through its records anyway; copy so the next block can compare.
    this.#lastKey = lastKey === null ? null : Buffer.from(lastKey);
    return records;
  }

  #checkTrailer(at: number, body: Buffer): ImageInfo {
    const fail = (reason: string) => imageError(this.file, at, `trailer: ${reason}`);
    const r = new ByteReader(body, fail);
    const records = r.u64('record count');
    const counts = { kv: 0, lease: 0, leaseKey: 0, history: 0 };
    for (const kind of IMAGE_RECORD_KINDS) counts[kind] = r.u64(`${kind} count`);
    const sha256 = r.bytes(SHA256_BYTES, 'sha256');
    r.end('trailer');
    const digest = this.#hash.digest();
    if (!digest.equals(sha256)) throw fail('the SHA-256 of the image does not match');
    const read = IMAGE_RECORD_KINDS.reduce((n, kind) => n + this.#counts[kind], 0);
    if (records !== read || IMAGE_RECORD_KINDS.some((kind) => counts[kind] !== this.#counts[kind])) {
      throw fail(`it counts ${records} records, the blocks held ${read}`);
    }
    if (this.#offset !== this.#size) throw imageError(this.file, this.#offset, `${this.#size - this.#offset} bytes after the trailer`);
    return { ...this.header, counts, records, bytes: this.#size, sha256: digest.toString('hex') };
  }
}

/** The smallest sane key of each kind (LevelStorage decodes the rest as it installs). */
function checkKey(kind: ImageRecordKind, key: Buffer, fail: (reason: string) => Error): void {
  const ok = kind === 'kv' ? key.length > 0 : kind === 'leaseKey' ? key.length > U64_BYTES : key.length === U64_BYTES;
  if (!ok) throw fail(`a ${kind} key of ${key.length} bytes`);
}

interface BlockPayload {
  /** Frame and payload, as the SHA-256 covers them. */
  readonly frame: Buffer;
  readonly body: Buffer;
}

/** Reads the block at `at`, checking its length bound and CRC. */
async function readBlock(
  fh: FileHandle,
  file: string,
  at: number,
  size: number,
  maxBytes: number,
): Promise<{ type: number; payload: BlockPayload; next: number }> {
  const head = await readExactly(fh, file, at, FRAME_BYTES, size, 'a block frame');
  const type = head.readUInt8(0);
  const length = head.readUInt32BE(1);
  if (BLOCK_TYPE_NAMES[type] === undefined) throw imageError(file, at, `unknown block type ${type} (a corrupt frame)`);
  if (length > maxBytes) throw imageError(file, at, `a block of ${length} bytes exceeds ${maxBytes} (a corrupt frame)`);
  if (type === BLOCK_TRAILER && length !== TRAILER_PAYLOAD_BYTES) throw imageError(file, at, `a trailer of ${length} bytes`);
  const block = Buffer.allocUnsafe(FRAME_BYTES + length);
  head.copy(block, 0);
  await readInto(fh, file, at, block, FRAME_BYTES, length, size);
  const body = block.subarray(FRAME_BYTES);
  if (blockChecksum(block.subarray(0, 5), body) !== head.readUInt32BE(5)) {
    throw imageError(file, at, `the ${blockName(type)} block fails its checksum`);
  }
  return { type, payload: { frame: block, body }, next: at + FRAME_BYTES + length };
}

async function readExactly(fh: FileHandle, file: string, at: number, n: number, size: number, what: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(n);
  if (at + n > size) throw imageError(file, at, `truncated: ${what} needs ${n} bytes, ${Math.max(0, size - at)} left`);
  await readInto(fh, file, at, buf, 0, n, size);
  return buf;
}

/** Reads `n` bytes of the file from `at + offset` into buf at offset. */
async function readInto(fh: FileHandle, file: string, at: number, buf: Buffer, offset: number, n: number, size: number): Promise<void> {
  const start = at + offset;
  if (start + n > size) throw imageError(file, at, `truncated: the block needs ${offset + n} bytes, ${size - at} left`);
  let done = 0;
  while (done < n) {
    const { bytesRead } = await fh.read(buf, offset + done, n - done, start + done);
    if (bytesRead === 0) throw imageError(file, at, `truncated: the file ended at byte ${start + done}`);
    done += bytesRead;
  }
}

function blockName(type: number): string {
  return BLOCK_TYPE_NAMES[type] ?? `type-${type}`;
}

function imageError(file: string, offset: number, reason: string): CorruptDataError {
  return new CorruptDataError(`Snapshot image ${file} is corrupt at byte ${offset}: ${reason}`);
}

// ---- whole-file helpers ----

/** Reads and checks only the magic and the header block (fast: the records are not read). */
export async function readImageHeader(file: string): Promise<ImageHeader> {
  const reader = await ImageReader.open(file);
  await reader.close();
  return reader.header;
}

/** Reads the whole image, checking every block, the counts and the SHA-256; bounded memory. */
export async function verifyImage(file: string): Promise<ImageInfo> {
  const reader = await ImageReader.open(file);
  try {
    while ((await reader.next()) !== null);
    const info = reader.info;
    assert(info !== null, 'verifyImage: no info after the trailer');
    return info;
  } finally {
    await reader.close();
  }
}
