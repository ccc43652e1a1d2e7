/**
 * Everything a member keeps durable: the Raft log and hard state in the write-ahead log
 * (`<dataDir>/wal/`, wal.ts), and in one LevelDB (`<dataDir>/db`) the snapshot boundary and the
 * key-value state machine with its applied index and revision.
 *
 * `persist` carries out a Ready: the new entries and a changed term or vote go to the write-ahead
 * log in one durable write; the committed entries are applied to LevelDB in ONE atomic batch
 * (keys, leases, the lease index, the watch history, appliedIndex, revision), not synced: after a
 * crash, load() finds LevelDB at some applied index, whole, and the Raft core replays the logged
 * entries after it. LevelDB is synced once a second and whenever the snapshot boundary moves, and
 * only then may the log's segments before the boundary go. One log write covers every entry of a
 * Ready (group commit). persist returns once the log write is done; the LevelDB batch lands after,
 * in order, and until then its writes are read from memory (recent-state.ts, which also holds a
 * read cache of records).
 *
 * Layout (sublevels of the database; encodings in level-format.ts and kv/kv-record.ts):
 *   meta 'snapshot' | 'applied' -> small binary records
 *   kv   UTF-8 key bytes -> createRevision, modRevision, version, lease, value
 *   leases      u64 lease id -> ttlSeconds
 *   lease-keys  u64 lease id ++ UTF-8 key bytes -> empty: exactly the keys whose lease field is set
 *   history     u64 revision -> the watch events of that revision, values included
 *   log, meta 'hardState': where an older flotilla kept the log; load() moves them to the
 *        write-ahead log
 *
 * State-machine images (snapshot-image.ts): `writeImage` streams the state-machine sublevels, read
 * from one LevelDB snapshot, into a checksummed file; `installImage` replaces the state machine
 * with one (InstallSnapshot), `restoreImage` makes a new data dir from one (`snapshot restore`),
 * and `compactLog` folds applied log entries into the snapshot boundary.
 *
 * Installing is crash-safe by generations. The four state-machine sublevels exist per generation
 * (generation 0 has the plain names, generation g > 0 `kv-g<g>` and so on; meta 'generation' names
 * the live one). An install writes an 'installing' marker, fills generation g + 1 beside the live
 * one in bounded batches, and then switches in ONE synced batch: generation, snapshot boundary,
 * applied index, revision, compactRevision, and a 'retired' marker for generation g, whose
 * sublevels are cleared afterwards; a reset record in the write-ahead log then drops the entries
 * the image covers. A crash before the switch leaves the old state machine and log exactly as they
 * were (load() clears the half-filled generation: the leader simply sends the image again); a
 * crash after it leaves the new state (load() finishes clearing the old generation, and applies
 * the reset's rule itself if the record was not written yet). Reads meanwhile see the old state,
 * then the new one, never a mix: reads at a LevelDB snapshot take the generation from it, and
 * point reads finish before the old generation is cleared.
 *
 * Watch history retention: the most recent `historyRetention` revisions are kept. Each persist
 * that moves the revision to R deletes, in the same batch, the history of every revision up to
 * R - historyRetention, and records the highest revision dropped (`compactRevision`) in the
 * 'applied' record. So history holds exactly the revisions (compactRevision, revision].
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Level, type BatchOperation } from 'level';
import { validateKey } from '../kv/command.js';
import { CompactedError, CorruptDataError, InvalidArgumentError } from '../kv/errors.js';
import { decodeRecord, decodeRecordMeta, encodeRecord, recordBytes, type KeyMeta, type KvRecord } from '../kv/kv-record.js';
import {
  planApply,
  runApply,
  type ApplyOutcome,
  type ApplyPlan,
  type ApplyResult,
  type KeyWrite,
  type KvCounters,
  type LeaseRecord,
  type WatchEvent,
} from '../kv/kv-state.js';
import type { Ready } from '../raft/ready.js';
import type { ConfigState, Entry, HardState, SnapshotMeta } from '../raft/types.js';
import { assert, AssertionError } from '../util/assert.js';
import {
  APPLIED_KEY,
  decodeApplied,
  decodeGeneration,
  decodeInstalling,
  decodeEvents,
  decodeHardState,
  decodeLease,
  decodeLogEntry,
  decodeSnapshotMeta,
  encodeApplied,
  encodeEvents,
  eventsBytes,
  encodeGeneration,
  encodeInstalling,
  encodeLease,
  encodeSnapshotMeta,
  GENERATION_KEY,
  HARD_STATE_KEY,
  historyKey,
  historyKeyRevision,
  INSTALLING_KEY,
  leaseKey,
  leaseKeyId,
  leaseKeysKey,
  leaseKeysKeyName,
  leaseKeysRange,
  RETIRED_KEY,
  SNAPSHOT_KEY,
  stateSublevelName,
  type AppliedState,
  type Fail,
} from './level-format.js';
import {
  ImageReader,
  ImageWriter,
  readImageHeader,
  verifyImage,
  type ImageHeader,
  type ImageInfo,
  type ImageRecord,
  type ImageRecordKind,
  IMAGE_RECORD_KINDS,
} from './snapshot-image.js';
import { RecentState, type ReadCacheLimits } from './recent-state.js';
import { Wal, type WalContents, type WalOptions } from './wal.js';

/**
 * The most state-machine batches that may wait to land in LevelDB: persist waits for them all
 * before applying more, so a LevelDB that falls behind (a write stall during compaction) slows
 * the member down instead of piling up batches in memory.
 */
export const MAX_UNLANDED_BATCHES = 4;
/** The most Readies whose applied writes one LevelDB batch gathers (with LevelStorageOptions.landDelayMs). */
export const MAX_READIES_PER_BATCH = 8;
/** The most keys one `list` call may return. */
export const MAX_LIST_LIMIT = 10_000;
/** Log entries read per step while loading, to bound the transient memory of a load. */
const LOAD_BATCH_ENTRIES = 1024;
/** How many revisions of watch history are kept unless the options say otherwise. */
export const DEFAULT_HISTORY_RETENTION = 10_000;
/** The most events one `readHistory` call may ask for. */
export const MAX_HISTORY_LIMIT = 10_000;
/** History revisions (and lease index keys) read per step of an iterator. */
const READ_BATCH_RECORDS = 256;
/** Records read per step while writing an image, and the bytes one step may hold. */
const IMAGE_READ_RECORDS = 1024;
const IMAGE_READ_BYTES = 1024 * 1024;

/** What a member resumes from. */
export interface PersistedState {
  readonly hardState: HardState;
  readonly snapshot: SnapshotMeta;
  /** Every stored entry: contiguous, from snapshot.index + 1. */
  readonly entries: Entry[];
  /** The last entry applied to the key-value state. */
  readonly applied: number;
  /** The store revision after `applied`. */
  readonly revision: number;
}

/**
 * LevelDB's write buffer (its memtable) unless told otherwise: 16 MiB, against LevelDB's own 4 MiB.
 * Every applied write, and its history record, goes through it; a larger one flushes to table
 * files a quarter as often, and the background compaction that follows each flush was what
 * capped large-value writes: put at 64 connections with 64 KiB values went from ~300 to ~350
 * writes/s and its p99 from ~0.7-1.2 s to ~0.4 s (scratch A/B), neutral at 100 bytes. It costs
 * up to twice the difference in memory (a full memtable and the one being flushed) and, on a
 * restart after a crash, up to one buffer of LevelDB's own log to replay.
 */
export const DEFAULT_WRITE_BUFFER_BYTES = 16 * 1024 * 1024;

export interface LevelStorageOptions {
  /** LevelDB's block cache, in bytes (LevelDB's default is 8 MiB). */
  readonly cacheSizeBytes?: number;
  /** LevelDB's write buffer, in bytes (default DEFAULT_WRITE_BUFFER_BYTES). */
  readonly writeBufferBytes?: number;
  /** How many of the most recent revisions keep their watch history (default 10,000; at least 1). */
  readonly historyRetention?: number;
  /** The size of a write-ahead log segment file (default WAL_SEGMENT_BYTES; tests use small ones). */
  readonly walSegmentBytes?: number;
  /** Bounds of the in-memory read cache in front of LevelDB (default DEFAULT_READ_CACHE). */
  readonly readCache?: ReadCacheLimits;
  /**
   * How long the state machine's applied writes may wait to be handed to LevelDB, gathering the
   * writes of later Readies into the same batch (default 0: each Ready's batch is handed over at
   * once). See #land.
   */
  readonly landDelayMs?: number;
}

export interface LeaseInfo {
  readonly id: number;
  readonly ttlSeconds: number;
}

export interface HistoryOptions {
  /** The first revision wanted (0 reads as 1: from the start of history). */
  readonly fromRevision: number;
  /** The key to watch, or with `prefix` the prefix of the keys to watch ('' for every key). */
  readonly key: string;
  readonly prefix: boolean;
  /** Stop once at least this many events (1..MAX_HISTORY_LIMIT) are in the page. */
  readonly limit: number;
}

export interface HistoryPage {
  /**
   * The matching events with modRevision >= fromRevision, in revision order (events of one
   * revision in the order they were made). A revision is never split across pages, so a page may
   * hold more than `limit` events; values are views, not copies.
   */
  readonly events: WatchEvent[];
  /** True when matching events follow the page's last one: ask again from its modRevision + 1. */
  readonly more: boolean;
  /** The store revision the page was read at; when `more` is false, every change up to it is in. */
  readonly revision: number;
}

