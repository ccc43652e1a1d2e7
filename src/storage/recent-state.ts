/**
 * What LevelStorage's point reads see in memory before (or instead of) asking LevelDB:
 *
 *  - **Unlanded writes.** persist() answers once the log write is durable; the state machine's
 *    LevelDB batch (never synced on its own: the log replays it) may still be in LevelDB's hands.
 *    Until it lands, the final state of every key and lease it changes is kept here, tagged with the
 *    batch, so a point read or the next apply sees it. When the batch lands, each entry is dropped
 *    unless a later batch has replaced it.
 *  - **A read cache** of records read from LevelDB, bounded in entries and bytes, dropped
 *    oldest-first. An applied write drops its key from the cache (the next read fetches the new
 *    record), and a generation switch (snapshot install) clears it. A point read from LevelDB
 *    costs a thread-local lookup, a key copy and a fresh buffer; a hit costs a Map lookup.
 *
 *  - **Metadata of landed writes**, for the apply path: a put or delete needs only the metadata
 *    of the key's record (createRevision, version, lease), not its value, which a read from
 *    LevelDB would copy whole (and decompress). When a batch lands, the metadata of each record it
 *    wrote is kept (at most 16,384 keys by default, oldest out first), with the same rules as the
 *    read cache: an applied write drops it, a generation switch clears it.
 *
 * Consistency: a key is never in both states at once for long enough to matter. A read consults
 * the unlanded writes first; a key absent from them has all of its applied writes in LevelDB, so
 * what LevelDB returns for it (and what the cache keeps) is its latest applied state. Only reads
 * that finish synchronously may fill the cache: an asynchronous read could return a record that a
 * write applied meanwhile has replaced.
 */
import type { KeyMeta, KvRecord } from '../kv/kv-record.js';
import type { KeyWrite, LeaseRecord } from '../kv/kv-state.js';

export interface ReadCacheLimits {
  /** The most records kept. */
  readonly entries: number;
  /** The most bytes (keys and values, plus a fixed overhead per record) kept. */
  readonly bytes: number;
  /** A record whose value is larger is not kept at all. */
  readonly valueBytes: number;
  /** The most keys whose metadata is kept for the apply path (default DEFAULT_META_ENTRIES). */
  readonly metaEntries?: number;
}

export const DEFAULT_READ_CACHE: ReadCacheLimits = { entries: 32_768, bytes: 16 * 1024 * 1024, valueBytes: 16 * 1024 };
/** About 2.3 MiB of heap (a key and four numbers each). */
export const DEFAULT_META_ENTRIES = 16_384;

/** A rough per-record cost beyond its key and value bytes (objects, the Map slot). */
const RECORD_OVERHEAD_BYTES = 160;

interface Unlanded<T> {
  /** The batch that wrote it. */
  readonly batch: number;
  readonly state: T;
}

/** What a point read found here: a record, null (known absent), or undefined (ask LevelDB). */
export type Lookup = KvRecord | null | undefined;

export class RecentState {
  readonly #limits: ReadCacheLimits;
  readonly #keys = new Map<string, Unlanded<KeyWrite | null>>();
  readonly #leases = new Map<number, Unlanded<LeaseRecord | null>>();
  readonly #cache = new Map<string, KvRecord>();
  #cacheBytes = 0;
  readonly #metas = new Map<string, KeyMeta>();
  #batches = 0;

  constructor(limits: ReadCacheLimits = DEFAULT_READ_CACHE) {
    this.#limits = limits;
  }

  /** How many keys and leases wait for their batch to land (tests and assertions). */
  get unlanded(): number {
    return this.#keys.size + this.#leases.size;
  }

  /** How many records the read cache holds. */
  get cached(): number {
    return this.#cache.size;
  }

  /** How many keys' metadata is kept for the apply path. */
  get metaCached(): number {
    return this.#metas.size;
  }

