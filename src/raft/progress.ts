import type { NodeId } from './types.js';

/**
 * What the leader knows of one follower (as etcd's tracker does):
 * - `probe`: we do not know where its log matches ours; send one append at a time and wait.
 * - `replicate`: it matches up to `match`; stream appends optimistically, up to a bounded number in
 *   flight (pipelining), advancing `next` as we send.
 * - `snapshot`: it needs a snapshot; wait for the runtime to report how sending it went.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In probe state: an append is outstanding, so wait for a reply or the next heartbeat. */
  probeSent = false;
  /** Last index of each append in flight (replicate state), oldest first. */
  inflight: number[] = [];
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** The highest read round it acknowledged in the current term. */
  ackedRound = 0;
  /** `match` at the previous heartbeat, to notice a stream that stalled on a lost append. */
  matchAtLastHeartbeat = 0;
  /** Heartbeats in a row without `match` moving while appends are in flight. */
  stallHeartbeats = 0;
  pendingSnapshot = 0;
  /** The highest commit index it was sent that it can take (an append's is capped by its last entry). */
  commitSent = 0;

  constructor(
    readonly id: NodeId,
    next: number,
    public isLearner: boolean,
  ) {
    this.next = next;
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
      this.pendingSnapshot = 0;
    } else {
      this.next = this.match + 1;
    }
    this.state = 'probe';
    this.probeSent = false;
    this.inflight = [];
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.next = this.match + 1;
    this.probeSent = false;
    this.inflight = [];
  }

  becomeSnapshot(index: number): void {
    this.state = 'snapshot';
    this.pendingSnapshot = index;
    this.inflight = [];
  }

  /** Record a successful reply; returns true if it moved `match`. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (index > this.match) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    while (this.inflight.length > 0 && this.inflight[0] <= index) this.inflight.shift();
    return updated;
  }

  isPaused(maxInflight: number): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflight.length >= maxInflight;
      case 'snapshot':
        return true;
    }
  }
}