export interface ListOptions {
  /** Only keys starting with these bytes ('' for all keys). */
  readonly prefix: string;
  /** Only keys strictly after this one, in byte order. */
  readonly after?: string;
  /** At most this many items, 1..MAX_LIST_LIMIT. */
  readonly limit: number;
}

export interface ListPage {
  /** The store revision the page was read at. */
  readonly revision: number;
  /** In byte order of the keys' UTF-8. */
  readonly items: KvRecord[];
  /** True when more keys match after the last item. */
  readonly more: boolean;
}

type Db = Level<Buffer, Buffer>;
type Sublevel<K> = ReturnType<typeof openSublevel<K>>;
/**
 * A value encoded only when LevelDB takes the batch. The binding copies every value before the
 * call returns, so these are written into one buffer kept from batch to batch. A key's record and
 * its history record each hold a copy of the value; allocating both per write fed the external
 * memory that drives V8's full collections (with 64 KiB values a follower ran a third fewer).
 */
interface LateValue {
  readonly byteLength: number;
  /** Writes the value into `target`, which is byteLength long. */
  writeInto(target: Buffer): void;
}
/** Keys are Buffers (log, kv) or strings (meta); each op names its sublevel, which encodes it. */
type BatchOps = BatchOperation<Db, Buffer | string, Buffer | LateValue>[];

/** Applied writes gathered for one LevelDB batch (LevelStorage#land). */
interface Gathering {
  readonly ops: BatchOps;
  /** Each Ready's writes, in order, to drop from the unlanded state once the batch lands. */
  readonly applied: { readonly batch: number; readonly outcome: ApplyOutcome }[];
  sync: boolean;
  /** When a synced batch was asked for (performance.now()). */
  at: number;
  readonly landed: Promise<void>;
  readonly settle: (error?: unknown) => void;
  timer: NodeJS.Timeout | null;
}

/** What an apply reads before it runs (runApply's StoredState, less the lease count). */
interface ApplyReads {
  readonly keys: Map<string, KeyWrite | null>;
  readonly leases: ReadonlyMap<number, LeaseRecord | null>;
  readonly leaseKeys: ReadonlyMap<number, readonly string[]>;
}

/** A Ready's apply, worked out: the results, the LevelDB operations, the boundary, the new counters. */
interface PreparedApply {
  readonly outcome: ApplyOutcome;
  readonly ops: BatchOps;
  readonly snapshot: SnapshotMeta;
  readonly applied: AppliedState;
}
/** An operation as the LevelDB binding takes it: prefixed key, encoded value. */
type RawOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };
/** classic-level's implementation of batch, below abstract-level's checks and encodings. */
interface RawBatchDb {
  _batch?(ops: RawOp[], options: { sync: boolean }): Promise<void>;
}
interface PrefixingSublevel {
  prefixKey(key: Buffer, format: 'buffer', local: boolean): Buffer;
}
type DbSnapshot = ReturnType<Db['snapshot']>;
/** classic-level's manual compaction (sublevel key ranges are `!name!` to `!name"`). */
interface RangeCompaction {
  compactRange(start: Buffer, end: Buffer): Promise<void>;
}

/** The Raft-side state persist needs between Readies (the log itself stays on disk). */
interface LogState {
  readonly hardState: HardState;
  readonly snapshot: SnapshotMeta;
  readonly lastIndex: number;
}

function openSublevel<K>(db: Db, name: string, keyEncoding: 'buffer' | 'utf8') {
  return db.sublevel<K, Buffer>(name, { keyEncoding, valueEncoding: 'buffer' });
}

/** One generation of the state machine's sublevels (see the file comment). */
interface StateLevels {
  readonly generation: number;
  readonly kv: Sublevel<Buffer>;
  readonly leases: Sublevel<Buffer>;
  readonly leaseKeys: Sublevel<Buffer>;
  readonly history: Sublevel<Buffer>;
  /** Reads without a LevelDB snapshot in flight: the generation is not cleared until they end. */
  pinned: number;
  onUnpinned: (() => void) | null;
}

/** Which sublevel of a generation holds each kind of image record. */
const IMAGE_SUBLEVEL: Record<ImageRecordKind, 'kv' | 'leases' | 'leaseKeys' | 'history'> = {
  kv: 'kv',
  lease: 'leases',
  leaseKey: 'leaseKeys',
  history: 'history',
};

/**
 * A member's durable state. Lifecycle: `open`, then `load` (or `bootstrap` when load returns
 * null; or `restoreImage` instead of both, for a new data dir made from a backup), then any number
 * of `persist` calls, one at a time, with `get`/`list`/`writeImage` at any moment and
 * `installImage`/`compactLog` between two persists, then `close`. The log is not cached in memory
 * here: `load` hands it to the Raft core, which keeps it.
 */
export class LevelStorage {
  readonly #dataDir: string;
  readonly #db: Db;
  readonly #log: Sublevel<Buffer>;
  readonly #meta: Sublevel<string>;
  /** The live generation of the state machine; replaced only by an install. */
  #levels: StateLevels;
  readonly #historyRetention: number;
  readonly #walOptions: WalOptions;
  /** Set by load() or bootstrap(); persist needs it. */
  #state: LogState | null = null;
  #counters: AppliedState = { appliedIndex: 0, revision: 0, compactRevision: 0 };
  /** How many leases exist: counted by load(), then moved by each persist (MAX_LEASES is checked at apply). */
  #leaseCount = 0;
  #persisting = false;
  /** The Raft log and hard state; open from load(), bootstrap() or restoreImage() on. */
  #wal: Wal | null = null;
  /** When the state machine's LevelDB writes were last synced (performance.now()). */
  #stateSyncedAt = 0;
  /** installImage, restoreImage or compactLog in progress (they exclude persist and each other). */
  #busy: string | null = null;
  /** Clearing a retired generation and compacting its key ranges, in the background. */
  #reclaiming: Promise<void> = Promise.resolve();
  #closing = false;
  /** Applied writes LevelDB does not have yet, and the read cache (see recent-state.ts). */
  readonly #recent: RecentState;
  /** The state machine's latest LevelDB batch until it lands; each waits for the one before. */
  #landing: Promise<void> | null = null;
  /** How many batches handed to LevelDB are waiting to land (at most MAX_UNLANDED_BATCHES). */
  #unlandedBatches = 0;
  /** Where #writeBatch encodes late values (see LateValue). */
  #lateValues = Buffer.alloc(0);
  /** Applied writes not handed to LevelDB yet, gathered over up to landDelayMs (see #land). */
  #gathering: Gathering | null = null;
  readonly #landDelayMs: number;
  /** Why a batch failed to land: the state machine is behind its counters, so nothing goes on. */
  #landingFailure: { readonly error: unknown } | null = null;

  private constructor(dataDir: string, db: Db, historyRetention: number, walOptions: WalOptions, readCache: ReadCacheLimits | undefined, landDelayMs: number) {
    this.#dataDir = dataDir;
    this.#landDelayMs = landDelayMs;
    this.#walOptions = walOptions;
    this.#recent = new RecentState(readCache);
    this.#db = db;
    this.#historyRetention = historyRetention;
    this.#log = openSublevel<Buffer>(db, 'log', 'buffer');
    this.#meta = openSublevel<string>(db, 'meta', 'utf8');
    this.#levels = openLevels(db, 0);
  }

