/**
 * Everything a member keeps durable, in one LevelDB: the Raft log, the hard state, the snapshot
 * boundary, and the key-value state machine with its applied index and revision.
 *
 * `persist` writes all of a Ready's effects in ONE atomic, optionally fsynced batch: new entries,
 * the hard state, and the application of its committed entries (keys, leases, the lease index,
 * the watch history, appliedIndex, revision).
 * So a crash at any instant leaves either the state before the Ready or the state after it, a
 * restart resumes exactly, and one fsync covers many entries (group commit).
 *
 * Layout (sublevels of the one database under `<dataDir>/db`; encodings in level-format.ts and
 * kv/kv-record.ts):
 *   log  u64 index -> crc32, term, type, data
 *   meta 'hardState' | 'snapshot' | 'applied' -> small binary records
 *   kv   UTF-8 key bytes -> createRevision, modRevision, version, lease, value
 *   leases      u64 lease id -> ttlSeconds
 *   lease-keys  u64 lease id ++ UTF-8 key bytes -> empty: exactly the keys whose lease field is set
 *   history     u64 revision -> the watch events of that revision, values included
 *
 * Watch history retention: the most recent `historyRetention` revisions are kept. Each persist
 * that moves the revision to R deletes, in the same batch, the history of every revision up to
 * R - historyRetention, and records the highest revision dropped (`compactRevision`) in the
 * 'applied' record. So history holds exactly the revisions (compactRevision, revision].
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Level, type BatchOperation } from 'level';
import { validateKey } from '../kv/command.js';
import { CompactedError, CorruptDataError, InvalidArgumentError } from '../kv/errors.js';
import { decodeRecord, encodeRecord, type KvRecord } from '../kv/kv-record.js';
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
import { assert } from '../util/assert.js';
import {
  APPLIED_KEY,
  decodeApplied,
  decodeEvents,
  decodeHardState,
  decodeLease,
  decodeLogEntry,
  decodeSnapshotMeta,
  encodeApplied,
  encodeEvents,
  encodeHardState,
  encodeLease,
  encodeLogEntry,
  encodeSnapshotMeta,
  HARD_STATE_KEY,
  historyKey,
  historyKeyRevision,
  leaseKey,
  leaseKeyId,
  leaseKeysKey,
  leaseKeysKeyName,
  leaseKeysRange,
  logEntryTerm,
  logKey,
  SNAPSHOT_KEY,
  type AppliedState,
  type Fail,
} from './level-format.js';

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

export interface LevelStorageOptions {
  /** LevelDB's block cache, in bytes (LevelDB's default is 8 MiB). */
  readonly cacheSizeBytes?: number;
  /** How many of the most recent revisions keep their watch history (default 10,000; at least 1). */
  readonly historyRetention?: number;
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
/** Keys are Buffers (log, kv) or strings (meta); each op names its sublevel, which encodes it. */
type BatchOps = BatchOperation<Db, Buffer | string, Buffer>[];

/** The Raft-side state persist needs between Readies (the log itself stays on disk). */
interface LogState {
  readonly hardState: HardState;
  readonly snapshot: SnapshotMeta;
  readonly lastIndex: number;
}

function openSublevel<K>(db: Db, name: string, keyEncoding: 'buffer' | 'utf8') {
  return db.sublevel<K, Buffer>(name, { keyEncoding, valueEncoding: 'buffer' });
}

/**
 * A member's durable state. Lifecycle: `open`, then `load` (or `bootstrap` when load returns
 * null), then any number of `persist` calls, one at a time, with `get`/`list` at any moment, then
 * `close`. The log is not cached in memory here: `load` hands it to the Raft core, which keeps it.
 */
