/**
 * The write-ahead log: the Raft log and the hard state (term and vote), in append-only segment
 * files under `<dataDir>/wal/`, each write made durable by the write itself (O_DSYNC) before it
 * returns. LevelStorage keeps the state machine in LevelDB beside it.
 *
 * Why a file of our own rather than LevelDB's: a synced LevelDB batch costs about 0.45 ms on the
 * reference machine; an append to a file opened with O_DSYNC costs about 0.2 ms. Every
 * acknowledged write waits for one such sync on the leader and on a follower, so this is most of
 * the latency of a write at low concurrency (see docs/benchmarks.md). For the same reason a small
 * write is made on the calling thread, not the thread pool (see #write).
 *
 * Segment files are named by a 16-hex-digit sequence number (`0000000000000001.wal`) and are
 * read back in sequence order. Each write is one frame, and a frame holds records (all integers
 * big-endian):
 *
 *   frame   u32 length, u32 CRC-32 of what follows, then records to the end of the frame
 *   record  u32 length, u8 kind, then
 *     1 entry       u64 index, u64 term, u8 type (0 normal, 1 config), data to the end
 *     2 hard state  as level-format's encodeHardState (term, commit, vote)
 *     3 reset       u64 index, u64 term, u8 keep (1: drop entries up to index; 0: drop them all)
 *
 * Reading them back ("replay") rebuilds the log as it was: an entry at an index the log already
 * reaches replaces that entry and every one after it (Raft's conflicting-suffix rule), the last
 * hard state wins, and a reset drops what an installed snapshot covers. Every segment starts with
 * the hard state current when it was opened, so old segments can be deleted without losing it.
 *
 * A crash can leave only the last write torn (each write returns after it is durable, and the next
 * starts after that): the newest segment may end in a frame that is cut short, fails its CRC while
 * reaching the end of the file, or is zeros to the end. Replay leaves that frame out and
 * `dropTornTail` cuts it off. Any other bad frame is corruption and throws: a later write was
 * acknowledged after it.
 */
import { constants, writevSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { CorruptDataError } from '../kv/errors.js';
import type { Entry, EntryType, HardState } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { crc32 } from './crc32.js';
import { decodeHardState, encodeHardState } from './level-format.js';
import { syncPath } from './sync-path.js';

/** Segment files are this size, written with zeros before use (see the file comment). */
export const WAL_SEGMENT_BYTES = 8 * 1024 * 1024;
/** The smallest segment size tests may ask for. */
const MIN_SEGMENT_BYTES = 4096;
const ZERO_CHUNK_BYTES = 1024 * 1024;
/** How much CRC work looking for a whole frame after a bad one may do (see validFrameAfter). */
const MAX_SCAN_CRC_BYTES = 256 * 1024 * 1024;
const FRAME_HEADER_BYTES = 8;
const RECORD_HEADER_BYTES = 4;
const ENTRY_FIXED_BYTES = 1 + 8 + 8 + 1;
const RESET_BYTES = 1 + 8 + 8 + 1;
const KIND_ENTRY = 1;
const KIND_HARD_STATE = 2;
const KIND_RESET = 3;
const ENTRY_TYPE_CODE: Record<EntryType, number> = { normal: 0, config: 1 };
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'config'];
/** Entry data up to this size is copied into the write's buffer; larger data is written from where it lies. */
const COPY_DATA_BYTES = 4096;
/** Below Linux's IOV_MAX (1024), so one write is one system call, hence one sync. */
const MAX_WRITE_PIECES = 1000;
/**
 * A write of at most one entry and at most this many bytes is made on the calling thread (see
 * #write); anything larger goes to libuv's thread pool.
 */
export const INLINE_WRITE_MAX_BYTES = 16 * 1024;
const SEGMENT_NAME = /^([0-9a-f]{16})\.wal$/;
const WRITE_FLAGS = constants.O_WRONLY | constants.O_DSYNC;

export interface WalOptions {
  /** The size of a segment file (default WAL_SEGMENT_BYTES). */
  readonly segmentBytes?: number;
}