  // The live generation's sublevels (persist and load use these; reads pick theirs explicitly).
  get #kv(): Sublevel<Buffer> {
    return this.#levels.kv;
  }

  get #leases(): Sublevel<Buffer> {
    return this.#levels.leases;
  }

  get #leaseKeys(): Sublevel<Buffer> {
    return this.#levels.leaseKeys;
  }

  get #history(): Sublevel<Buffer> {
    return this.#levels.history;
  }

  /** Opens (creating if missing) the database in `dataDir`. Call load() next. */
  static async open(dataDir: string, options: LevelStorageOptions = {}): Promise<LevelStorage> {
    const retention = options.historyRetention ?? DEFAULT_HISTORY_RETENTION;
    if (!Number.isSafeInteger(retention) || retention < 1) {
      throw new InvalidArgumentError(`historyRetention must be a positive integer, got ${retention}`);
    }
    const writeBufferBytes = options.writeBufferBytes ?? DEFAULT_WRITE_BUFFER_BYTES;
    if (!Number.isSafeInteger(writeBufferBytes) || writeBufferBytes < 64 * 1024) {
      throw new InvalidArgumentError(`writeBufferBytes must be an integer of at least 64 KiB, got ${writeBufferBytes}`);
    }
    await mkdir(dataDir, { recursive: true });
    const db: Db = new Level<Buffer, Buffer>(join(dataDir, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open({ writeBufferSize: writeBufferBytes, ...(options.cacheSizeBytes === undefined ? {} : { cacheSize: options.cacheSizeBytes }) });
    const walOptions = options.walSegmentBytes === undefined ? {} : { segmentBytes: options.walSegmentBytes };
    const landDelayMs = options.landDelayMs ?? 0;
    if (!Number.isFinite(landDelayMs) || landDelayMs < 0) throw new InvalidArgumentError(`landDelayMs must be 0 or more, got ${landDelayMs}`);
    return new LevelStorage(dataDir, db, retention, walOptions, options.readCache, landDelayMs);
  }

  /** The last entry applied to the key-value state (0 before load()). */
  get appliedIndex(): number {
    return this.#counters.appliedIndex;
  }

  /** The store revision after appliedIndex (0 for an empty store). */
  get revision(): number {
    return this.#counters.revision;
  }

  /** How many leases exist (at most MAX_LEASES). */
  get leaseCount(): number {
    return this.#leaseCount;
  }

  /**
   * The highest revision whose watch history is no longer kept (0 while none was dropped):
   * readHistory serves revisions after it only.
   */
  get compactRevision(): number {
    return this.#counters.compactRevision;
  }

  /**
   * Reads everything back, verifying each entry's checksum and that the entries are exactly the
   * contiguous run after the snapshot index. Returns null when the directory holds no Raft state
   * yet (a brand-new member: call bootstrap()). Throws CorruptDataError naming the data directory
   * (and the index, for a bad entry) when anything does not decode or fit together.
   */
  async load(): Promise<PersistedState | null> {
    await this.#recoverGenerations();
    const [legacyHardState, snapshotBytes, appliedBytes] = await this.#meta.getMany([HARD_STATE_KEY, SNAPSHOT_KEY, APPLIED_KEY]);
    if (legacyHardState !== undefined) await this.#migrateLegacyLog(legacyHardState, snapshotBytes);
    const { wal, contents } = await this.#openWal();
    if (snapshotBytes === undefined) {
      if (contents.any) throw this.#corrupt('the write-ahead log holds records but the state machine has no snapshot record');
      await this.#assertPristine();
      await wal.dropTornTail();
      return null;
    }
    if (appliedBytes === undefined) throw this.#corrupt('the meta records are incomplete');
    const snapshot = decodeSnapshotMeta(snapshotBytes, this.#failFor('snapshot meta'));
    const applied = decodeApplied(appliedBytes, this.#failFor('applied state'));
    let hardState = contents.hardState;
    // bootstrap() writes the state machine's records first: a crash before its first log write
    // leaves them with no log, which is still the initial state. Anything later is a lost log.
    const unlogged = hardState === null;
    if (hardState === null) {
      if (snapshot.index !== 0 || applied.appliedIndex !== 0) throw this.#corrupt('the write-ahead log (wal/) is missing');
      hardState = INITIAL_HARD_STATE;
    }
    let { entries, after } = contents;
    // Raft's InstallSnapshot rule again, for a crash between an install's switch and its reset
    // record: an entry at the boundary with another term means every entry after it goes.
    const atBoundary = entries[snapshot.index - after - 1];
    const mismatch = snapshot.index > after && atBoundary !== undefined && atBoundary.term !== snapshot.term;
    if (mismatch) {
      entries = [];
      after = snapshot.index;
    }
    if (after < snapshot.index) {
      entries = entries.slice(Math.min(entries.length, snapshot.index - after));
      after = snapshot.index;
    }
    if (after !== snapshot.index) throw this.#corrupt(`log entry ${after + 1} found where ${snapshot.index + 1} belongs`);
    wal.forget(snapshot.index);
    const lastIndex = snapshot.index + entries.length;
    if (applied.appliedIndex < snapshot.index || applied.appliedIndex > lastIndex) {
      throw this.#corrupt(`applied index ${applied.appliedIndex} is outside the log [${snapshot.index}, ${lastIndex}]`);
    }
    await wal.dropTornTail();
    if (unlogged) await wal.append(hardState, []);
    if (mismatch) await wal.reset(snapshot.index, snapshot.term, false);
    // Commit moves without a sync (it is not written on its own); what was applied was committed.
    if (hardState.commit < applied.appliedIndex) hardState = { ...hardState, commit: applied.appliedIndex };
    this.#state = { hardState, snapshot, lastIndex };
    this.#counters = applied;
    this.#leaseCount = await this.#countLeases();
    return { hardState, snapshot, entries, applied: applied.appliedIndex, revision: applied.revision };
  }

  /**
   * A data dir written before the write-ahead log kept its Raft log and hard state in LevelDB:
   * copies them into a new write-ahead log, then deletes them from LevelDB. A crash midway leaves
   * the LevelDB copy, so the next load starts the copy over.
   */
  async #migrateLegacyLog(hardStateBytes: Buffer, snapshotBytes: Buffer | undefined): Promise<void> {
    const hardState = decodeHardState(hardStateBytes, this.#failFor('hard state'));
    if (snapshotBytes === undefined) throw this.#corrupt('the meta records are incomplete');
    const snapshot = decodeSnapshotMeta(snapshotBytes, this.#failFor('snapshot meta'));
    const entries = await this.#loadEntries(snapshot.index);
    await rm(this.#walDir, { recursive: true, force: true });
    const { wal } = await Wal.open(this.#walDir, this.#walOptions);
    try {
      if (snapshot.index > 0) await wal.reset(snapshot.index, snapshot.term, true);
      await wal.append(hardState, entries);
    } finally {
      await wal.close();
    }
    await this.#log.clear();
    await this.#db.batch([{ type: 'del', sublevel: this.#meta, key: HARD_STATE_KEY }], { sync: true });
  }

  /** Opens (replays) the write-ahead log, once. */
  async #openWal(): Promise<{ wal: Wal; contents: WalContents }> {
    assert(this.#wal === null, 'the write-ahead log is open already');
    const opened = await Wal.open(this.#walDir, this.#walOptions);
    this.#wal = opened.wal;
    return opened;
  }

  get #walDir(): string {
    return join(this.#dataDir, 'wal');
  }

  /**
   * A brand-new member's first state: hard state {term 0, no vote, commit 0}, snapshot boundary
   * {index 0, term 0, config}, an empty log and an empty store. Written synced. Fails if the
   * directory already holds state.
   */
  async bootstrap(config: ConfigState): Promise<PersistedState> {
    assert(this.#state === null, 'bootstrap: state already loaded');
    const wal = this.#wal ?? (await this.#openWal()).wal;
    const existing = await this.#meta.get(SNAPSHOT_KEY);
    assert(existing === undefined && wal.lastIndex === 0, `bootstrap: ${this.#dataDir} already holds Raft state`);
    await this.#assertPristine();
    await wal.dropTornTail();
    const hardState: HardState = INITIAL_HARD_STATE;
    const snapshot: SnapshotMeta = { index: 0, term: 0, config };
    const applied: AppliedState = { appliedIndex: 0, revision: 0, compactRevision: 0 };
    await this.#db.batch(
      [
        { type: 'put', sublevel: this.#meta, key: SNAPSHOT_KEY, value: encodeSnapshotMeta(snapshot) },
        { type: 'put', sublevel: this.#meta, key: APPLIED_KEY, value: encodeApplied(applied) },
      ],
      { sync: true },
    );
    await wal.append(hardState, []);
    this.#state = { hardState, snapshot, lastIndex: 0 };
    this.#counters = applied;
    this.#leaseCount = 0;
    return { hardState, snapshot, entries: [], applied: 0, revision: 0 };
  }

  /**
   * Carries out step 1 and the key-value part of step 3 of a Ready (see the file comment):
   *  - `snapshot`: stores the boundary and drops the entries it covers; if the stored entry at its
   *    index has another term, the whole log is dropped (Raft's InstallSnapshot rule). Installing
   *    the key-value image goes through installImage, so a snapshot beyond appliedIndex throws
   *    before anything is written;
   *  - `entries`: logged durably, replacing every stored entry at or after `entries[0].index`;
   *  - `hardState`: logged durably when its term or vote changed (commit alone is not written);
   *  - `committed`: applied to the key-value state (keys, leases, lease index, watch history and
   *    its retention), with appliedIndex and revision, in one LevelDB batch.
   * Returns one result per committed entry, in order, once the log write is done (and the
   * boundary's batch, when there is one). The state machine's batch may land in LevelDB later:
   * until it does, point reads and the next apply see its writes in memory (recent-state.ts), and
   * every other read waits for it. Batches land in the order they were applied. Call it for one
   * Ready at a time; get() and list() may run meanwhile and see the state before or after the
   * batch, never half of it.
   * Throws CorruptDataError if a committed entry is not a known command; the state machine is
   * left as it was (the Ready's log write may be done: it holds only entries Raft gave us).
   */
  async persist(ready: Ready): Promise<ApplyResult[]> {
    const state = this.#state;
    assert(state !== null, 'persist: call load() or bootstrap() first');
    assert(!this.#persisting, 'persist: one Ready at a time');
    assert(this.#busy === null, `persist: ${this.#busy} is in progress`);
    this.#persisting = true;
    try {
      return await this.#persist(state, withoutInstalledSnapshot(state, ready));
    } finally {
      this.#persisting = false;
    }
  }

  /** The key's record, or null if absent. Throws InvalidArgumentError for a key that cannot exist. */
  async get(key: string): Promise<KvRecord | null> {
    validateKey(key);
    const known = this.#recent.lookup(key);
    if (known !== undefined) return known;
    const stored = await this.#pinned((levels) => levels.kv.get(Buffer.from(key, 'utf8')));
    return stored === undefined ? null : decodeRecord(key, stored);
  }

  /**
   * get() without leaving this thread: LevelDB looks the key up in its memtable and block cache
   * (or the OS page cache) right here, with no thread-pool hop and no promise, which was most of
   * what a point read cost. The hot path of the client API. A block LevelDB has not cached is read
   * on this thread too: microseconds from the OS page cache, but a read from the disk itself stalls
   * the event loop for as long as it takes (get() never does).
   *
   * Whole, never mixed: LevelDB makes a batch visible to reads all at once, and nothing else runs
   * during a synchronous call, so the read lands on the generation live at that instant, which is
   * whole (an old generation is cleared only after `#levels` has moved off it, and the one being
   * filled becomes live only with the switch batch). It reads through the root database, which is
   * open for as long as this object is; a sublevel object may still be opening in the background.
   *
   * Applied writes not yet in LevelDB, and records read before, are answered from memory
   * (recent-state.ts); a record read from LevelDB is kept there. The record returned may be
   * shared: never change it.
   */
  getSync(key: string): KvRecord | null {
    const known = this.#recent.lookup(key); // an invalid key is never there
    if (known !== undefined) return known;
    validateKey(key);
    const stored = this.#db.getSync(this.#levels.kv.prefixKey(Buffer.from(key, 'utf8'), 'buffer'));
    if (stored === undefined) return null;
    const record = decodeRecord(key, stored);
    this.#recent.remember(record);
    return record;
  }

  /**
   * A page of keys in byte order, all read at one revision (one LevelDB snapshot), which the page
   * reports. Throws InvalidArgumentError for a bad limit, prefix or `after`.
   */
  async list(options: ListOptions): Promise<ListPage> {
    const range = listRange(options);
    await this.#landed();
    const snapshot = this.#db.snapshot();
    try {
      const { applied, levels } = await this.#viewAt(snapshot);
      const found = await levels.kv.iterator({ ...range.bounds, limit: options.limit, snapshot }).all();
      const items = found.map(([key, value]) => decodeRecord(key.toString('utf8'), value));
      const last = found.at(-1);
      const full = last !== undefined && found.length === options.limit;
      const more = full && (await hasKeyAfter(levels.kv, last[0], range.upper, snapshot));
      return { revision: applied?.revision ?? 0, items, more };
    } finally {
      await snapshot.close();
    }
  }

  /** Every lease, in id order (at most MAX_LEASES): a new leader arms its expiry timers from this. */
  async leases(): Promise<LeaseInfo[]> {
    const fail = this.#failFor('lease');
    await this.#landed();
    const found = await this.#pinned((levels) => levels.leases.iterator().all());
    return found.map(([key, value]) => ({ id: leaseKeyId(key, fail), ...decodeLease(value, fail) }));
  }

  /** A lease and how many keys are attached to it, or null if it does not exist. */
  async lease(id: number): Promise<(LeaseInfo & { keys: number }) | null> {
    if (!Number.isSafeInteger(id) || id < 1) throw new InvalidArgumentError(`A lease id is a positive integer, got ${id}`);
    await this.#landed();
    const snapshot = this.#db.snapshot();
    try {
      const { levels } = await this.#viewAt(snapshot);
      const stored = await levels.leases.get(leaseKey(id), { snapshot });
      if (stored === undefined) return null;
      const { ttlSeconds } = decodeLease(stored, this.#failFor(`lease ${id}`));
      let keys = 0;
      await eachBatch(levels.leaseKeys.keys({ ...leaseKeysRange(id), snapshot }), (batch) => {
        keys += batch.length;
        return true;
      });
      return { id, ttlSeconds, keys };
    } finally {
      await snapshot.close();
    }
  }

  /**
   * A page of watch history read from one LevelDB snapshot (see HistoryPage). Throws
   * CompactedError when revisions from fromRevision on are no longer all kept (fromRevision <=
   * compactRevision), InvalidArgumentError for a bad revision, limit or key.
   */
  async readHistory(options: HistoryOptions): Promise<HistoryPage> {
    const match = historyMatcher(options);
    await this.#landed();
    const snapshot = this.#db.snapshot();
    try {
      const { applied, levels } = await this.#viewAt(snapshot);
      const revision = applied?.revision ?? 0;
      const compactRevision = applied?.compactRevision ?? 0;
      const from = Math.max(options.fromRevision, 1);
      if (from <= compactRevision) throw new CompactedError(options.fromRevision, compactRevision);
      if (from > revision) return { events: [], more: false, revision };
      const events: WatchEvent[] = [];
      const fail = this.#failFor('history');
      let expected = from;
      let more = false;
      const iterator = levels.history.iterator({ gte: historyKey(from), lte: historyKey(revision), snapshot });
      await eachBatch(iterator, (batch) => {
        for (const [key, value] of batch) {
          const at = historyKeyRevision(key, fail);
          if (at !== expected) throw this.#corrupt(`history of revision ${expected} is missing (found ${at})`);
          expected++;
          const found = decodeEvents(value, at, fail, match);
          if (found.length === 0) continue;
          // The page is full: this revision's events belong to the next one.
          if (events.length >= options.limit) {
            more = true;
            return false;
          }
          for (const event of found) events.push(event);
        }
        return true;
      });
      if (!more && expected !== revision + 1) throw this.#corrupt(`history of revisions ${expected}..${revision} is missing`);
      return { events, more, revision };
    } finally {
      await snapshot.close();
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#handOver();
    await this.#landing?.catch(() => undefined);
    await this.#reclaiming;
    await this.#wal?.close();
    this.#wal = null;
    await this.#db.close();
  }

  // ---- images and log compaction ----

  /** Reads and checks an image's magic and header only (fast: the records are not read). */
  static readImageHeader(file: string): Promise<ImageHeader> {
    return readImageHeader(file);
  }

  /** Reads a whole image, checking every block's CRC, the counts and the SHA-256; bounded memory. */
  static verifyImage(file: string): Promise<ImageInfo> {
    return verifyImage(file);
  }

  /**
   * Writes an image of the state machine to `file` (through `file + '.tmp'`, fsynced, renamed),
   * all read from ONE LevelDB snapshot, taken once every batch applied before the call has landed:
   * the applied index, revision and compactRevision, and every record of the state-machine
   * sublevels, as of the same instant. `metaAt(applied)` supplies the
   * Raft boundary for that applied index (its index must equal it). persist() keeps running
   * meanwhile; what it writes after the snapshot is not in the image. Memory stays bounded: one read
   * step (at most 1,024 records or about 1 MiB) and one image block. The LevelDB snapshot keeps
   * overwritten data on disk until the image is written.
   */
  async writeImage(metaAt: (appliedIndex: number) => SnapshotMeta, file: string): Promise<ImageInfo> {
    assert(this.#state !== null, 'writeImage: call load() or bootstrap() first');
    await this.#landed();
    const snapshot = this.#db.snapshot();
    try {
      const { applied, levels } = await this.#viewAt(snapshot);
      assert(applied !== null, 'writeImage: no applied state');
      const meta = metaAt(applied.appliedIndex);
      assert(meta.index === applied.appliedIndex, `writeImage: boundary ${meta.index} for applied index ${applied.appliedIndex}`);
      const writer = await ImageWriter.create(file, { meta, revision: applied.revision, compactRevision: applied.compactRevision });
      // classic-level bounds the bytes each nextv() holds (the type of `level` does not know it).
      const readOptions = { snapshot, highWaterMarkBytes: IMAGE_READ_BYTES };
      try {
        for (const kind of IMAGE_RECORD_KINDS) {
          const iterator = levels[IMAGE_SUBLEVEL[kind]].iterator(readOptions);
          try {
            for (let batch = await iterator.nextv(IMAGE_READ_RECORDS); batch.length > 0; batch = await iterator.nextv(IMAGE_READ_RECORDS)) {
              for (const [key, value] of batch) await writer.add(kind, key, value);
            }
          } finally {
            await iterator.close();
          }
        }
        return await writer.finish();
      } catch (err) {
        await writer.abort();
        throw err;
      }
    } finally {
      await snapshot.close();
    }
  }

  /**
   * Replaces the state machine with the image in `file` (InstallSnapshot), crash-safely (see the
   * file comment). The records go into a new generation in bounded, synced batches, checked as
   * they are read; only once the whole image checked out (every block's CRC, the counts, the
   * SHA-256, each record decodes, history is contiguous) does ONE synced batch switch to it and
   * store: the image's boundary as the snapshot; applied index = boundary index; its revision and
   * compactRevision. Then the write-ahead log drops every entry up to the boundary, keeping the
   * entries after it only if the stored entry at the boundary has the boundary's term (else the
   * whole log goes: Raft's rule), and the hard state's commit is raised to the boundary (term and
   * vote kept). The old generation is then cleared in the background.
   *
   * A bad image throws CorruptDataError and changes nothing; an image not past the applied index
   * throws InvalidArgumentError. Call it between Readies, like persist (never beside persist or
   * compactLog). The next Ready may carry the same boundary: persist then treats it as stored.
   */
  async installImage(file: string): Promise<ImageInfo> {
    return this.#exclusively('installImage', async () => {
      const state = this.#state;
      assert(state !== null, 'installImage: call load() or bootstrap() first');
      const reader = await ImageReader.open(file);
      try {
        const { meta, revision, compactRevision } = reader.header;
        const applied = this.#counters.appliedIndex;
        if (meta.index <= applied) {
          throw new InvalidArgumentError(`Snapshot image ${file} is at index ${meta.index}, not past the applied index ${applied}`);
        }
        const keepLog = this.#snapshotKeepsLog(state, meta);
        // Commit is not written on its own: load() raises it to the applied index.
        const hardState = state.hardState.commit >= meta.index ? state.hardState : { ...state.hardState, commit: meta.index };
        const ops: BatchOps = [];
        const snapshot = this.#snapshotOps(ops, state, meta);
        const counters: AppliedState = { appliedIndex: meta.index, revision, compactRevision };
        ops.push({ type: 'put', sublevel: this.#meta, key: APPLIED_KEY, value: encodeApplied(counters) });
        const info = await this.#installGeneration(reader, false, ops);
        // After the switch: a crash before this record is covered by load() (the same rule).
        await this.#wal!.reset(meta.index, meta.term, keepLog);
        this.#stateSyncedAt = performance.now();
        this.#state = { hardState, snapshot, lastIndex: keepLog ? state.lastIndex : meta.index };
        this.#counters = counters;
        this.#leaseCount = info.counts.lease;
        return info;
      } finally {
        await reader.close();
      }
    });
  }

  /**
   * Makes this empty data directory the start of a NEW cluster holding the image in `file`
   * (`flotilla snapshot restore`), instead of load()/bootstrap(): the state machine from the image;
   * snapshot boundary {image index, image term, `config`}; hard state {term: image term, no vote,
   * commit: image index}; no log entries; applied index = image index. Every founding member
   * restored from the same file and config gets the identical Raft state, so they elect a leader
   * and carry on from the image's revision. A crash midway leaves a marker that load() reports as
   * CorruptDataError (remove the directory and restore again). Throws InvalidArgumentError if the
   * directory holds state, CorruptDataError for a bad image.
   */
  async restoreImage(file: string, config: ConfigState): Promise<ImageInfo> {
    return this.#exclusively('restoreImage', async () => {
      assert(this.#state === null, 'restoreImage: state already loaded');
      await this.#recoverGenerations();
      const wal = this.#wal ?? (await this.#openWal()).wal;
      const held = await this.#meta.getMany([HARD_STATE_KEY, SNAPSHOT_KEY]);
      if (held.some((value) => value !== undefined) || wal.lastIndex !== 0 || wal.hardState.term !== 0) {
        throw new InvalidArgumentError(`${this.#dataDir} already holds Raft state: restore needs an empty data dir`);
      }
      await this.#assertPristine();
      await wal.dropTornTail();
      const reader = await ImageReader.open(file);
      try {
        const { meta: imageMeta, revision, compactRevision } = reader.header;
        const hardState: HardState = { term: imageMeta.term, vote: null, commit: imageMeta.index };
        const snapshot: SnapshotMeta = { index: imageMeta.index, term: imageMeta.term, config };
        const counters: AppliedState = { appliedIndex: imageMeta.index, revision, compactRevision };
        const info = await this.#installGeneration(reader, true, [
          { type: 'put', sublevel: this.#meta, key: SNAPSHOT_KEY, value: encodeSnapshotMeta(snapshot) },
          { type: 'put', sublevel: this.#meta, key: APPLIED_KEY, value: encodeApplied(counters) },
        ]);
        await wal.reset(imageMeta.index, imageMeta.term, false);
        await wal.append(hardState, []);
        this.#state = { hardState, snapshot, lastIndex: imageMeta.index };
        this.#counters = counters;
        this.#leaseCount = info.counts.lease;
        return info;
      } finally {
        await reader.close();
      }
    });
  }

  /**
   * Log compaction: stores `meta` as the snapshot boundary, in a synced batch (which makes every
   * earlier state-machine write durable too), and then deletes the write-ahead log's segments whose
   * entries all lie at or below meta.index. meta.index must be applied (the state machine holds those
   * entries' effects) and the stored entry there must have meta.term. A boundary at or below the
   * current one changes nothing (an install may have moved past it). After it, load() returns
   * `meta` and only the entries after it. Call it between Readies, like persist.
   */
  async compactLog(meta: SnapshotMeta): Promise<void> {
    return this.#exclusively('compactLog', async () => {
      const state = this.#state;
      assert(state !== null, 'compactLog: call load() or bootstrap() first');
      const applied = this.#counters.appliedIndex;
      assert(meta.index <= applied, `compactLog: boundary ${meta.index} is past the applied index ${applied}`);
      if (meta.index <= state.snapshot.index) return;
      const wal = this.#wal!;
      const term = wal.termAt(meta.index);
      assert(term === meta.term, `compactLog: the stored entry at ${meta.index} is not of term ${meta.term} (${term})`);
      // Synced: it makes every state-machine write before it durable too, so the log up to the
      // boundary can go.
      const ops: BatchOps = [];
      const snapshot = this.#snapshotOps(ops, state, meta);
      await this.#writeBatch(ops, true);
      this.#stateSyncedAt = performance.now();
      this.#state = { ...state, snapshot };
      await wal.releaseThrough(meta.index);
    });
  }

  async #exclusively<T>(what: string, task: () => Promise<T>): Promise<T> {
    assert(!this.#persisting && this.#busy === null, `${what}: ${this.#busy ?? 'persist'} is in progress`);
    this.#busy = what;
    try {
      await this.#landed(); // a boundary's synced batch covers every batch before it
      return await task();
    } finally {
      this.#busy = null;
    }
  }

  /**
   * Fills the next generation from `reader` (marker first), then writes `finalOps` with the switch
   * to it in one synced batch and makes it live; the old one is cleared in the background. On any
   * failure before the switch, drops what it wrote and leaves the live state untouched.
   */
  async #installGeneration(reader: ImageReader, restore: boolean, finalOps: BatchOps): Promise<ImageInfo> {
    await this.#reclaiming; // the previous install's old generation is cleared
    const old = this.#levels;
    const next = openLevels(this.#db, old.generation + 1);
    const marker = encodeInstalling({ generation: next.generation, restore });
    await this.#metaOps([{ type: 'put', sublevel: this.#meta, key: INSTALLING_KEY, value: marker }]);
    let info: ImageInfo;
    try {
      await clearLevels(next); // what an earlier failed attempt may have left
      info = await this.#fill(reader, next);
    } catch (err) {
      await clearLevels(next).catch(() => undefined);
      await this.#metaOps([{ type: 'del', sublevel: this.#meta, key: INSTALLING_KEY }]).catch(() => undefined);
      throw err;
    }
    const switchOps: BatchOps = [
      { type: 'put', sublevel: this.#meta, key: GENERATION_KEY, value: encodeGeneration(next.generation) },
      { type: 'del', sublevel: this.#meta, key: INSTALLING_KEY },
      { type: 'put', sublevel: this.#meta, key: RETIRED_KEY, value: encodeGeneration(old.generation) },
    ];
    await this.#db.batch([...finalOps, ...switchOps], { sync: true });
    this.#levels = next;
    this.#recent.clearCache();
    this.#reclaiming = this.#retire(old).catch(() => undefined); // load() finishes it after a crash
    return info;
  }

  /** Writes the image's records into `levels`, one synced batch per image block; returns the checked info. */
  async #fill(reader: ImageReader, levels: StateLevels): Promise<ImageInfo> {
    const check = imageRecordChecker(reader.file, reader.header);
    for (let records = await reader.next(); records !== null; records = await reader.next()) {
      const ops: BatchOps = [];
      for (const record of records) {
        check.record(record);
        ops.push({ type: 'put', sublevel: levels[IMAGE_SUBLEVEL[record.kind]], key: record.key, value: record.value });
      }
      await this.#db.batch(ops, { sync: true });
    }
    check.end();
    const info = reader.info;
    assert(info !== null, 'installImage: no trailer info');
    return info;
  }

  /** Clears a generation that is no longer live once the reads still using it are done. */
  async #retire(old: StateLevels): Promise<void> {
    if (old.pinned > 0) await new Promise<void>((resolve) => (old.onUnpinned = resolve));
    await clearLevels(old);
    await this.#meta.del(RETIRED_KEY); // unsynced: if lost, load() clears an empty generation again
    // Deleted ranges are reclaimed by LevelDB's compactions in time; a whole retired image can be
    // gigabytes, so compact its (never reused) ranges now, in LevelDB's background thread.
    const db = this.#db as unknown as Partial<RangeCompaction>;
    if (typeof db.compactRange !== 'function') return;
    for (const part of STATE_SUBLEVELS) {
      if (this.#closing) return; // LevelDB's own compactions get to it later
      const name = stateSublevelName(part, old.generation);
      await db.compactRange(Buffer.from(`!${name}!`), Buffer.from(`!${name}"`));
    }
  }

  /** A synced batch of meta changes. */
  async #metaOps(ops: BatchOps): Promise<void> {
    await this.#db.batch(ops, { sync: true });
  }

  /**
   * Finishes what a crash interrupted (see the file comment): drops a half-filled generation and
   * clears a retired one. An interrupted restore cannot be finished: that is reported.
   */
  async #recoverGenerations(): Promise<void> {
    const [generationBytes, installingBytes, retiredBytes] = await this.#meta.getMany([GENERATION_KEY, INSTALLING_KEY, RETIRED_KEY]);
    const generation = generationBytes === undefined ? 0 : decodeGeneration(generationBytes, this.#failFor('generation'));
    if (generation !== this.#levels.generation) this.#levels = openLevels(this.#db, generation);
    if (installingBytes !== undefined) {
      const marker = decodeInstalling(installingBytes, this.#failFor('installing marker'));
      if (marker.restore) throw this.#corrupt('a `flotilla snapshot restore` into it was interrupted: remove it and restore again');
      if (marker.generation !== generation + 1) throw this.#corrupt(`installing generation ${marker.generation} beside live ${generation}`);
      await clearLevels(openLevels(this.#db, marker.generation));
      await this.#metaOps([{ type: 'del', sublevel: this.#meta, key: INSTALLING_KEY }]);
    }
    if (retiredBytes !== undefined) {
      const retired = decodeGeneration(retiredBytes, this.#failFor('retired generation'));
      if (retired >= generation) throw this.#corrupt(`retired generation ${retired} is not older than live ${generation}`);
      await clearLevels(openLevels(this.#db, retired));
      await this.#metaOps([{ type: 'del', sublevel: this.#meta, key: RETIRED_KEY }]);
    }
  }

  /** The applied state and the live generation as of a LevelDB snapshot. */
  async #viewAt(snapshot: DbSnapshot): Promise<{ applied: AppliedState | null; levels: StateLevels }> {
    const [appliedBytes, generationBytes] = await this.#meta.getMany([APPLIED_KEY, GENERATION_KEY], { snapshot });
    const applied = appliedBytes === undefined ? null : decodeApplied(appliedBytes, this.#failFor('applied state'));
    const generation = generationBytes === undefined ? 0 : decodeGeneration(generationBytes, this.#failFor('generation'));
    // A snapshot from just before (or after) a switch: that generation is whole at the snapshot.
    return { applied, levels: generation === this.#levels.generation ? this.#levels : openLevels(this.#db, generation) };
  }

  /** A read without a LevelDB snapshot, on the live generation, which is not cleared until it ends. */
  async #pinned<T>(read: (levels: StateLevels) => Promise<T>): Promise<T> {
    const levels = this.#levels;
    levels.pinned++;
    try {
      return await read(levels);
    } finally {
      levels.pinned--;
      const wake = levels.onUnpinned;
      if (levels.pinned === 0 && wake !== null) {
        levels.onUnpinned = null;
        wake();
      }
    }
  }

  // ---- persist ----

  async #persist(state: LogState, ready: Ready): Promise<ApplyResult[]> {
    checkReady(state, this.#counters, ready);
    if (this.#landingFailure !== null) throw this.#landingFailure.error;
    if (this.#unlandedBatches >= MAX_UNLANDED_BATCHES) await this.#landed();
    const wal = this.#wal!;
    const keepLog = this.#snapshotKeepsLog(state, ready.snapshot);
    // The log side: new entries, and the hard state when its term or vote moved (commit alone is
    // never written: load() recovers it from the applied index). One durable write.
    const hs = ready.hardState;
    const logged = wal.hardState;
    const hardState = hs !== null && (hs.term !== logged.term || hs.vote !== logged.vote) ? hs : null;
    const writeLog = async (boundary: SnapshotMeta | null): Promise<void> => {
      if (boundary !== null) await wal.reset(boundary.index, boundary.term, keepLog);
      await wal.append(hardState, ready.entries);
    };
    const lastCommitted = ready.committed.at(-1)?.index ?? 0;
    const firstNew = ready.entries[0]?.index ?? Number.POSITIVE_INFINITY;
    // Entries logged by earlier Readies are durable: the log write need not wait for them to be
    // applied, so it starts first and the apply work below (reads, planning, encoding) overlaps
    // its sync. On a follower, the time from an append to its acknowledgement becomes the longer
    // of the two rather than their sum.
    const logFirst = ready.snapshot === null && lastCommitted < firstNew && lastCommitted <= state.lastIndex;
    const earlyLog = logFirst ? writeLog(null) : null;
    earlyLog?.catch(() => undefined); // awaited below: a failure meanwhile is not an unhandled rejection
    let work: PreparedApply;
    try {
      const prepared = this.#prepareApply(state, ready, keepLog);
      work = prepared instanceof Promise ? await prepared : prepared;
    } catch (err) {
      await earlyLog?.catch(() => undefined); // no write left running behind a failed persist
      throw err;
    }
    const { outcome, ops, snapshot, applied } = work;
    const lastIndex = ready.entries.length > 0 ? ready.entries.at(-1)!.index : keepLog ? state.lastIndex : snapshot.index;
    // The state-machine side, not synced (the log replays it after a crash), except now and then
    // and with a new boundary, which lets the log before it go.
    const now = performance.now();
    const syncState = ready.snapshot !== null || now - this.#stateSyncedAt >= STATE_SYNC_INTERVAL_MS;
    if (ready.snapshot !== null) {
      assert(lastCommitted < firstNew, 'persist: a Ready with a boundary applies only entries logged before it');
      await this.#land(ops, true, now, outcome); // the boundary first: the log's reset record follows a durable snapshot
      await writeLog(snapshot);
    } else if (earlyLog !== null) {
      // The answers need only the log write; the batch lands when LevelDB is done with it.
      void this.#land(ops, syncState, now, outcome);
      await earlyLog;
    } else {
      // Entries this Ready writes are applied only once they are in the log.
      await writeLog(null);
      void this.#land(ops, syncState, now, outcome);
    }
    // Only now, with the log written, do the in-memory counters move.
    this.#state = { hardState: hs ?? state.hardState, snapshot, lastIndex };
    this.#counters = applied;
    this.#leaseCount = outcome.leaseCount;
    return [...outcome.results];
  }

  /**
   * The committed entries' apply, planned and encoded into LevelDB operations, and the new
   * boundary's. Synchronous unless the reads are not (see #readForApply).
   */
  #prepareApply(state: LogState, ready: Ready, keepLog: boolean): PreparedApply | Promise<PreparedApply> {
    const plan = planApply(ready.committed, this.#counters.appliedIndex);
    const stored = this.#readForApply(plan);
    if (stored instanceof Promise) return stored.then((read) => this.#encodeApply(state, ready, keepLog, plan, read));
    return this.#encodeApply(state, ready, keepLog, plan, stored);
  }

  /** Runs the planned apply on what was read and encodes it, with the boundary, as LevelDB operations. */
  #encodeApply(state: LogState, ready: Ready, keepLog: boolean, plan: ApplyPlan, stored: ApplyReads): PreparedApply {
    if (ready.snapshot !== null && !keepLog) {
      // A boundary that does not match our log, below what we applied, contradicts applied history.
      const { index, term } = ready.snapshot;
      const applied = this.#counters.appliedIndex;
      assert(index >= applied, `persist: snapshot ${index} (term ${term}) conflicts with applied index ${applied}`);
    }
    const outcome = runApply(plan, { ...stored, leaseCount: this.#leaseCount }, this.#counters);
    const ops: BatchOps = [];
    const snapshot = this.#snapshotOps(ops, state, ready.snapshot);
    const applied = ready.committed.length > 0 ? this.#applyOps(ops, outcome) : this.#counters;
    return { outcome, ops, snapshot, applied };
  }

  /**
   * Hands a state-machine batch to LevelDB after the one before it, with its writes visible to
   * point reads until it lands (recent-state.ts). A failure is kept: every later persist and read
   * that waits for landing throws it, as the state machine is then behind its counters.
   *
   * With landDelayMs, an unsynced batch is not handed over at once: the writes of the Readies that
   * follow within that time (at most MAX_READIES_PER_BATCH) join it, and LevelDB takes them as one
   * batch. At one write in flight every Ready applies a single entry, and each batch has a fixed
   * cost (the call, LevelDB's own log write, a thread-pool hop): leaving the batches out altogether,
   * as a measurement, saved about a fifth of the cluster's CPU per write. A synced batch, and
   * anything that waits for landing, hands the gathered writes over at once.
   */
  #land(ops: BatchOps, sync: boolean, at: number, outcome: ApplyOutcome): Promise<void> {
    if (ops.length === 0) return Promise.resolve(); // nothing applied (a Ready that only logs)
    const batch = this.#recent.applied(outcome.writes, outcome.leaseWrites);
    const g = (this.#gathering ??= this.#startGathering());
    for (const op of ops) g.ops.push(op);
    g.applied.push({ batch, outcome });
    if (sync) {
      g.sync = true;
      g.at = at;
    }
    if (sync || this.#landDelayMs === 0 || g.applied.length >= MAX_READIES_PER_BATCH) this.#handOver();
    return g.landed;
  }

  #startGathering(): Gathering {
    let settle!: (error?: unknown) => void;
    const landed = new Promise<void>((resolve, reject) => (settle = (error) => (error === undefined ? resolve() : reject(error))));
    landed.catch(() => undefined); // callers that do not wait are told through #landingFailure
    const g: Gathering = { ops: [], applied: [], sync: false, at: 0, landed, settle, timer: null };
    if (this.#landDelayMs > 0) {
      g.timer = setTimeout(() => this.#handOver(), this.#landDelayMs);
      g.timer.unref();
    }
    return g;
  }

  /** Hands the gathered writes, if any, to LevelDB as one batch after the batch before them. */
  #handOver(): void {
    const g = this.#gathering;
    if (g === null) return;
    this.#gathering = null;
    if (g.timer !== null) clearTimeout(g.timer);
    const previous = this.#landing;
    this.#unlandedBatches++;
    const landing = (async () => {
      if (previous !== null) await previous;
      await this.#writeBatch(g.ops, g.sync);
      if (g.sync) this.#stateSyncedAt = g.at;
      for (const { batch, outcome } of g.applied) this.#recent.landed(batch, outcome.writes.keys(), outcome.leaseWrites.keys());
    })();
    this.#landing = landing;
    landing.then(
      () => {
        this.#unlandedBatches--;
        if (this.#landing === landing) this.#landing = null;
        g.settle();
      },
      (error: unknown) => {
        this.#landingFailure ??= { error };
        g.settle(error);
      },
    );
  }

  /** Waits until every applied batch is in LevelDB; throws if one failed to land. */
  async #landed(): Promise<void> {
    this.#handOver();
    if (this.#landing !== null) await this.#landing;
    if (this.#landingFailure !== null) throw this.#landingFailure.error;
  }

  /**
   * The hot path's write: the same atomic batch as db.batch(ops), handed to the LevelDB binding
   * directly with the sublevel prefixes applied here. abstract-level's generic batch clones,
   * validates and re-encodes every operation and was the largest single cost of a put (a fifth
   * of a leader's CPU, a third of a follower's); these keys and values are Buffers already.
   */
  async #writeBatch(ops: BatchOps, sync: boolean): Promise<void> {
    const raw = this.#db as unknown as RawBatchDb;
    if (typeof raw._batch !== 'function' || this.#db.status !== 'open') {
      // abstract-level may hold the operations past the call: each late value gets a buffer of its own.
      const own = ops.map((op) => (op.type === 'put' && isLate(op.value) ? { ...op, value: ownCopy(op.value) } : op));
      await this.#db.batch(own as BatchOperation<Db, Buffer | string, Buffer>[], { sync });
      return;
    }
    let lateBytes = 0;
    for (const op of ops) if (op.type === 'put' && isLate(op.value)) lateBytes += op.value.byteLength;
    const arena = this.#lateValueBuffer(lateBytes);
    let at = 0;
    const encoded: RawOp[] = new Array<RawOp>(ops.length);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      const key = typeof op.key === 'string' ? Buffer.from(op.key, 'utf8') : op.key;
      const sublevel = (op as { sublevel?: PrefixingSublevel }).sublevel;
      const fullKey = sublevel === undefined ? key : sublevel.prefixKey(key, 'buffer', false);
      if (op.type === 'del') {
        encoded[i] = { type: 'del', key: fullKey };
        continue;
      }
      let value = op.value;
      if (isLate(value)) {
        const target = arena.subarray(at, at + value.byteLength);
        value.writeInto(target);
        at += value.byteLength;
        value = target;
      }
      encoded[i] = { type: 'put', key: fullKey, value };
    }
    // The binding copies every key and value before _batch returns (classic-level's batch_do):
    // the buffer is free for the next batch once this call is made.
    await raw._batch(encoded, { sync });
  }

  /** A buffer for a batch's late values: the one kept for it, grown as needed up to LATE_VALUE_BUFFER_MAX. */
  #lateValueBuffer(bytes: number): Buffer {
    if (bytes > LATE_VALUE_BUFFER_MAX) return Buffer.allocUnsafeSlow(bytes);
    if (this.#lateValues.length < bytes) this.#lateValues = Buffer.allocUnsafeSlow(Math.min(LATE_VALUE_BUFFER_MAX, Math.max(bytes, 2 * this.#lateValues.length)));
    return this.#lateValues;
  }

  /**
   * What applying the plan reads: the records of its keys, its leases, and for each lease it
   * revokes the attached keys (from the lease index) and their records. Point reads are
   * synchronous (see #readKeys), so only a plan that revokes a lease, whose index is read with an
   * iterator once every applied batch has landed, waits: the common apply, every Ready of a put,
   * allocates no promise here.
   */
  #readForApply(plan: ApplyPlan): ApplyReads | Promise<ApplyReads> {
    if (plan.revokedLeases.length > 0) return this.#readForRevoke(plan);
    return { keys: this.#readKeys(plan.keys, plan.valueKeys), leases: this.#readLeases(plan.leases), leaseKeys: NO_LEASE_KEYS };
  }

  async #readForRevoke(plan: ApplyPlan): Promise<ApplyReads> {
    await this.#landed(); // the lease index is read from LevelDB
    const keys = this.#readKeys(plan.keys, plan.valueKeys);
    const leases = this.#readLeases(plan.leases);
    const attached = await Promise.all(plan.revokedLeases.map((id) => this.#readLeaseKeys(id)));
    const leaseKeys = new Map(plan.revokedLeases.map((id, i) => [id, attached[i]]));
    const more = [...new Set(attached.flat())].filter((key) => !keys.has(key));
    if (more.length > 0) for (const [key, record] of this.#readKeys(more, NO_KEYS)) keys.set(key, record);
    return { keys, leases, leaseKeys };
  }

  /**
   * The stored records of keys (values as views). A key outside valueKeys whose metadata is kept
   * (recent-state.ts) is not read: its KeyWrite has the metadata and a value that throws if read.
   */
  #readKeys(keys: readonly string[], valueKeys: ReadonlySet<string>): Map<string, KeyWrite | null> {
    const records = new Map<string, KeyWrite | null>();
    if (keys.length === 0) return records;
    // Synchronous point reads: the records are almost always in memory (recent-state.ts), or in
    // LevelDB's memtable or block cache, and a read through the thread pool cost a wake-up of the
    // event loop per applied batch.
    const kv = this.#kv;
    const recent = this.#recent;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      const unlanded = recent.unlandedKey(key);
      if (unlanded !== undefined) {
        records.set(key, unlanded);
        continue;
      }
      const needsValue = valueKeys.has(key);
      const kept = needsValue ? undefined : recent.landedMeta(key);
      if (kept !== undefined) {
        records.set(key, metaOnly(key, kept));
        continue;
      }
      const value = kv.getSync(Buffer.from(key, 'utf8'));
      if (value === undefined) {
        records.set(key, null);
        continue;
      }
      const { key: _key, value: bytes, ...meta } = decodeRecord(key, value);
      records.set(key, { meta, value: bytes });
      recent.rememberMeta(key, meta);
    }
    return records;
  }

  #readLeases(ids: readonly number[]): Map<number, LeaseRecord | null> {
    const leases = new Map<number, LeaseRecord | null>();
    if (ids.length === 0) return leases;
    const leasesLevel = this.#leases;
    for (let i = 0; i < ids.length; i++) {
      const unlanded = this.#recent.unlandedLease(ids[i]);
      if (unlanded !== undefined) {
        leases.set(ids[i], unlanded);
        continue;
      }
      const value = leasesLevel.getSync(leaseKey(ids[i]));
      leases.set(ids[i], value === undefined ? null : decodeLease(value, this.#failFor(`lease ${ids[i]}`)));
    }
    return leases;
  }

  /** The keys the lease index says are attached to a lease, in byte order. */
  async #readLeaseKeys(id: number): Promise<string[]> {
    const found = await this.#leaseKeys.keys(leaseKeysRange(id)).all();
    const fail = this.#failFor(`lease index of lease ${id}`);
    return found.map((key) => leaseKeysKeyName(key, fail));
  }

  /** Raft's InstallSnapshot rule: keep the entries after the boundary only if the log matches it. */
  #snapshotKeepsLog(state: LogState, snapshot: SnapshotMeta | null): boolean {
    if (snapshot === null) return true;
    if (snapshot.index > state.lastIndex || snapshot.index <= state.snapshot.index) return false;
    return this.#wal!.termAt(snapshot.index) === snapshot.term;
  }

  /** Stores a new boundary in LevelDB (the log's entries it covers go from the write-ahead log). */
  #snapshotOps(ops: BatchOps, state: LogState, snapshot: SnapshotMeta | null): SnapshotMeta {
    if (snapshot === null) return state.snapshot;
    ops.push({ type: 'put', sublevel: this.#meta, key: SNAPSHOT_KEY, value: encodeSnapshotMeta(snapshot) });
    return snapshot;
  }

  /** The writes of an applied batch, history retention included; returns the new counters. */
  #applyOps(ops: BatchOps, outcome: ApplyOutcome): AppliedState {
    for (const [key, write] of outcome.writes) {
      const keyBytes = Buffer.from(key, 'utf8');
      if (write === null) ops.push({ type: 'del', sublevel: this.#kv, key: keyBytes });
      else ops.push({ type: 'put', sublevel: this.#kv, key: keyBytes, value: lateRecord(write) });
    }
    for (const { lease, key, attach } of outcome.leaseKeyChanges) {
      const indexKey = leaseKeysKey(lease, key);
      if (attach) ops.push({ type: 'put', sublevel: this.#leaseKeys, key: indexKey, value: EMPTY });
      else ops.push({ type: 'del', sublevel: this.#leaseKeys, key: indexKey });
    }
    for (const [id, lease] of outcome.leaseWrites) {
      if (lease === null) ops.push({ type: 'del', sublevel: this.#leases, key: leaseKey(id) });
      else ops.push({ type: 'put', sublevel: this.#leases, key: leaseKey(id), value: encodeLease(lease) });
    }
    // Retention: keep (compactRevision, revision], the last historyRetention revisions.
    const previous = this.#counters.compactRevision;
    const compactRevision = Math.max(previous, outcome.revision - this.#historyRetention);
    for (let revision = previous + 1; revision <= compactRevision; revision++) {
      ops.push({ type: 'del', sublevel: this.#history, key: historyKey(revision) });
    }
    for (const { revision, events } of outcome.history) {
      if (revision <= compactRevision) continue; // already out of the window
      ops.push({ type: 'put', sublevel: this.#history, key: historyKey(revision), value: lateEvents(events) });
    }
    const applied: AppliedState = { appliedIndex: outcome.appliedIndex, revision: outcome.revision, compactRevision };
    ops.push({ type: 'put', sublevel: this.#meta, key: APPLIED_KEY, value: encodeApplied(applied) });
    return applied;
  }

  // ---- load ----

  /** Reads the whole log, checking checksums and that it runs contiguously from after. */
  async #loadEntries(after: number): Promise<Entry[]> {
    const entries: Entry[] = [];
    const fail = this.#failFor('log');
    const iterator = this.#log.iterator();
    try {
      for (;;) {
        const batch = await iterator.nextv(LOAD_BATCH_ENTRIES);
        if (batch.length === 0) return entries;
        for (const [key, value] of batch) {
          const entry = decodeLogEntry(key, value, fail);
          const expected = after + 1 + entries.length;
          if (entry.index !== expected) throw this.#corrupt(`log entry ${entry.index} found where ${expected} belongs`);
          entries.push(entry);
        }
      }
    } finally {
      await iterator.close();
    }
  }

  /** A directory without a hard state must hold nothing else either. */
  async #assertPristine(): Promise<void> {
    const found = await Promise.all([
      this.#meta.keys({ limit: 1 }).all(),
      ...[this.#log, this.#kv, this.#leases, this.#leaseKeys, this.#history].map((sublevel) => sublevel.keys({ limit: 1 }).all()),
    ]);
    if (found.some((keys) => keys.length > 0)) throw this.#corrupt('it holds data but no hard state');
  }

  async #countLeases(): Promise<number> {
    let count = 0;
    await eachBatch(this.#leases.keys(), (batch) => {
      count += batch.length;
      return true;
    });
    return count;
  }

  #failFor(what: string): Fail {
    return (reason) => this.#corrupt(`${what}: ${reason}`);
  }

  #corrupt(reason: string): CorruptDataError {
    return new CorruptDataError(`Corrupt data in ${this.#dataDir}: ${reason}`);
  }
}

/** Invariants of a Ready against what is stored; a failure is a bug in the caller. */
function checkReady(state: LogState, counters: KvCounters, ready: Ready): void {
  const { snapshot, hardState, entries } = ready;
  if (snapshot !== null) {
    const previous = state.snapshot.index;
    assert(snapshot.index > previous, `persist: snapshot ${snapshot.index} is not past ${previous}`);
    // The image of a snapshot ahead of what we applied would have to be installed with it.
    if (snapshot.index > counters.appliedIndex) {
      throw new Error(
        `Installing a snapshot image through persist is not supported yet: call installImage first ` +
          `(snapshot ${snapshot.index}, applied ${counters.appliedIndex})`,
      );
    }
  }
  if (hardState !== null) {
    const { term, commit } = state.hardState;
    assert(hardState.term >= term, `persist: term ${hardState.term} < ${term}`);
    assert(hardState.commit >= commit, `persist: commit ${hardState.commit} < ${commit}`);
  }
  if (entries.length > 0) {
    // Committed entries are never replaced: that would rewrite applied history.
    const floor = Math.max(state.hardState.commit, counters.appliedIndex);
    const first = entries[0].index;
    assert(first > floor, `persist: entry ${first} would replace committed entries (commit ${floor})`);
  }
  for (let i = 1; i < entries.length; i++) {
    assert(entries[i].index === entries[i - 1].index + 1, `persist: entries not contiguous at ${entries[i].index}`);
  }
}

const EMPTY = Buffer.alloc(0);
/** The largest buffer kept for late values; a batch needing more gets one of its own. */
const LATE_VALUE_BUFFER_MAX = 4 * 1024 * 1024;

const NO_KEYS: ReadonlySet<string> = new Set();
const NO_LEASE_KEYS: ReadonlyMap<number, readonly string[]> = new Map();

/** A key's state for an apply that does not read its value (ApplyPlan.valueKeys). */
function metaOnly(key: string, meta: KeyMeta): KeyWrite {
  return {
    meta,
    get value(): Uint8Array {
      throw new AssertionError(`apply: the value of ${JSON.stringify(key)} was not read (it is not in the plan's valueKeys)`);
    },
  };
}

function lateRecord(write: KeyWrite): LateValue {
  return { byteLength: recordBytes(write.value), writeInto: (target) => encodeRecord(write.meta, write.value, target) };
}

function lateEvents(events: readonly WatchEvent[]): LateValue {
  return { byteLength: eventsBytes(events), writeInto: (target) => encodeEvents(events, target) };
}

function isLate(value: Buffer | LateValue): value is LateValue {
  return !Buffer.isBuffer(value);
}

/** A late value encoded into a buffer of its own (for a batch that may be held past the call). */
function ownCopy(value: LateValue): Buffer {
  const target = Buffer.allocUnsafe(value.byteLength);
  value.writeInto(target);
  return target;
}
const INITIAL_HARD_STATE: HardState = { term: 0, vote: null, commit: 0 };
/** The state machine's LevelDB writes are synced at least this often (the log replays the rest). */
const STATE_SYNC_INTERVAL_MS = 1000;

async function hasKeyAfter(kv: Sublevel<Buffer>, key: Buffer, upper: Buffer | undefined, snapshot: DbSnapshot): Promise<boolean> {
  const bounds = upper === undefined ? { gt: key } : { gt: key, lt: upper };
  const next = await kv.keys({ ...bounds, limit: 1, snapshot }).all();
  return next.length > 0;
}

function openLevels(db: Db, generation: number): StateLevels {
  return {
    generation,
    kv: openSublevel<Buffer>(db, stateSublevelName('kv', generation), 'buffer'),
    leases: openSublevel<Buffer>(db, stateSublevelName('leases', generation), 'buffer'),
    leaseKeys: openSublevel<Buffer>(db, stateSublevelName('lease-keys', generation), 'buffer'),
    history: openSublevel<Buffer>(db, stateSublevelName('history', generation), 'buffer'),
    pinned: 0,
    onUnpinned: null,
  };
}

const STATE_SUBLEVELS = ['kv', 'leases', 'lease-keys', 'history'] as const;

/**
 * Checks each record of an image as it is installed: it decodes as what its sublevel holds, no
 * key is past the image's revision, and history runs exactly over (compactRevision, revision].
 */
function imageRecordChecker(file: string, header: ImageHeader): { record(r: ImageRecord): void; end(): void } {
  const fail: Fail = (reason) => new CorruptDataError(`Snapshot image ${file}: ${reason}`);
  const named = <T>(decode: () => T): T => {
    try {
      return decode();
    } catch (err) {
      throw err instanceof CorruptDataError ? fail(err.message) : err;
    }
  };
  let nextHistory = header.compactRevision + 1;
  return {
    record(r) {
      switch (r.kind) {
        case 'kv': {
          const meta = named(() => decodeRecordMeta(r.key.toString('utf8'), r.value));
          if (meta.modRevision > header.revision) throw fail(`a key modified at ${meta.modRevision}, past revision ${header.revision}`);
          return;
        }
        case 'lease':
          leaseKeyId(r.key, fail);
          decodeLease(r.value, fail);
          return;
        case 'leaseKey':
          leaseKeysKeyName(r.key, fail);
          return;
        case 'history': {
          const revision = historyKeyRevision(r.key, fail);
          if (revision !== nextHistory) throw fail(`history of revision ${revision} where ${nextHistory} belongs`);
          nextHistory++;
          return;
        }
      }
    },
    end() {
      if (nextHistory !== header.revision + 1) throw fail(`history of revisions ${nextHistory}..${header.revision} is missing`);
    },
  };
}

async function clearLevels(levels: StateLevels): Promise<void> {
  await Promise.all([levels.kv.clear(), levels.leases.clear(), levels.leaseKeys.clear(), levels.history.clear()]);
}

/**
 * A Ready whose snapshot is the boundary installImage already stored (the core reports the
 * install through the next Ready): the boundary is done, the rest of the Ready is not.
 */
function withoutInstalledSnapshot(state: LogState, ready: Ready): Ready {
  const s = ready.snapshot;
  if (s === null || s.index !== state.snapshot.index || s.term !== state.snapshot.term) return ready;
  return { ...ready, snapshot: null };
}

/**
 * Hands an iterator's records to `each` in batches of READ_BATCH_RECORDS (bounding the memory of
 * a scan) until it ends or `each` returns false, then closes it.
 */
async function eachBatch<T>(
  iterator: { nextv(size: number): Promise<T[]>; close(): Promise<void> },
  each: (batch: T[]) => boolean,
): Promise<void> {
  try {
    for (;;) {
      const batch = await iterator.nextv(READ_BATCH_RECORDS);
      if (batch.length === 0 || !each(batch)) return;
    }
  } finally {
    await iterator.close();
  }
}

/** Checks readHistory's options; returns the test on an event's key bytes. */
function historyMatcher(options: HistoryOptions): (key: Buffer) => boolean {
  const { fromRevision, key, prefix, limit } = options;
  if (!Number.isSafeInteger(fromRevision) || fromRevision < 0) {
    throw new InvalidArgumentError(`fromRevision must be a non-negative integer, got ${fromRevision}`);
  }
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_HISTORY_LIMIT) {
    throw new InvalidArgumentError(`limit must be an integer from 1 to ${MAX_HISTORY_LIMIT}, got ${limit}`);
  }
  if (!prefix || key !== '') validateKey(key);
  const wanted = Buffer.from(key, 'utf8');
  if (!prefix) return (bytes) => bytes.equals(wanted);
  return (bytes) => bytes.length >= wanted.length && wanted.compare(bytes, 0, wanted.length) === 0;
}

/** LevelDB bounds for a listing: keys with the prefix, strictly after `after`. */
interface ListRange {
  readonly bounds: { gt?: Buffer; gte?: Buffer; lt?: Buffer };
  /** The exclusive upper bound of the prefix; none for the empty prefix. */
  readonly upper: Buffer | undefined;
}

function listRange(options: ListOptions): ListRange {
  const { prefix, after, limit } = options;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw new InvalidArgumentError(`limit must be an integer from 1 to ${MAX_LIST_LIMIT}, got ${limit}`);
  }
  if (prefix !== '') validateKey(prefix);
  if (after !== undefined) validateKey(after);
  const prefixBytes = Buffer.from(prefix, 'utf8');
  const upper = prefixUpperBound(prefixBytes);
  const afterBytes = after === undefined ? undefined : Buffer.from(after, 'utf8');
  const afterInPrefix = afterBytes !== undefined && Buffer.compare(afterBytes, prefixBytes) >= 0;
  const lower = afterInPrefix ? { gt: afterBytes } : { gte: prefixBytes };
  return { bounds: upper === undefined ? lower : { ...lower, lt: upper }, upper };
}

/** The smallest byte string greater than every string starting with prefix (none for ''). */
function prefixUpperBound(prefix: Buffer): Buffer | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] !== 0xff) {
      const upper = Buffer.from(prefix.subarray(0, i + 1));
      upper[i]++;
      return upper;
    }
  }
  return undefined;
}