  /**
   * Records the final states a batch writes, before it is handed to LevelDB; returns the batch's
   * tag for landed(). The keys it writes leave the read cache.
   */
  applied(keys: ReadonlyMap<string, KeyWrite | null>, leases: ReadonlyMap<number, LeaseRecord | null>): number {
    const batch = ++this.#batches;
    for (const [key, state] of keys) {
      this.#keys.set(key, { batch, state });
      this.#forget(key);
      this.#metas.delete(key);
    }
    for (const [id, state] of leases) this.#leases.set(id, { batch, state });
    return batch;
  }

  /** The batch is in LevelDB: its entries go, except those a later batch replaced. */
  landed(batch: number, keys: Iterable<string>, leases: Iterable<number>): void {
    for (const key of keys) {
      const unlanded = this.#keys.get(key);
      if (unlanded?.batch !== batch) continue;
      this.#keys.delete(key);
      if (unlanded.state !== null) this.#keepMeta(key, unlanded.state.meta);
    }
    for (const id of leases) if (this.#leases.get(id)?.batch === batch) this.#leases.delete(id);
  }

  /** An unlanded key's state for the apply path: a KeyWrite, null (deleted), or undefined. */
  unlandedKey(key: string): KeyWrite | null | undefined {
    return this.#keys.get(key)?.state;
  }

  /**
   * The metadata of a key's latest applied record, when kept here (a landed write, or a read for
   * an apply). Undefined: ask the unlanded writes, then LevelDB.
   */
  landedMeta(key: string): KeyMeta | undefined {
    return this.#metas.get(key);
  }

  /** Keeps the metadata of a record just read synchronously from LevelDB (see remember()). */
  rememberMeta(key: string, meta: KeyMeta): void {
    if (!this.#keys.has(key)) this.#keepMeta(key, meta);
  }

  /** An unlanded lease's state: its record, null (revoked), or undefined. */
  unlandedLease(id: number): LeaseRecord | null | undefined {
    return this.#leases.get(id)?.state;
  }

  /** A point read: the unlanded state first, then the cache. */
  lookup(key: string): Lookup {
    const cached = this.#cache.get(key);
    if (cached !== undefined) return cached; // never both cached and unlanded: applied() drops it
    const unlanded = this.#keys.get(key);
    if (unlanded === undefined) return undefined;
    const state = unlanded.state;
    return state === null ? null : { key, value: state.value, ...state.meta };
  }

  /**
   * Keeps a record just read synchronously from LevelDB (so: the key's latest applied state,
   * as the key was not unlanded). Oldest records go first once a bound is reached.
   */
  remember(record: KvRecord): void {
    const limits = this.#limits;
    const size = record.value.byteLength;
    if (size > limits.valueBytes || limits.entries === 0 || this.#keys.has(record.key)) return;
    const cost = costOf(record);
    this.#forget(record.key);
    while (this.#cache.size > 0 && (this.#cache.size >= limits.entries || this.#cacheBytes + cost > limits.bytes)) {
      this.#forget(this.#cache.keys().next().value as string);
    }
    if (cost > limits.bytes) return;
    this.#cache.set(record.key, record);
    this.#cacheBytes += cost;
  }

  /** Empties the read cache and the kept metadata (a generation switch replaced every record). */
  clearCache(): void {
    this.#cache.clear();
    this.#cacheBytes = 0;
    this.#metas.clear();
  }

  #keepMeta(key: string, meta: KeyMeta): void {
    const limit = this.#limits.metaEntries ?? DEFAULT_META_ENTRIES;
    if (limit === 0) return;
    this.#metas.delete(key); // re-inserted last: the oldest go first
    while (this.#metas.size >= limit) this.#metas.delete(this.#metas.keys().next().value as string);
    this.#metas.set(key, meta);
  }

  #forget(key: string): void {
    const record = this.#cache.get(key);
    if (record === undefined) return;
    this.#cache.delete(key);
    this.#cacheBytes -= costOf(record);
  }
}

function costOf(record: KvRecord): number {
  return record.key.length * 2 + record.value.byteLength + RECORD_OVERHEAD_BYTES;
}