/** What replay found. */
export interface WalContents {
  /** The last hard state written, or null when the log holds none (a new or legacy data dir). */
  readonly hardState: HardState | null;
  /** The log as it stands: contiguous entries, from `after + 1`. */
  readonly entries: Entry[];
  /** The index before the first entry (the last reset's, or the first entry's minus one; 0 if none). */
  readonly after: number;
  /** True when at least one record was read (false: an empty or missing directory). */
  readonly any: boolean;
  /** The torn final write that was left out (see dropTornTail), or null. */
  readonly torn: TornWrite | null;
}

interface TornWrite {
  readonly path: string;
  /** Where the torn frame starts, and the end of the last byte that is not zero after it. */
  readonly offset: number;
  readonly end: number;
}

interface Segment {
  readonly seq: number;
  readonly path: string;
  /** The highest entry index written in it (0 for none): the segment may go once a snapshot covers it. */
  maxIndex: number;
}

/** The write-ahead log of one member. Lifecycle: `open` (replays), then writes, then `close`. */
export class Wal {
  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #segments: Segment[];
  /** The newest segment, open for writing from the first write on, and where its data ends. */
  #file: FileHandle | null = null;
  #fileBytes: number;
  /** Whether the newest segment holds more than its first frame (the hard state). */
  #segmentUsed: boolean;
  /** The next segment, being filled with zeros in the background. */
  #next: Promise<Segment | Error> | null = null;
  #hardState: HardState;
  /** The terms of the entries after `#after`, for termAt(). */
  #terms: number[];
  #after: number;
  #torn: TornWrite | null;
  #writing = false;

  private constructor(dir: string, segmentBytes: number, segments: Segment[], contents: WalContents, dataEnd: number) {
    this.#dir = dir;
    this.#segmentBytes = segmentBytes;
    this.#segments = segments;
    this.#fileBytes = dataEnd;
    this.#segmentUsed = dataEnd > 0;
    this.#hardState = contents.hardState ?? { term: 0, vote: null, commit: 0 };
    this.#terms = contents.entries.map((e) => e.term);
    this.#after = contents.after;
    this.#torn = contents.torn;
  }

  /**
   * Replays every segment in `dir` (created if missing) and returns the log with what it holds,
   * leaving out a torn final write (changing nothing on disk: see dropTornTail). Writing carries
   * on in the newest segment, from the first write on. Throws CorruptDataError for any other bad
   * frame or record, or for a gap in the log.
   */
  static async open(dir: string, options: WalOptions = {}): Promise<{ wal: Wal; contents: WalContents }> {
    const segmentBytes = options.segmentBytes ?? WAL_SEGMENT_BYTES;
    assert(Number.isSafeInteger(segmentBytes) && segmentBytes >= MIN_SEGMENT_BYTES, `wal: segmentBytes ${segmentBytes}`);
    await mkdir(dir, { recursive: true });
    // A segment that was being zeroed when the process stopped.
    for (const name of await readdir(dir)) if (name.endsWith('.wal.tmp')) await rm(join(dir, name), { force: true });
    const segments = await listSegments(dir);
    // A segment made ready but never written to is all zeros: the torn write, if any, is in the
    // newest segment that holds data.
    let lastWithData = segments.length - 1;
    while (lastWithData >= 0 && (await isBlank(segments[lastWithData].path))) lastWithData--;
    const replay = new Replay(dir);
    let dataEnd = 0;
    for (let i = 0; i <= lastWithData; i++) {
      const segment = segments[i];
      dataEnd = replay.segment(segment, await readFile(segment.path), i === lastWithData);
    }
    const contents = replay.contents();
    // Writing carries on after the data; a blank segment after it is the next one, made ready
    // (more than one blank is left over from a crash in between: the rest go).
    const blank = segments.splice(lastWithData + 1);
    for (const extra of blank.slice(1)) await rm(extra.path, { force: true });
    const wal = new Wal(dir, segmentBytes, segments, contents, dataEnd);
    if (blank.length > 0) wal.#next = Promise.resolve(blank[0]);
    return { wal, contents };
  }

