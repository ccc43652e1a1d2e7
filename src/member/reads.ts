import type { ReadState } from '../raft/types.js';
import { NoLeaderError, OverloadedError, ReadTimeoutError } from './errors.js';

interface ReadWaiter {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
  settled: boolean;
}

/**
 * Linearizable reads by ReadIndex (§6.4), batched: every read that arrives while the previous
 * round is out joins the next one, so one heartbeat round confirms many reads. A confirmed read
 * still waits until the state machine has applied the read index.
 */
export class ReadBatcher {
  #queued: ReadWaiter[] = [];
  readonly #byContext = new Map<number, ReadWaiter[]>();
  /** Confirmed batches waiting for apply, in increasing index order. */
  #awaitingApply: Array<{ index: number; waiters: ReadWaiter[] }> = [];
  #nextContext = 1;
  #pending = 0;

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
      const w: ReadWaiter = {
        resolve: () => this.#finish(w, () => resolve()),
        reject: (e) => this.#finish(w, () => reject(e)),
        timer: setTimeout(() => w.reject(new ReadTimeoutError(this.timeoutMs)), this.timeoutMs),
        settled: false,
      };
      this.#queued.push(w);
    });
  }

  #finish(w: ReadWaiter, settle: () => void): void {
    if (w.settled) return;
    w.settled = true;
    this.#pending--;
    clearTimeout(w.timer);
    settle();
  }

  /** Hand the queued reads to the core as one request; `submit` returns false without a leader. */
  flush(submit: (context: number) => boolean): void {
    if (this.#queued.length === 0) return;
    const batch = this.#queued;
    this.#queued = [];
    const context = this.#nextContext++;
    if (!submit(context)) {
      for (const w of batch) w.reject(new NoLeaderError());
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
        for (const w of batch) w.reject(new NoLeaderError('Leadership changed while confirming the read; retry'));
      } else if (s.index <= applied) {
        for (const w of batch) w.resolve();
      } else {
        this.#awaitingApply.push({ index: s.index, waiters: batch });
        this.#awaitingApply.sort((a, b) => a.index - b.index);
      }
    }
  }

  onApplied(applied: number): void {
    let n = 0;
    while (n < this.#awaitingApply.length && this.#awaitingApply[n].index <= applied) {
      for (const w of this.#awaitingApply[n].waiters) w.resolve();
      n++;
    }
    if (n > 0) this.#awaitingApply = this.#awaitingApply.slice(n);
  }

  /** Drop bookkeeping of batches whose readers all gave up (bounded memory on a lossy network). */
  prune(): void {
    for (const [ctx, batch] of this.#byContext) if (batch.every((w) => w.settled)) this.#byContext.delete(ctx);
  }

  failAll(error: () => Error): void {
    for (const w of this.#queued) w.reject(error());
    for (const batch of this.#byContext.values()) for (const w of batch) w.reject(error());
    for (const b of this.#awaitingApply) for (const w of b.waiters) w.reject(error());
    this.#queued = [];
    this.#byContext.clear();
    this.#awaitingApply = [];
  }
}
