import type { ApplyResult } from '../kv/kv-state.js';
import type { Entry } from '../raft/types.js';
import { LeaderChangedError, OutcomeUnknownError, OverloadedError } from './errors.js';

interface Waiter {
  readonly term: number;
  readonly startedMs: number;
  readonly resolve: (r: ApplyResult) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * Client requests waiting for their entry to be applied, keyed by log index. An entry applied at
 * that index with our term is ours (resolve with its result); with another term, another leader's
 * entry replaced ours, so ours was not applied (reject, safe to retry). No answer by the deadline
 * means the outcome is unknown.
 */
export class ProposalWaiters {
  readonly #byIndex = new Map<number, Waiter>();

  constructor(
    readonly maxPending: number,
    readonly timeoutMs: number,
    readonly onSettled: (ms: number) => void,
  ) {}

  get size(): number {
    return this.#byIndex.size;
  }

  checkRoom(): void {
    if (this.#byIndex.size >= this.maxPending) throw new OverloadedError('pending writes');
  }

  wait(index: number, term: number): Promise<ApplyResult> {
    return new Promise<ApplyResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#byIndex.delete(index);
        reject(new OutcomeUnknownError(`The write was not confirmed within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.#byIndex.set(index, { term, startedMs: performance.now(), resolve, reject, timer });
    });
  }

  /** committed[i] was applied with results[i]. */
  settle(committed: readonly Entry[], results: readonly ApplyResult[]): void {
    if (this.#byIndex.size === 0) return;
    for (let i = 0; i < committed.length; i++) {
      const e = committed[i];
      const w = this.#byIndex.get(e.index);
      if (!w) continue;
      this.#byIndex.delete(e.index);
      clearTimeout(w.timer);
      this.onSettled(performance.now() - w.startedMs);
      if (e.term === w.term) w.resolve(results[i]);
      else w.reject(new LeaderChangedError());
    }
  }

  /** A snapshot jumped past these indexes: we cannot tell what happened to them. */
  failUpTo(index: number, error: () => Error): void {
    for (const [i, w] of this.#byIndex) {
      if (i > index) continue;
      this.#byIndex.delete(i);
      clearTimeout(w.timer);
      w.reject(error());
    }
  }

  failAll(error: () => Error): void {
    this.failUpTo(Number.MAX_SAFE_INTEGER, error);
  }
}
