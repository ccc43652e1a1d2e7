import type { ReadState } from '../raft/types.js';
import { NoLeaderError, OverloadedError, ReadTimeoutError } from './errors.js';

interface ReadWaiter {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  /** performance.now() past which the read fails with ReadTimeoutError. */
  readonly deadlineMs: number;
  settled: boolean;
}

/** Settled waiters dropped from the front of the deadline queue before it is compacted. */
const COMPACT_AFTER = 1024;

/**
 * Linearizable reads by ReadIndex (§6.4), batched: every read that arrives while the previous
 * round is out joins the next one, so one heartbeat round confirms many reads. A confirmed read
 * still waits until the state machine has applied the read index.
 *
 * Timeouts cost no timer per read: waiters sit in arrival order, which is deadline order (one
 * timeout for all), and a single timer wakes for the oldest unsettled one.
 */
export class ReadBatcher {
  #queued: ReadWaiter[] = [];
  readonly #byContext = new Map<number, ReadWaiter[]>();
  /** Confirmed batches waiting for apply, in increasing index order. */
  #awaitingApply: Array<{ index: number; waiters: ReadWaiter[] }> = [];
  #nextContext = 1;
  #pending = 0;
  /** Every waiter since the last compaction, in deadline order; those before #head are settled. */
  #byDeadline: ReadWaiter[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(
    readonly maxPending: number,
    readonly timeoutMs: number,
  ) {}

  get hasQueued(): boolean {
    return this.#queued.length > 0;
  }

  enqueue(): Promise<void> {
    if (this.#pending >= this.maxPending) return Promise.reject(new OverloadedError('pending reads'));
    this.#pending++;
    return new Promise<void>((resolve, reject) => {
      const w: ReadWaiter = { resolve, reject, deadlineMs: performance.now() + this.timeoutMs, settled: false };
      this.#queued.push(w);
      this.#byDeadline.push(w);
      this.#dropSettled();
      this.#timer ??= setTimeout(() => this.#expire(), this.timeoutMs);
    });
  }

  #resolve(w: ReadWaiter): void {
    if (w.settled) return;
    w.settled = true;
    this.#pending--;
    w.resolve();
  }

  #reject(w: ReadWaiter, e: Error): void {
    if (w.settled) return;
    w.settled = true;
    this.#pending--;
    w.reject(e);
  }

  /** Advance past settled waiters at the front; compact the queue now and then (bounded memory). */
  #dropSettled(): void {
    const q = this.#byDeadline;
    while (this.#head < q.length && q[this.#head].settled) this.#head++;
    if (this.#head === q.length) {
      this.#byDeadline = [];
      this.#head = 0;
    } else if (this.#head >= COMPACT_AFTER && this.#head * 2 >= q.length) {
      this.#byDeadline = q.slice(this.#head);
      this.#head = 0;
    }
  }

  /** The timer: fail every read past its deadline, then sleep until the next deadline. */
  #expire(): void {
    this.#timer = null;
    const now = performance.now();
    const q = this.#byDeadline;
    while (this.#head < q.length && (q[this.#head].settled || q[this.#head].deadlineMs <= now)) {
      const w = q[this.#head++];
      if (!w.settled) this.#reject(w, new ReadTimeoutError(this.timeoutMs));
    }
    this.#dropSettled();
    if (this.#head < this.#byDeadline.length) {
      const wait = Math.max(1, Math.ceil(this.#byDeadline[this.#head].deadlineMs - now));
      this.#timer = setTimeout(() => this.#expire(), wait);
    }
  }

  /** Hand the queued reads to the core as one request; `submit` returns false without a leader. */
  flush(submit: (context: number) => boolean): void {
    if (this.#queued.length === 0) return;
    const batch = this.#queued;
    this.#queued = [];
    const context = this.#nextContext++;
    if (!submit(context)) {
      for (const w of batch) this.#reject(w, new NoLeaderError());
      return;
    }
    this.#byContext.set(context, batch);
  }

  onReadStates(states: readonly ReadState[], applied: number): void {
    for (const s of states) {
      const batch = this.#byContext.get(s.context);
      if (!batch) continue; // timed out long ago, or not ours
      this.#byContext.delete(s.context);
      if (s.index === 0) {
        for (const w of batch) this.#reject(w, new NoLeaderError('Leadership changed while confirming the read; retry'));
      } else if (s.index <= applied) {
        for (const w of batch) this.#resolve(w);
      } else {
        this.#awaitingApply.push({ index: s.index, waiters: batch });
        this.#awaitingApply.sort((a, b) => a.index - b.index);
      }
    }
  }

  onApplied(applied: number): void {
    let n = 0;
    while (n < this.#awaitingApply.length && this.#awaitingApply[n].index <= applied) {
      for (const w of this.#awaitingApply[n].waiters) this.#resolve(w);
      n++;
    }
    if (n > 0) this.#awaitingApply = this.#awaitingApply.slice(n);
  }

  /** Drop bookkeeping of batches whose readers all gave up (bounded memory on a lossy network). */
  prune(): void {
    for (const [ctx, batch] of this.#byContext) if (batch.every((w) => w.settled)) this.#byContext.delete(ctx);
  }

  failAll(error: () => Error): void {
    for (const w of this.#queued) this.#reject(w, error());
    for (const batch of this.#byContext.values()) for (const w of batch) this.#reject(w, error());
    for (const b of this.#awaitingApply) for (const w of b.waiters) this.#reject(w, error());
    this.#queued = [];
    this.#byContext.clear();
    this.#awaitingApply = [];
    this.#byDeadline = [];
    this.#head = 0;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