export class LevelStorage {
  readonly #dataDir: string;
  readonly #db: Db;
  readonly #log: Sublevel<Buffer>;
  readonly #meta: Sublevel<string>;
  readonly #kv: Sublevel<Buffer>;
  readonly #leases: Sublevel<Buffer>;
  readonly #leaseKeys: Sublevel<Buffer>;
  readonly #history: Sublevel<Buffer>;
  readonly #historyRetention: number;
  /** Set by load() or bootstrap(); persist needs it. */
  #state: LogState | null = null;
  #counters: AppliedState = { appliedIndex: 0, revision: 0, compactRevision: 0 };
  /** How many leases exist: counted by load(), then moved by each persist (MAX_LEASES is checked at apply). */
  #leaseCount = 0;
  #persisting = false;

  private constructor(dataDir: string, db: Db, historyRetention: number) {
    this.#dataDir = dataDir;
    this.#db = db;
    this.#historyRetention = historyRetention;
    this.#log = openSublevel<Buffer>(db, 'log', 'buffer');
    this.#meta = openSublevel<string>(db, 'meta', 'utf8');
    this.#kv = openSublevel<Buffer>(db, 'kv', 'buffer');
    this.#leases = openSublevel<Buffer>(db, 'leases', 'buffer');
    this.#leaseKeys = openSublevel<Buffer>(db, 'lease-keys', 'buffer');
    this.#history = openSublevel<Buffer>(db, 'history', 'buffer');
  }