  /**
   * Zeroes the torn final write replay left out, once the caller has checked that the rest makes
   * sense (a write that was acknowledged is never torn, so nothing acknowledged goes).
   */
  async dropTornTail(): Promise<void> {
    const torn = this.#torn;
    if (torn === null) return;
    const file = await open(torn.path, 'r+');
    try {
      for (let at = torn.offset; at < torn.end; at += ZERO_CHUNK_BYTES) {
        const n = Math.min(ZERO_CHUNK_BYTES, torn.end - at);
        await file.write(Buffer.alloc(n), 0, n, at);
      }
      await file.datasync();
    } finally {
      await file.close();
    }
    this.#torn = null;
  }

  get hardState(): HardState {
    return this.#hardState;
  }

  /** The term of the entry at `index`, or undefined when the log does not hold it. */
  termAt(index: number): number | undefined {
    return index > this.#after && index <= this.#after + this.#terms.length ? this.#terms[index - this.#after - 1] : undefined;
  }

  /** The index of the last entry (or of the last reset point when the log is empty). */
  get lastIndex(): number {
    return this.#after + this.#terms.length;
  }

  /**
   * Appends, durably, the hard state (when not null) and the entries, which replace every entry
   * from entries[0].index on. One write, one sync; call one at a time.
   */
  async append(hardState: HardState | null, entries: readonly Entry[]): Promise<void> {
    if (entries.length === 0 && (hardState === null || sameHardState(hardState, this.#hardState))) {
      // Nothing new; a segment (which starts with the hard state) exists after this all the same.
      if (this.#file === null) await this.#exclusive(() => this.#openNewest());
      return;
    }
    if (entries.length > 0) {
      const first = entries[0].index;
      assert(first > this.#after && first <= this.lastIndex + 1, `wal: entry ${first} does not attach to (${this.#after}, ${this.lastIndex}]`);
    }
    const pieces = new FrameWriter();
    if (hardState !== null) pieces.record(KIND_HARD_STATE, encodeHardState(hardState));
    for (const entry of entries) pieces.entry(entry);
    await this.#write(pieces.done(), entries.at(-1)?.index ?? 0, entries.length <= 1);
    if (hardState !== null) this.#hardState = hardState;
    if (entries.length > 0) {
      this.#terms.length = entries[0].index - this.#after - 1;
      for (const entry of entries) this.#terms.push(entry.term);
    }
  }

  /**
   * Records, durably, that a snapshot at `index` (of `term`) now stands for the log up to it: the
   * entries up to index go, and with `keep` false every entry after it goes too (Raft's
   * InstallSnapshot rule, when the entry at index has another term). Call it once the snapshot
   * itself is durable.
   */
  async reset(index: number, term: number, keep: boolean): Promise<void> {
    const payload = Buffer.alloc(RESET_BYTES);
    payload.writeUInt8(KIND_RESET, 0);
    writeU64(payload, 1, index);
    writeU64(payload, 9, term);
    payload.writeUInt8(keep ? 1 : 0, 17);
    const pieces = new FrameWriter();
    pieces.record(KIND_RESET, payload.subarray(1));
    await this.#write(pieces.done(), 0);
    this.#forget(index, keep);
    // Entries an earlier segment holds past the reset point were dropped, and no longer hold it back.
    if (!keep) for (const segment of this.#segments.slice(0, -1)) segment.maxIndex = Math.min(segment.maxIndex, index);
  }

  /** Forgets, in memory only, the entries up to `index` (load found a snapshot covering them). */
  forget(index: number): void {
    this.#forget(index, true);
  }

  /**
   * Deletes the segments, oldest first, whose entries all lie at or below `index`: a snapshot
   * made durable elsewhere covers them. The newest segment is kept.
   */
  async releaseThrough(index: number): Promise<void> {
    this.#forget(index, true);
    let released = false;
    while (this.#segments.length > 1 && this.#segments[0].maxIndex <= index) {
      const segment = this.#segments.shift()!;
      await rm(segment.path, { force: true });
      released = true;
    }
    if (released) await syncPath(this.#dir);
  }

  /** How many segment files hold the log (for tests and metrics). */
  get segmentCount(): number {
    return this.#segments.length;
  }

  async close(): Promise<void> {
    const file = this.#file;
    this.#file = null;
    await file?.close();
    await this.#next; // never leave a half-zeroed file being written after close
  }

  #forget(index: number, keep: boolean): void {
    if (!keep || index >= this.lastIndex) {
      this.#terms = [];
      this.#after = keep ? Math.max(this.#after, index) : index;
    } else if (index > this.#after) {
      this.#terms = this.#terms.slice(index - this.#after);
      this.#after = index;
    }
  }

  /**
   * Writes one frame where the data ends. A small write (`single` and at most
   * INLINE_WRITE_MAX_BYTES) is made on this thread: the event loop waits the fraction of a
   * millisecond the synced write takes, and no thread-pool thread has to be woken and then wake
   * this one. When members and the load share a couple of cores, each such wake-up can wait for
   * a core, and at one write in flight that wait was on every write's path, twice over (the
   * leader's and a follower's). A Ready of one entry means nothing else was waiting to be logged
   * (group commit gathers whatever is), so the loop has little else to do meanwhile; larger
   * writes, under load, leave the loop free while the disk works.
   */
  async #write(pieces: Uint8Array[], maxIndex: number, single = false): Promise<void> {
    await this.#exclusive(async () => {
      let bytes = 0;
      for (const piece of pieces) bytes += piece.byteLength;
      if (this.#file === null) await this.#openNewest();
      // A frame that would run past the segment's end starts the next one (one larger than a whole
      // segment is written where it is, and the file grows).
      if (this.#fileBytes + bytes > this.#segmentBytes && this.#segmentUsed) await this.#rollOver();
      const inline = single && bytes <= INLINE_WRITE_MAX_BYTES;
      const bytesWritten = inline ? writevSync(this.#file!.fd, pieces, this.#fileBytes) : (await this.#file!.writev(pieces, this.#fileBytes)).bytesWritten;
      assert(bytesWritten === bytes, `wal: wrote ${bytesWritten} of ${bytes} bytes`);
      this.#fileBytes += bytes;
      this.#segmentUsed = true;
      const newest = this.#segments.at(-1)!;
      newest.maxIndex = Math.max(newest.maxIndex, maxIndex);
    });
  }

  async #exclusive(task: () => Promise<void>): Promise<void> {
    assert(!this.#writing, 'wal: one write at a time');
    assert(this.#torn === null, 'wal: dropTornTail() before writing');
    this.#writing = true;
    try {
      await task();
    } finally {
      this.#writing = false;
    }
  }

  /** Opens the newest segment where its data ends (a new one if there is none), and readies the next. */
  async #openNewest(): Promise<void> {
    const newest = this.#segments.at(-1);
    if (newest === undefined) {
      await this.#activate(await this.#takeNext(1));
    } else {
      this.#file = await open(newest.path, WRITE_FLAGS);
      if (this.#fileBytes === 0) await this.#writeHeader();
    }
    this.#prepareNext();
  }

  /** Moves writing to the next segment, made ready in the background. */
  async #rollOver(): Promise<void> {
    const next = await this.#takeNext(this.#segments.at(-1)!.seq + 1);
    await this.#file?.close();
    this.#file = null;
    await this.#activate(next);
    this.#prepareNext();
  }

  /** The segment made ready in the background, or segment `seq` made ready now. */
  async #takeNext(seq: number): Promise<Segment> {
    const next = await (this.#next ?? prepareSegment(this.#dir, seq, this.#segmentBytes));
    this.#next = null;
    if (next instanceof Error) throw next;
    return next;
  }

  async #activate(segment: Segment): Promise<void> {
    this.#file = await open(segment.path, WRITE_FLAGS);
    this.#segments.push(segment);
    this.#fileBytes = 0;
    await this.#writeHeader();
  }

  /** Every segment starts with the hard state, so older segments can go without losing it. */
  async #writeHeader(): Promise<void> {
    const pieces = new FrameWriter();
    pieces.record(KIND_HARD_STATE, encodeHardState(this.#hardState));
    const header = pieces.done();
    await this.#file!.writev(header, 0);
    this.#fileBytes = header.reduce((n, p) => n + p.byteLength, 0);
    this.#segmentUsed = false;
  }

  #prepareNext(): void {
    if (this.#next !== null) return;
    const seq = this.#segments.at(-1)!.seq + 1;
    this.#next = prepareSegment(this.#dir, seq, this.#segmentBytes).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
  }
}

/**
 * Makes segment `seq` ready: a file of `bytes` zeros, synced, under a temporary name and then
 * renamed (and the directory synced), so a segment file is always whole. Writes into a file whose
 * blocks are already written need no file-system metadata in their sync: on the reference
 * machine, with three members syncing at once, 0.25 ms against 0.37 ms for appending.
 */
async function prepareSegment(dir: string, seq: number, bytes: number): Promise<Segment> {
  const path = join(dir, segmentName(seq));
  const temporary = `${path}.tmp`;
  const file = await open(temporary, 'w');
  try {
    const zeros = Buffer.alloc(Math.min(ZERO_CHUNK_BYTES, bytes));
    for (let at = 0; at < bytes; at += zeros.length) await file.write(zeros, 0, Math.min(zeros.length, bytes - at), at);
    await file.datasync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
  await syncPath(dir);
  return { seq, path, maxIndex: 0 };
}

async function isBlank(path: string): Promise<boolean> {
  const file = await open(path, 'r');
  try {
    const head = Buffer.alloc(FRAME_HEADER_BYTES);
    const { bytesRead } = await file.read(head, 0, head.length, 0);
    return head.subarray(0, bytesRead).every((b) => b === 0);
  } finally {
    await file.close();
  }
}

/**
 * Builds one write, one frame: record headers and small entries copied into shared buffers,
 * large data written from where it lies.
 */
class FrameWriter {
  /** Each record: its header bytes (written at done()) and its data. */
  readonly #records: { kind: number; entry: Entry | null; body: Uint8Array }[] = [];

  record(kind: number, body: Uint8Array): void {
    this.#records.push({ kind, entry: null, body });
  }

  entry(entry: Entry): void {
    this.#records.push({ kind: KIND_ENTRY, entry, body: entry.data });
  }

  /**
   * The pieces of the frame: one buffer of exactly the bytes copied (headers and small data: for
   * a small write that is one allocation from Node's pool, not a fresh block per write), with
   * large data in between as is.
   */
  done(): Uint8Array[] {
    let copied = FRAME_HEADER_BYTES;
    let separate = 0;
    const inline: boolean[] = [];
    for (const r of this.#records) {
      copied += RECORD_HEADER_BYTES + (r.entry === null ? 1 : ENTRY_FIXED_BYTES);
      const small = r.body.byteLength <= COPY_DATA_BYTES || separate >= MAX_WRITE_PIECES / 2 - 1;
      if (small) copied += r.body.byteLength;
      else separate++;
      inline.push(small);
    }
    const buffer = Buffer.allocUnsafe(copied);
    const pieces: Uint8Array[] = [];
    let at = FRAME_HEADER_BYTES;
    let start = 0;
    for (let i = 0; i < this.#records.length; i++) {
      const { kind, entry, body } = this.#records[i];
      if (entry === null) {
        buffer.writeUInt32BE(1 + body.byteLength, at);
        buffer.writeUInt8(kind, at + 4);
        at += RECORD_HEADER_BYTES + 1;
      } else {
        buffer.writeUInt32BE(ENTRY_FIXED_BYTES + body.byteLength, at);
        buffer.writeUInt8(KIND_ENTRY, at + 4);
        writeU64(buffer, at + 5, entry.index);
        writeU64(buffer, at + 13, entry.term);
        buffer.writeUInt8(ENTRY_TYPE_CODE[entry.type], at + 21);
        at += RECORD_HEADER_BYTES + ENTRY_FIXED_BYTES;
      }
      if (inline[i]) {
        buffer.set(body, at);
        at += body.byteLength;
      } else {
        pieces.push(buffer.subarray(start, at), body);
        start = at;
      }
    }
    if (at > start) pieces.push(buffer.subarray(start, at));
    let length = -FRAME_HEADER_BYTES;
    let crc = 0;
    for (let i = 0; i < pieces.length; i++) {
      length += pieces[i].byteLength;
      crc = crc32(i === 0 ? pieces[0].subarray(FRAME_HEADER_BYTES) : pieces[i], crc);
    }
    buffer.writeUInt32BE(length, 0);
    buffer.writeUInt32BE(crc, 4);
    return pieces;
  }
}

/** Rebuilds the log from the records, segment by segment. */
class Replay {
  readonly #dir: string;
  #hardState: HardState | null = null;
  #entries: Entry[] = [];
  #after: number | null = null;
  #any = false;
  #torn: WalContents['torn'] = null;

  constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Reads one segment's frames up to where its data ends (zeros to the end of the file, or the
   * end of the file); returns that offset. A torn final write of the newest segment with data
   * (`last`) is left out.
   */
  segment(segment: Segment, bytes: Buffer, last: boolean): number {
    let offset = 0;
    while (offset < bytes.length) {
      if (isZeros(bytes, offset, bytes.length)) return offset;
      const problem = frameProblem(bytes, offset);
      if (problem !== null) {
        if (last && !validFrameAfter(bytes, offset + 1)) {
          this.#torn = { path: segment.path, offset, end: lastNonZero(bytes) + 1 };
          return offset;
        }
        throw this.#corrupt(`${segment.path} at byte ${offset}: ${problem}`);
      }
      const end = offset + FRAME_HEADER_BYTES + bytes.readUInt32BE(offset);
      let at = offset + FRAME_HEADER_BYTES;
      while (at < end) {
        const length = end - at >= RECORD_HEADER_BYTES ? bytes.readUInt32BE(at) : -1;
        if (length < 1 || at + RECORD_HEADER_BYTES + length > end) {
          throw this.#corrupt(`${segment.path} at byte ${at}: a record overruns its frame`);
        }
        this.#record(segment, bytes.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + length), at);
        at += RECORD_HEADER_BYTES + length;
      }
      offset = end;
    }
    return offset;
  }

  contents(): WalContents {
    return { hardState: this.#hardState, entries: this.#entries, after: this.#after ?? 0, any: this.#any, torn: this.#torn };
  }

  #record(segment: Segment, payload: Buffer, offset: number): void {
    this.#any = true;
    const where = `${segment.path} at byte ${offset}`;
    const fail = (reason: string) => this.#corrupt(`${where}: ${reason}`);
    switch (payload[0]) {
      case KIND_HARD_STATE:
        this.#hardState = decodeHardState(payload.subarray(1), fail);
        return;
      case KIND_ENTRY: {
        if (payload.length < ENTRY_FIXED_BYTES) throw fail('an entry record is too short');
        const index = readU64(payload, 1);
        const term = readU64(payload, 9);
        const type = ENTRY_TYPES[payload[17]];
        if (type === undefined) throw fail(`entry ${index} has an unknown type`);
        // A copy: a view would keep the whole segment's buffer alive for as long as the entry.
        const data = Buffer.from(payload.subarray(ENTRY_FIXED_BYTES));
        this.#entry({ index, term, type, data }, fail);
        segment.maxIndex = Math.max(segment.maxIndex, index);
        return;
      }
      case KIND_RESET: {
        if (payload.length !== RESET_BYTES) throw fail('a reset record has the wrong length');
        const index = readU64(payload, 1);
        const keep = payload[17] === 1;
        this.#reset(index, keep);
        return;
      }
      default:
        throw fail(`unknown record kind ${payload[0]}`);
    }
  }

  #entry(entry: Entry, fail: (reason: string) => Error): void {
    const { index } = entry;
    if (index < 1) throw fail(`entry index ${index}`);
    if (this.#after === null || index <= this.#after) {
      // The first entry read (older segments were released), or a rewrite below every entry held.
      this.#after = index - 1;
      this.#entries = [];
    }
    const next = this.#after + this.#entries.length + 1;
    if (index > next) throw fail(`entry ${index} found where ${next} belongs`);
    this.#entries.length = index - this.#after - 1;
    this.#entries.push(entry);
  }

  #reset(index: number, keep: boolean): void {
    const after = this.#after ?? 0;
    if (!keep || index >= after + this.#entries.length) {
      this.#entries = [];
      this.#after = keep ? Math.max(after, index) : index;
    } else if (index > after) {
      this.#entries = this.#entries.slice(index - after);
      this.#after = index;
    }
  }

  #corrupt(reason: string): CorruptDataError {
    return new CorruptDataError(`Corrupt write-ahead log in ${this.#dir}: ${reason}`);
  }
}

/** Why the frame at offset is not whole, or null if it is. */
function frameProblem(bytes: Buffer, offset: number): string | null {
  if (bytes.length - offset < FRAME_HEADER_BYTES) return 'a frame header is cut short';
  const length = bytes.readUInt32BE(offset);
  if (length < 1) return 'an empty frame';
  if (bytes.length - offset - FRAME_HEADER_BYTES < length) return `a frame of ${length} bytes is cut short`;
  const body = bytes.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length);
  if (crc32(body) !== bytes.readUInt32BE(offset + 4)) return 'a frame fails its checksum';
  return null;
}

/**
 * Whether a whole frame starts anywhere from `from` on. A write is acknowledged only once it is
 * durable and the next starts after that, so a bad frame followed by a good one is not a torn
 * last write but damage. It tries every offset, but a candidate must look like a frame (a length
 * that fits, then a record header that fits it, of a known kind) before its CRC is computed, and
 * past MAX_SCAN_CRC_BYTES of CRC work it gives up and answers true (refusing to start is the
 * safe side).
 */
function validFrameAfter(bytes: Buffer, from: number): boolean {
  let crcBytes = 0;
  for (let at = from; at + FRAME_HEADER_BYTES + RECORD_HEADER_BYTES + 1 <= bytes.length; at++) {
    const length = bytes.readUInt32BE(at);
    if (length < RECORD_HEADER_BYTES + 1 || at + FRAME_HEADER_BYTES + length > bytes.length) continue;
    const first = at + FRAME_HEADER_BYTES;
    const recordLength = bytes.readUInt32BE(first);
    const kind = bytes[first + RECORD_HEADER_BYTES];
    if (recordLength < 1 || RECORD_HEADER_BYTES + recordLength > length || kind < KIND_ENTRY || kind > KIND_RESET) continue;
    crcBytes += length;
    if (crcBytes > MAX_SCAN_CRC_BYTES) return true;
    if (frameProblem(bytes, at) === null) return true;
  }
  return false;
}

function isZeros(bytes: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

function lastNonZero(bytes: Buffer): number {
  let i = bytes.length - 1;
  while (i >= 0 && bytes[i] === 0) i--;
  return i;
}

async function listSegments(dir: string): Promise<Segment[]> {
  const names = await readdir(dir);
  const segments: Segment[] = [];
  for (const name of names) {
    const match = SEGMENT_NAME.exec(name);
    if (match) segments.push({ seq: Number.parseInt(match[1], 16), path: join(dir, name), maxIndex: 0 });
  }
  return segments.sort((a, b) => a.seq - b.seq);
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function segmentName(seq: number): string {
  return `${seq.toString(16).padStart(16, '0')}.wal`;
}

function writeU64(buffer: Buffer, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `wal: ${value} is not a u64 we can store`);
  buffer.writeUInt32BE(Math.floor(value / 2 ** 32), offset);
  buffer.writeUInt32BE(value % 2 ** 32, offset + 4);
}

function readU64(buffer: Buffer, offset: number): number {
  return buffer.readUInt32BE(offset) * 2 ** 32 + buffer.readUInt32BE(offset + 4);
}
