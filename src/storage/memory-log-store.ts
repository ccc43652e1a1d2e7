import type { RaftInitialState } from '../raft/raft-core.js';
import type { Ready } from '../raft/ready.js';
import type { ConfigState, Entry, HardState, SnapshotMeta } from '../raft/types.js';
import { decodeConfig } from '../raft/config.js';
import { assert } from '../util/assert.js';

/**
 * An in-memory Raft log store for tests that models a disk the way FoundationDB's
 * AsyncFileNonDurable does: every write lands in the page cache first (visible to reads, lost on a
 * crash) and only `sync()` makes it durable. Writes reach the platter in the order they were
 * issued, like a write-ahead log, so a crash may keep a prefix of the unsynced writes (a torn
 * tail) but never a later write without the earlier ones.
 *
 * It also holds the state machine's applied index and its snapshot image, because the runtime
 * writes those beside the log (one LevelDB in production), under the same sync rules.
 */
export interface StoredState extends RaftInitialState {
  /** The state machine image at `snapshot.index` (empty for the initial, empty snapshot). */
  readonly image: Uint8Array;
}

/** One write as the runtime issues it; applied to the cache at once and to the disk on sync. */
type WriteOp =
  | { readonly kind: 'ready'; readonly snapshot: SnapshotMeta | null; readonly image: Uint8Array | null; readonly entries: readonly Entry[]; readonly hardState: HardState | null }
  | { readonly kind: 'applied'; readonly index: number }
  | { readonly kind: 'compact'; readonly snapshot: SnapshotMeta; readonly image: Uint8Array };

interface DiskState {
  hardState: HardState;
  snapshot: SnapshotMeta;
  image: Uint8Array;
  /** entries[i] has index snapshot.index + 1 + i. */
  entries: Entry[];
  applied: number;
}

/** Unsynced writes held before the store refuses more: a test that never syncs is a bug. */
const UNSYNCED_WRITES_MAX = 100_000;

const EMPTY_IMAGE = new Uint8Array(0);

export class MemoryLogStore {
  /** What survived the last sync: all a crash leaves behind. */
  #durable: DiskState;
  /** What a reader sees now: the durable state plus every unsynced write. */
  #current: DiskState;
  #unsynced: WriteOp[] = [];

