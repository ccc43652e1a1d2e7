import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * A full, compacting garbage collection on demand, for the rare moments after a burst of
 * short-lived allocation (installing a snapshot image decodes every record of the state machine).
 * V8 sizes its heap by the allocation it has seen: after such a burst it keeps the grown young and
 * old generations committed, tens of MiB of resident memory holding nothing, until its memory
 * reducer notices the process idle, which a member under steady load never is. One collection
 * hands those pages back at once.
 *
 * Node offers no API for it without starting with --expose-gc; setting that flag at run time
 * installs `gc` in contexts created afterwards, so one new context is made to fetch it, and the
 * flag is put back. A process started with --expose-gc uses its own `gc`.
 */

type Collect = () => void;

let collect: Collect | null | undefined;

function collector(): Collect | null {
  if (collect !== undefined) return collect;
  const own = (globalThis as { gc?: unknown }).gc;
  if (typeof own === 'function') return (collect = own as Collect);
  try {
    setFlagsFromString('--expose-gc');
    const fetched: unknown = runInNewContext('gc');
    collect = typeof fetched === 'function' ? (fetched as Collect) : null;
  } catch {
    collect = null;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return collect;
}

export interface MemoryReleased {
  /** V8 heap committed (heapTotal) before the first collection and after the last, in bytes. */
  readonly heapBefore: number;
  readonly heapAfter: number;
  /** Resident set size before the first collection and after the last, in bytes. */
  readonly rssBefore: number;
  readonly rssAfter: number;
  /** Collections run. */
  readonly rounds: number;
  /** How long they paused the thread, in all. */
  readonly ms: number;
}

/**
 * Runs one full garbage collection now (the thread pauses for it: tens of milliseconds for a heap
 * of about a hundred MiB) and says what it gave back; null if this runtime cannot be asked for one.
 */
export function collectGarbage(): MemoryReleased | null {
  const gc = collector();
  if (gc === null) return null;
  const before = process.memoryUsage();
  const started = performance.now();
  gc();
  const ms = performance.now() - started;
  const after = process.memoryUsage();
  return { heapBefore: before.heapTotal, heapAfter: after.heapTotal, rssBefore: before.rss, rssAfter: after.rss, rounds: 1, ms };
}

/** A further collection runs only if the last one gave back at least this much committed heap. */
const WORTH_ANOTHER_BYTES = 4 * 1024 * 1024;
const MAX_ROUNDS = 4;
const ROUND_GAP_MS = 100;

/**
 * Gives the heap back after a burst: one collection now, then, while each gives back a useful
 * amount, a few more ROUND_GAP_MS apart. One is rarely enough: V8 compacts only part of a
 * fragmented old generation per collection (the survivors of a burst are spread thin over its
 * pages), and the pauses are spread out rather than taken in one. `done` gets the totals; nothing
 * happens (and `done` is not called) if this runtime cannot be asked for a collection.
 */
export function releaseMemory(done: (released: MemoryReleased) => void = () => undefined): void {
  const first = collectGarbage();
  if (first === null) return;
  let total = first;
  const again = (): void => {
    const next = collectGarbage()!;
    total = { ...next, heapBefore: total.heapBefore, rssBefore: total.rssBefore, rounds: total.rounds + 1, ms: total.ms + next.ms };
    step(next);
  };
  const step = (last: MemoryReleased): void => {
    if (total.rounds >= MAX_ROUNDS || last.heapBefore - last.heapAfter < WORTH_ANOTHER_BYTES) done(total);
    else setTimeout(again, ROUND_GAP_MS).unref();
  };
  step(first);
}
