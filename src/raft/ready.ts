import type { Entry, HardState, Message, ReadState, SnapshotMeta, SoftState } from './types.js';

/**
 * One batch of work the core hands the runtime. Carry it out in this order, then call
 * `core.advance(ready)`:
 *  1. persist `snapshot` (if any), then `entries` (replacing any stored entry at or after
 *     `entries[0].index`), then `hardState`, in one write, fsynced when `mustSync`;
 *  2. send `messages` (only now: votes and acknowledgements in them depend on step 1);
 *  3. apply `snapshot` (if any) and then `committed`, in index order;
 *  4. answer each of `readStates` once the state machine has applied its index.
 */
export interface Ready {
  /** Set when role, leader or term changed since the previous Ready. */
  readonly softState: SoftState | null;
  /** Set when term, vote or commit changed since the previous Ready. */
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: SnapshotMeta | null;
  readonly messages: readonly Message[];
  readonly committed: readonly Entry[];
  readonly readStates: readonly ReadState[];
  /** fsync needed: term, vote, entries or snapshot changed (a commit-only change needs none). */
  readonly mustSync: boolean;
}
