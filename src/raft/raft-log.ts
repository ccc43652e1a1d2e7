import { assert } from '../util/assert.js';
import type { Entry, SnapshotMeta } from './types.js';

/** Entry data up to this size is copied into a slab; larger data is kept as given. */
const INLINE_MAX_BYTES = 16 * 1024;
/** Slabs are this big; an entry's data never straddles two. */
const SLAB_BYTES = 256 * 1024;
const EMPTY: Uint8Array = new Uint8Array(0);
/** #at of an entry whose data is kept by reference in #held. */
const HELD = -1;

/**
 * The core's in-memory view of the log: every entry after the snapshot boundary, plus which of
 * them the runtime has made durable. Compaction (a snapshot) drops the prefix, so memory stays
 * bounded by the snapshot threshold, as etcd's MemoryStorage does.
 *
 * The entries are kept as columns, not as objects: a term, a type and the place of the data
 * (copied into large append-only slabs) per entry, in arrays of numbers. Entry objects are made
 * when asked for and die young. A log of thousands of Entry objects, each with its own
 * Uint8Array and ArrayBuffer, would survive every young-generation collection, and V8 copies
 * survivors, promotes them and sweeps their buffers one by one: the longer the log, the longer
 * each of those pauses, on the path of whichever request is in flight (docs/architecture.md).
 * Slab bytes are written once and never reused, so a view handed out stays valid after the
 * entry is truncated or compacted away.
 */
export class RaftLog {
  /** Entry i has index snapshot.index + 1 + i; these four columns describe it. */
  #terms: number[] = [];
  /** 1 for a config entry, 0 for a normal one. */
  #configs: number[] = [];
  #lengths: number[] = [];
  /** The data's position in the slabs' byte space, or HELD. */
  #at: number[] = [];
  /** Data larger than INLINE_MAX_BYTES, by entry index. */
  readonly #held = new Map<number, Uint8Array>();
  /** slabs[k] holds positions [(firstSlab + k) * SLAB_BYTES, (firstSlab + k + 1) * SLAB_BYTES). */
  #slabs: Uint8Array[] = [];
  #firstSlab = 0;
  /** The next free position; it only grows. */
  #cursor = 0;
  #snapshot: SnapshotMeta;
  /** First index not yet known durable; entries from here on go into the next Ready. */
  #unstableFrom: number;
  commit: number;
  applied: number;
  /** Sum of data bytes held, for status and bounds. */
  #bytes = 0;

  constructor(snapshot: SnapshotMeta, entries: readonly Entry[], commit: number, applied: number) {
    this.#snapshot = snapshot;
    for (let i = 0; i < entries.length; i++) {
      assert(entries[i].index === snapshot.index + 1 + i, `log gap at ${snapshot.index + 1 + i}`);
      this.#push(entries[i]);
    }
    this.#unstableFrom = this.lastIndex() + 1;
    this.commit = Math.min(Math.max(commit, snapshot.index), this.lastIndex());
    this.applied = Math.max(Math.min(applied, this.commit), snapshot.index);
  }

