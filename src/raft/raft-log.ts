import { assert } from '../util/assert.js';
import type { Entry, SnapshotMeta } from './types.js';

/**
 * The core's in-memory view of the log: every entry after the snapshot boundary, plus which of
 * them the runtime has made durable. Compaction (a snapshot) drops the prefix, so memory stays
 * bounded by the snapshot threshold, as etcd's MemoryStorage does.
 */
export class RaftLog {
  /** entries[i] has index snapshot.index + 1 + i. */
  #entries: Entry[];
  #snapshot: SnapshotMeta;
  /** First index not yet known durable; entries from here on go into the next Ready. */
  #unstableFrom: number;
  commit: number;
  applied: number;
  /** Sum of data bytes held, for status and bounds. */
  #bytes = 0;

  constructor(snapshot: SnapshotMeta, entries: readonly Entry[], commit: number, applied: number) {
    this.#snapshot = snapshot;
    this.#entries = [...entries];
    for (let i = 0; i < this.#entries.length; i++) {
      assert(this.#entries[i].index === snapshot.index + 1 + i, `log gap at ${snapshot.index + 1 + i}`);
      this.#bytes += this.#entries[i].data.byteLength;
    }
    this.#unstableFrom = this.lastIndex() + 1;
    this.commit = Math.min(Math.max(commit, snapshot.index), this.lastIndex());
    this.applied = Math.max(Math.min(applied, this.commit), snapshot.index);
  }

  get snapshot(): SnapshotMeta {
    return this.#snapshot;
  }

  firstIndex(): number {
    return this.#snapshot.index + 1;
  }

  lastIndex(): number {
    return this.#snapshot.index + this.#entries.length;
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
    return this.#entries[index - this.#snapshot.index - 1].term;
  }

  entry(index: number): Entry {
    assert(index > this.#snapshot.index && index <= this.lastIndex(), `entry ${index} not in memory`);
    return this.#entries[index - this.#snapshot.index - 1];
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
      const e = this.#entries[i - this.#snapshot.index - 1];
      bytes += e.data.byteLength;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
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
      bytes += this.#entries[i - this.#snapshot.index - 1].data.byteLength;
      if (bytes > maxBytes) return i;
      i--;
    }
    return this.#snapshot.index;
  }

  /** Leader path: append new entries at the end. */
  append(entries: readonly Entry[]): void {
    for (const e of entries) {
      assert(e.index === this.lastIndex() + 1, `append ${e.index} after ${this.lastIndex()}`);
      this.#entries.push(e);
      this.#bytes += e.data.byteLength;
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
    const keep = index - this.#snapshot.index - 1;
    for (let j = keep; j < this.#entries.length; j++) this.#bytes -= this.#entries[j].data.byteLength;
    this.#entries.length = keep;
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
    return this.#entries.slice(this.#unstableFrom - this.#snapshot.index - 1);
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
    this.#snapshot = snapshot;
    this.#entries = [];
    this.#bytes = 0;
    this.#unstableFrom = snapshot.index + 1;
    this.commit = snapshot.index;
    this.applied = snapshot.index;
  }

  /** Drop entries up to and including index; a snapshot now covers them. */
  compact(snapshot: SnapshotMeta): void {
    assert(snapshot.index <= this.applied, `compact ${snapshot.index} beyond applied ${this.applied}`);
    if (snapshot.index <= this.#snapshot.index) return;
    assert(this.term(snapshot.index) === snapshot.term, `compact term mismatch at ${snapshot.index}`);
    const drop = snapshot.index - this.#snapshot.index;
    for (let j = 0; j < drop; j++) this.#bytes -= this.#entries[j].data.byteLength;
    this.#entries = this.#entries.slice(drop);
    this.#snapshot = snapshot;
  }
}