  /** Opens (creating if missing) the database in `dataDir`. Call load() next. */
  static async open(dataDir: string, options: LevelStorageOptions = {}): Promise<LevelStorage> {
    const retention = options.historyRetention ?? DEFAULT_HISTORY_RETENTION;
    if (!Number.isSafeInteger(retention) || retention < 1) {
      throw new InvalidArgumentError(`historyRetention must be a positive integer, got ${retention}`);
    }
    await mkdir(dataDir, { recursive: true });
    const db: Db = new Level<Buffer, Buffer>(join(dataDir, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open(options.cacheSizeBytes === undefined ? {} : { cacheSize: options.cacheSizeBytes });
    return new LevelStorage(dataDir, db, retention);
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
    const metaKeys = [HARD_STATE_KEY, SNAPSHOT_KEY, APPLIED_KEY];
    const [hardStateBytes, snapshotBytes, appliedBytes] = await this.#meta.getMany(metaKeys);
    if (hardStateBytes === undefined) {
      await this.#assertPristine();
      return null;
    }
    if (snapshotBytes === undefined || appliedBytes === undefined) {
      throw this.#corrupt('the meta records are incomplete');
    }
    const hardState = decodeHardState(hardStateBytes, this.#failFor('hard state'));
    const snapshot = decodeSnapshotMeta(snapshotBytes, this.#failFor('snapshot meta'));
    const applied = decodeApplied(appliedBytes, this.#failFor('applied state'));
    const entries = await this.#loadEntries(snapshot.index);
    const lastIndex = snapshot.index + entries.length;
    if (applied.appliedIndex < snapshot.index || applied.appliedIndex > lastIndex) {
      throw this.#corrupt(`applied index ${applied.appliedIndex} is outside the log [${snapshot.index}, ${lastIndex}]`);
    }
    this.#state = { hardState, snapshot, lastIndex };
    this.#counters = applied;
    this.#leaseCount = await this.#countLeases();
    return { hardState, snapshot, entries, applied: applied.appliedIndex, revision: applied.revision };
  }

  /**
   * A brand-new member's first state: hard state {term 0, no vote, commit 0}, snapshot boundary
   * {index 0, term 0, config}, an empty log and an empty store. Written synced. Fails if the
   * directory already holds state.
   */
  async bootstrap(config: ConfigState): Promise<PersistedState> {
    assert(this.#state === null, 'bootstrap: state already loaded');
    const existing = await this.#meta.get(HARD_STATE_KEY);
    assert(existing === undefined, `bootstrap: ${this.#dataDir} already holds Raft state`);
    await this.#assertPristine();
    const hardState: HardState = { term: 0, vote: null, commit: 0 };
    const snapshot: SnapshotMeta = { index: 0, term: 0, config };
    const applied: AppliedState = { appliedIndex: 0, revision: 0, compactRevision: 0 };
    await this.#db.batch(
      [
        { type: 'put', sublevel: this.#meta, key: HARD_STATE_KEY, value: encodeHardState(hardState) },
        { type: 'put', sublevel: this.#meta, key: SNAPSHOT_KEY, value: encodeSnapshotMeta(snapshot) },
        { type: 'put', sublevel: this.#meta, key: APPLIED_KEY, value: encodeApplied(applied) },
      ],
      { sync: true },
    );
    this.#state = { hardState, snapshot, lastIndex: 0 };
    this.#counters = applied;
    this.#leaseCount = 0;
    return { hardState, snapshot, entries: [], applied: 0, revision: 0 };
  }

  /**
   * Carries out step 1 and the key-value part of step 3 of a Ready, as one atomic batch (fsynced
   * when `ready.mustSync`):
   *  - `snapshot`: stores the boundary and drops the entries it covers; if the stored entry at its
   *    index has another term, the whole log is dropped (Raft's InstallSnapshot rule). Installing
   *    the key-value image is not supported yet, so a snapshot beyond appliedIndex throws before
   *    anything is written;
   *  - `entries`: written after removing every stored entry at or after `entries[0].index`;
   *  - `hardState`, if set;
   *  - `committed`: applied to the key-value state (keys, leases, lease index, watch history and
   *    its retention), with appliedIndex and revision.
   * Returns one result per committed entry, in order. Call it for one Ready at a time; get() and
   * list() may run meanwhile and see the state before or after the batch, never half of it.
   * Throws CorruptDataError, writing nothing, if a committed entry is not a known command.
   */
  async persist(ready: Ready): Promise<ApplyResult[]> {
    const state = this.#state;
    assert(state !== null, 'persist: call load() or bootstrap() first');
    assert(!this.#persisting, 'persist: one Ready at a time');
    this.#persisting = true;
    try {
      return await this.#persist(state, ready);
    } finally {
      this.#persisting = false;
    }
  }

  /** The key's record, or null if absent. Throws InvalidArgumentError for a key that cannot exist. */
  async get(key: string): Promise<KvRecord | null> {
    validateKey(key);
    const stored = await this.#kv.get(Buffer.from(key, 'utf8'));
    return stored === undefined ? null : decodeRecord(key, stored);
  }

  /**
   * A page of keys in byte order, all read at one revision (one LevelDB snapshot), which the page
   * reports. Throws InvalidArgumentError for a bad limit, prefix or `after`.
   */
  async list(options: ListOptions): Promise<ListPage> {
    const range = listRange(options);
    const snapshot = this.#db.snapshot();
    try {
      const appliedBytes = await this.#meta.get(APPLIED_KEY, { snapshot });
      const applied = appliedBytes && decodeApplied(appliedBytes, this.#failFor('applied state'));
      const found = await this.#kv.iterator({ ...range.bounds, limit: options.limit, snapshot }).all();
      const items = found.map(([key, value]) => decodeRecord(key.toString('utf8'), value));
      const last = found.at(-1);
      const full = last !== undefined && found.length === options.limit;
      const more = full && (await this.#hasKeyAfter(last[0], range.upper, snapshot));
      return { revision: applied?.revision ?? 0, items, more };
    } finally {
      await snapshot.close();
    }
  }

  /** Every lease, in id order (at most MAX_LEASES): a new leader arms its expiry timers from this. */
  async leases(): Promise<LeaseInfo[]> {
    const fail = this.#failFor('lease');
    const found = await this.#leases.iterator().all();
    return found.map(([key, value]) => ({ id: leaseKeyId(key, fail), ...decodeLease(value, fail) }));
  }

  /** A lease and how many keys are attached to it, or null if it does not exist. */
  async lease(id: number): Promise<(LeaseInfo & { keys: number }) | null> {
    if (!Number.isSafeInteger(id) || id < 1) throw new InvalidArgumentError(`A lease id is a positive integer, got ${id}`);
    const snapshot = this.#db.snapshot();
    try {
      const stored = await this.#leases.get(leaseKey(id), { snapshot });
      if (stored === undefined) return null;
      const { ttlSeconds } = decodeLease(stored, this.#failFor(`lease ${id}`));
      let keys = 0;
      await eachBatch(this.#leaseKeys.keys({ ...leaseKeysRange(id), snapshot }), (batch) => {
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
    const snapshot = this.#db.snapshot();
    try {
      const appliedBytes = await this.#meta.get(APPLIED_KEY, { snapshot });
      const applied = appliedBytes === undefined ? null : decodeApplied(appliedBytes, this.#failFor('applied state'));
      const revision = applied?.revision ?? 0;
      const compactRevision = applied?.compactRevision ?? 0;
      const from = Math.max(options.fromRevision, 1);
      if (from <= compactRevision) throw new CompactedError(options.fromRevision, compactRevision);
      if (from > revision) return { events: [], more: false, revision };
      const events: WatchEvent[] = [];
      const fail = this.#failFor('history');
      let expected = from;
      let more = false;
      const iterator = this.#history.iterator({ gte: historyKey(from), lte: historyKey(revision), snapshot });
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
    await this.#db.close();
  }

  // ---- persist ----

  async #persist(state: LogState, ready: Ready): Promise<ApplyResult[]> {
    checkReady(state, this.#counters, ready);
    const plan = planApply(ready.committed, this.#counters.appliedIndex);
    // The reads the batch depends on, in parallel: the keys and leases its commands name (and the
    // keys attached to leases it revokes), and the log entry a snapshot boundary must match.
    const [stored, keepLog] = await Promise.all([
      this.#readForApply(plan),
      this.#snapshotKeepsLog(state, ready.snapshot),
    ]);
    if (ready.snapshot !== null && !keepLog) {
      // A boundary that does not match our log, below what we applied, contradicts applied history.
      const { index, term } = ready.snapshot;
      const applied = this.#counters.appliedIndex;
      assert(index >= applied, `persist: snapshot ${index} (term ${term}) conflicts with applied index ${applied}`);
    }
    const outcome = runApply(plan, { ...stored, leaseCount: this.#leaseCount }, this.#counters);
    const ops: BatchOps = [];
    const snapshot = this.#snapshotOps(ops, state, ready.snapshot, keepLog);
    const lastIndex = this.#entryOps(ops, snapshot.index, keepLog ? state.lastIndex : snapshot.index, ready.entries);
    if (ready.hardState !== null) {
      ops.push({ type: 'put', sublevel: this.#meta, key: HARD_STATE_KEY, value: encodeHardState(ready.hardState) });
    }
    const applied = ready.committed.length > 0 ? this.#applyOps(ops, outcome) : this.#counters;
    if (ops.length > 0) await this.#db.batch(ops, { sync: ready.mustSync });
    // Only now, with the batch durable (or at least visible), do the in-memory counters move.
    this.#state = { hardState: ready.hardState ?? state.hardState, snapshot, lastIndex };
    this.#counters = applied;
    this.#leaseCount = outcome.leaseCount;
    return [...outcome.results];
  }

  /**
   * What applying the plan reads: the records of its keys, its leases, and for each lease it
   * revokes the attached keys (from the lease index) and their records.
   */
  async #readForApply(plan: ApplyPlan): Promise<{
    keys: Map<string, KeyWrite | null>;
    leases: Map<number, LeaseRecord | null>;
    leaseKeys: Map<number, string[]>;
  }> {
    const [keys, leases, attached] = await Promise.all([
      this.#readKeys(plan.keys),
      this.#readLeases(plan.leases),
      Promise.all(plan.revokedLeases.map((id) => this.#readLeaseKeys(id))),
    ]);
    const leaseKeys = new Map(plan.revokedLeases.map((id, i) => [id, attached[i]]));
    const more = [...new Set(attached.flat())].filter((key) => !keys.has(key));
    if (more.length > 0) for (const [key, record] of await this.#readKeys(more)) keys.set(key, record);
    return { keys, leases, leaseKeys };
  }

  /** The stored records of keys (values as views), with one getMany. */
  async #readKeys(keys: readonly string[]): Promise<Map<string, KeyWrite | null>> {
    const records = new Map<string, KeyWrite | null>();
    if (keys.length === 0) return records;
    const stored = await this.#kv.getMany(keys.map((key) => Buffer.from(key, 'utf8')));
    for (let i = 0; i < keys.length; i++) {
      const value = stored[i];
      if (value === undefined) {
        records.set(keys[i], null);
        continue;
      }
      const { key: _key, value: bytes, ...meta } = decodeRecord(keys[i], value);
      records.set(keys[i], { meta, value: bytes });
    }
    return records;
  }

  async #readLeases(ids: readonly number[]): Promise<Map<number, LeaseRecord | null>> {
    const leases = new Map<number, LeaseRecord | null>();
    if (ids.length === 0) return leases;
    const stored = await this.#leases.getMany(ids.map(leaseKey));
    for (let i = 0; i < ids.length; i++) {
      const value = stored[i];
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
  async #snapshotKeepsLog(state: LogState, snapshot: SnapshotMeta | null): Promise<boolean> {
    if (snapshot === null) return true;
    if (snapshot.index > state.lastIndex || snapshot.index <= state.snapshot.index) return false;
    const stored = await this.#log.get(logKey(snapshot.index));
    return stored !== undefined && logEntryTerm(stored) === snapshot.term;
  }

  /** Stores a new boundary and deletes the entries it covers (or all of them). */
  #snapshotOps(ops: BatchOps, state: LogState, snapshot: SnapshotMeta | null, keepLog: boolean): SnapshotMeta {
    if (snapshot === null) return state.snapshot;
    ops.push({ type: 'put', sublevel: this.#meta, key: SNAPSHOT_KEY, value: encodeSnapshotMeta(snapshot) });
    const dropTo = keepLog ? snapshot.index : state.lastIndex;
    for (let index = state.snapshot.index + 1; index <= dropTo; index++) {
      ops.push({ type: 'del', sublevel: this.#log, key: logKey(index) });
    }
    return snapshot;
  }

  /**
   * Writes entries over the stored log, which holds (snapshotIndex, lastIndex]: stored entries
   * past the new last one are deleted (the new ones overwrite the rest). Returns the new last index.
   */
  #entryOps(ops: BatchOps, snapshotIndex: number, lastIndex: number, entries: readonly Entry[]): number {
    if (entries.length === 0) return lastIndex;
    const first = entries[0].index;
    assert(
      first > snapshotIndex && first <= lastIndex + 1,
      `persist: entry ${first} does not attach to (${snapshotIndex}, ${lastIndex}]`,
    );
    const newLast = first + entries.length - 1;
    for (let index = newLast + 1; index <= lastIndex; index++) {
      ops.push({ type: 'del', sublevel: this.#log, key: logKey(index) });
    }
    for (const entry of entries) {
      ops.push({ type: 'put', sublevel: this.#log, key: logKey(entry.index), value: encodeLogEntry(entry) });
    }
    return newLast;
  }

  /** The writes of an applied batch, history retention included; returns the new counters. */
  #applyOps(ops: BatchOps, outcome: ApplyOutcome): AppliedState {
    for (const [key, write] of outcome.writes) {
      const keyBytes = Buffer.from(key, 'utf8');
      if (write === null) ops.push({ type: 'del', sublevel: this.#kv, key: keyBytes });
      else ops.push({ type: 'put', sublevel: this.#kv, key: keyBytes, value: encodeRecord(write.meta, write.value) });
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
      ops.push({ type: 'put', sublevel: this.#history, key: historyKey(revision), value: encodeEvents(events) });
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

  async #hasKeyAfter(key: Buffer, upper: Buffer | undefined, snapshot: ReturnType<Db['snapshot']>): Promise<boolean> {
    const bounds = upper === undefined ? { gt: key } : { gt: key, lt: upper };
    const next = await this.#kv.keys({ ...bounds, limit: 1, snapshot }).all();
    return next.length > 0;
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
        `Installing a snapshot image is not supported yet (snapshot ${snapshot.index}, applied ${counters.appliedIndex})`,
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