  /** Adds e at the end: its data copied into a slab, or kept by reference when large. */
  #push(e: Entry): void {
    const n = e.data.byteLength;
    let at = this.#cursor;
    if (n > INLINE_MAX_BYTES) {
      at = HELD;
      this.#held.set(e.index, e.data);
    } else if (n > 0) {
      let id = Math.floor(at / SLAB_BYTES);
      if (at + n > (id + 1) * SLAB_BYTES) at = ++id * SLAB_BYTES;
      if (this.#slabs.length === 0) this.#firstSlab = id;
      while (this.#firstSlab + this.#slabs.length <= id) this.#slabs.push(new Uint8Array(SLAB_BYTES));
      this.#slabs[id - this.#firstSlab].set(e.data, at - id * SLAB_BYTES);
      this.#cursor = at + n;
    }
    this.#terms.push(e.term);
    this.#configs.push(e.type === 'config' ? 1 : 0);
    this.#lengths.push(n);
    this.#at.push(at);
    this.#bytes += n;
  }

  /** The entry at position i (index snapshot.index + 1 + i), as a fresh object. */
  #entryAt(i: number): Entry {
    const index = this.#snapshot.index + 1 + i;
    const n = this.#lengths[i];
    const at = this.#at[i];
    let data: Uint8Array = EMPTY;
    if (at === HELD) data = this.#held.get(index)!;
    else if (n > 0) {
      const id = Math.floor(at / SLAB_BYTES);
      const offset = at - id * SLAB_BYTES;
      data = this.#slabs[id - this.#firstSlab].subarray(offset, offset + n);
    }
    return { index, term: this.#terms[i], type: this.#configs[i] === 1 ? 'config' : 'normal', data };
  }

  get snapshot(): SnapshotMeta {
    return this.#snapshot;
  }

  firstIndex(): number {
    return this.#snapshot.index + 1;
  }

  lastIndex(): number {
    return this.#snapshot.index + this.#terms.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  bytes(): number {
    return this.#bytes;
  }

  /** The term of the entry at index, or undefined when it is compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.#snapshot.index) return this.#snapshot.term;
    if (index < this.#snapshot.index || index > this.lastIndex()) return undefined;
    return this.#terms[index - this.#snapshot.index - 1];
  }

  entry(index: number): Entry {
    assert(index > this.#snapshot.index && index <= this.lastIndex(), `entry ${index} not in memory`);
    return this.#entryAt(index - this.#snapshot.index - 1);
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** §5.4.1: is a log ending at (lastIndex, lastTerm) at least as up to date as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Entries in [lo, hi), at most maxCount of them and maxBytes (but always at least one). */
  slice(lo: number, hi: number, maxCount = Infinity, maxBytes = Infinity): Entry[] {
    assert(lo > this.#snapshot.index, `slice from ${lo} is compacted (snapshot ${this.#snapshot.index})`);
    const end = Math.min(hi, this.lastIndex() + 1, lo + maxCount);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < end; i++) {
      const at = i - this.#snapshot.index - 1;
      bytes += this.#lengths[at];
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(this.#entryAt(at));
    }
    return out;
  }

  /**
   * The highest index i ≤ hi such that the entries (i, hi] hold at most maxBytes of data: compacting
   * at i keeps a tail of at most maxBytes before hi. The snapshot index when the whole log fits.
   */
  indexKeepingTailBytes(hi: number, maxBytes: number): number {
    let bytes = 0;
    let i = Math.min(hi, this.lastIndex());
    while (i > this.#snapshot.index) {
      bytes += this.#lengths[i - this.#snapshot.index - 1];
      if (bytes > maxBytes) return i;
      i--;
    }
    return this.#snapshot.index;
  }

  /** Leader path: append new entries at the end. */
  append(entries: readonly Entry[]): void {
    for (const e of entries) {
      assert(e.index === this.lastIndex() + 1, `append ${e.index} after ${this.lastIndex()}`);
      this.#push(e);
    }
  }

  /**
   * Follower path (§5.3): skip entries we already hold, truncate at the first conflict, append the
   * rest. Returns the index of the last entry of `entries` now in the log.
   */
  merge(entries: readonly Entry[]): number {
    let i = 0;
    while (i < entries.length && entries[i].index <= this.lastIndex()) {
      const e = entries[i];
      if (e.index > this.#snapshot.index && this.term(e.index) !== e.term) {
        assert(e.index > this.commit, `conflict at ${e.index} at or below commit ${this.commit}`);
        this.truncateFrom(e.index);
        break;
      }
      i++;
    }
    this.append(entries.slice(i));
    return entries.length > 0 ? entries[entries.length - 1].index : 0;
  }

  truncateFrom(index: number): void {
    this.#keep(0, index - this.#snapshot.index - 1);
    this.#unstableFrom = Math.min(this.#unstableFrom, index);
  }

  /** The first index of the run of entries with term `term` that contains `index` (fast back-off). */
  firstIndexOfTermAt(index: number): number {
    const term = this.term(index);
    let i = index;
    while (i - 1 > this.#snapshot.index && this.term(i - 1) === term) i--;
    return i;
  }

  /** The last index holding an entry of `term`, or 0 (the leader's side of fast back-off). */
  lastIndexOfTerm(term: number): number {
    for (let i = this.lastIndex(); i > this.#snapshot.index; i--) {
      const t = this.term(i) ?? 0;
      if (t === term) return i;
      if (t < term) return 0;
    }
    return this.#snapshot.term === term ? this.#snapshot.index : 0;
  }

  unstableEntries(): Entry[] {
    if (this.#unstableFrom > this.lastIndex()) return [];
    return this.slice(Math.max(this.#unstableFrom, this.firstIndex()), this.lastIndex() + 1);
  }

  /** The runtime has made entries up to (index, term) durable. Ignored if the log moved on. */
  stableTo(index: number, term: number): void {
    if (this.term(index) === term && index >= this.#unstableFrom) this.#unstableFrom = index + 1;
  }

  /** The last index known durable locally. */
  stableIndex(): number {
    return this.#unstableFrom - 1;
  }

  committedToApply(maxCount: number): Entry[] {
    const hi = Math.min(this.commit, this.lastIndex());
    if (hi <= this.applied) return [];
    return this.slice(this.applied + 1, hi + 1, maxCount);
  }

  /** Replace everything with a snapshot received from the leader. */
  restore(snapshot: SnapshotMeta): void {
    this.#keep(0, 0);
    this.#snapshot = snapshot;
    this.#unstableFrom = snapshot.index + 1;
    this.commit = snapshot.index;
    this.applied = snapshot.index;
  }

  /** Drop entries up to and including index; a snapshot now covers them. */
  compact(snapshot: SnapshotMeta): void {
    assert(snapshot.index <= this.applied, `compact ${snapshot.index} beyond applied ${this.applied}`);
    if (snapshot.index <= this.#snapshot.index) return;
    assert(this.term(snapshot.index) === snapshot.term, `compact term mismatch at ${snapshot.index}`);
    this.#keep(snapshot.index - this.#snapshot.index, this.#terms.length);
    this.#snapshot = snapshot;
  }

  /**
   * Keeps the entries at positions [from, to) and lets go of the rest: their bytes, their held
   * data, and the slabs wholly before the first entry still in one (before the cursor's slab when
   * none is). Call it before the snapshot boundary moves: positions count from the current one.
   */
  #keep(from: number, to: number): void {
    for (let i = 0; i < this.#terms.length; i++) {
      if (i >= from && i < to) continue;
      this.#bytes -= this.#lengths[i];
      if (this.#at[i] === HELD) this.#held.delete(this.#snapshot.index + 1 + i);
    }
    this.#terms = this.#terms.slice(from, to);
    this.#configs = this.#configs.slice(from, to);
    this.#lengths = this.#lengths.slice(from, to);
    this.#at = this.#at.slice(from, to);
    let first = this.#cursor;
    for (let i = 0; i < this.#at.length; i++) {
      if (this.#at[i] !== HELD && this.#lengths[i] > 0) {
        first = this.#at[i];
        break;
      }
    }
    const drop = Math.min(this.#slabs.length, Math.floor(first / SLAB_BYTES) - this.#firstSlab);
    if (drop > 0) {
      this.#slabs = this.#slabs.slice(drop);
      this.#firstSlab += drop;
    }
  }
}