  constructor(initial: RaftInitialState, image: Uint8Array = EMPTY_IMAGE) {
    assert(initial.entries.length === 0 || initial.entries[0].index === initial.snapshot.index + 1, 'initial entries must follow the snapshot');
    this.#durable = {
      hardState: initial.hardState,
      snapshot: initial.snapshot,
      image,
      entries: [...initial.entries],
      applied: Math.max(initial.applied, initial.snapshot.index),
    };
    this.#current = cloneDisk(this.#durable);
  }

  /** A member that has never run: no log, no vote, the founding configuration. */
  static fresh(config: ConfigState): MemoryLogStore {
    return new MemoryLogStore({
      hardState: { term: 0, vote: null, commit: 0 },
      snapshot: { index: 0, term: 0, config },
      entries: [],
      applied: 0,
    });
  }

  /**
   * Step 1 of a Ready: the snapshot (with its image, which the runtime received beside the
   * snapshot message), then the entries (replacing any stored suffix), then the hard state. One
   * write; unsynced until `sync()`.
   */
  save(ready: Ready, image: Uint8Array | null = null): void {
    if (ready.snapshot === null && ready.entries.length === 0 && ready.hardState === null) return;
    assert(ready.snapshot === null || image !== null, 'a snapshot is saved with its image');
    this.#write({ kind: 'ready', snapshot: ready.snapshot, image, entries: ready.entries, hardState: ready.hardState });
  }

  /** The state machine applied up to index (written with its data, as one batch). */
  saveApplied(index: number): void {
    this.#write({ kind: 'applied', index });
  }

  /**
   * Fold entries <= index into a snapshot whose image the caller took from the state machine at
   * exactly that index. Synced at once: the runtime writes snapshot files with fsync before it
   * drops log entries, and everything written before must be durable first.
   */
  compact(index: number, image: Uint8Array): SnapshotMeta {
    const cur = this.#current;
    assert(index > cur.snapshot.index, `compact at ${index}: already covered by snapshot ${cur.snapshot.index}`);
    assert(index <= cur.applied, `compact at ${index}: beyond applied ${cur.applied}`);
    const term = termIn(cur, index);
    assert(term !== undefined, `compact at ${index}: no such entry`);
    const snapshot: SnapshotMeta = { index, term, config: configAt(cur, index) };
    this.#write({ kind: 'compact', snapshot, image });
    this.sync();
    return snapshot;
  }

  /** fsync: every write so far becomes durable. */
  sync(): void {
    for (const op of this.#unsynced) applyOp(this.#durable, op);
    this.#unsynced = [];
  }

  /**
   * The process dies. The page cache is lost except, when `keepUnsynced` > 0, that many of the
   * oldest unsynced writes, which happened to reach the disk before the power went.
   */
  crash(keepUnsynced = 0): void {
    const keep = Math.min(Math.max(0, keepUnsynced), this.#unsynced.length);
    for (let i = 0; i < keep; i++) applyOp(this.#durable, this.#unsynced[i]);
    this.#unsynced = [];
    this.#current = cloneDisk(this.#durable);
  }

  /** What a restarting member reads back. */
  load(): StoredState {
    const s = this.#current;
    return {
      hardState: s.hardState,
      snapshot: s.snapshot,
      image: s.image,
      entries: [...s.entries],
      applied: Math.max(s.applied, s.snapshot.index),
    };
  }

  unsyncedWrites(): number {
    return this.#unsynced.length;
  }

  /** The term of the entry at index as a reader sees it now (undefined if compacted or absent). */
  term(index: number): number | undefined {
    return termIn(this.#current, index);
  }

  lastIndex(): number {
    return lastIndexOf(this.#current);
  }

  /** Entries [lo, hi) as a reader sees them now (lo must be after the snapshot). */
  entries(lo: number, hi: number): Entry[] {
    const s = this.#current;
    assert(lo > s.snapshot.index, `entries from ${lo}: compacted into snapshot ${s.snapshot.index}`);
    return s.entries.slice(lo - s.snapshot.index - 1, Math.max(0, hi - s.snapshot.index - 1));
  }

  snapshot(): SnapshotMeta {
    return this.#current.snapshot;
  }

  snapshotImage(): Uint8Array {
    return this.#current.image;
  }

  /** Would a crash now keep the entry (index, term)? True too when a durable snapshot covers it. */
  durablyHolds(index: number, term: number): boolean {
    const d = this.#durable;
    if (index <= d.snapshot.index) return true;
    return termIn(d, index) === term;
  }

  durableHardState(): HardState {
    return this.#durable.hardState;
  }

  #write(op: WriteOp): void {
    assert(this.#unsynced.length < UNSYNCED_WRITES_MAX, 'too many unsynced writes: the caller never syncs');
    applyOp(this.#current, op);
    this.#unsynced.push(op);
  }
}

function applyOp(s: DiskState, op: WriteOp): void {
  switch (op.kind) {
    case 'ready':
      if (op.snapshot !== null && op.image !== null) installSnapshot(s, op.snapshot, op.image);
      if (op.entries.length > 0) appendEntries(s, op.entries);
      if (op.hardState !== null) s.hardState = op.hardState;
      return;
    case 'applied':
      s.applied = op.index;
      return;
    case 'compact':
      compactTo(s, op.snapshot, op.image);
      return;
  }
}

/** A snapshot from the leader replaces the whole log, as the core's own log does. */
function installSnapshot(s: DiskState, snapshot: SnapshotMeta, image: Uint8Array): void {
  s.snapshot = snapshot;
  s.image = image;
  s.entries = [];
  s.applied = snapshot.index;
}

function appendEntries(s: DiskState, entries: readonly Entry[]): void {
  const first = entries[0].index;
  assert(first > s.snapshot.index, `append at ${first}: inside snapshot ${s.snapshot.index}`);
  assert(first <= lastIndexOf(s) + 1, `append at ${first}: gap after ${lastIndexOf(s)}`);
  const keep = first - s.snapshot.index - 1;
  if (s.entries.length > keep) s.entries.length = keep; // a conflicting suffix goes
  let next = first;
  for (const e of entries) {
    assert(e.index === next++, `append: entry ${e.index} out of order`);
    s.entries.push(e);
  }
}

function compactTo(s: DiskState, snapshot: SnapshotMeta, image: Uint8Array): void {
  if (snapshot.index <= s.snapshot.index) return;
  s.entries = s.entries.slice(snapshot.index - s.snapshot.index);
  s.snapshot = snapshot;
  s.image = image;
}

function lastIndexOf(s: DiskState): number {
  return s.snapshot.index + s.entries.length;
}

function termIn(s: DiskState, index: number): number | undefined {
  if (index === s.snapshot.index) return s.snapshot.term;
  if (index < s.snapshot.index || index > lastIndexOf(s)) return undefined;
  return s.entries[index - s.snapshot.index - 1].term;
}

/** The configuration in force at index: the last config entry at or before it, else the snapshot's. */
function configAt(s: DiskState, index: number): ConfigState {
  for (let i = index; i > s.snapshot.index; i--) {
    const e = s.entries[i - s.snapshot.index - 1];
    if (e.type === 'config') return decodeConfig(e.data);
  }
  return s.snapshot.config;
}

function cloneDisk(s: DiskState): DiskState {
  return { hardState: s.hardState, snapshot: s.snapshot, image: s.image, entries: [...s.entries], applied: s.applied };
}
