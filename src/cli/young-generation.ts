import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';

/**
 * How large `flotilla serve` lets V8's young generation grow: each of its two semi-spaces at
 * most 8 MiB, where V8 itself would go to 16 MiB on this machine.
 *
 * Why: a scavenge stops the member for as long as it takes to copy what is alive in the young
 * generation, and the request in flight waits that long. Under load (64 connections and more) V8
 * grows the semi-spaces to their limit and keeps them there; at one request in flight, the
 * bigger they are, the more long-lived objects (log, metadata, in-flight state) each scavenge
 * finds alive and copies. Measured at one connection after a 64-connection warm-up (three
 * rounds, node --max-semi-space-size=N): wrk's p99 4.62 ms with V8's default, 3.75 ms with 8 MiB,
 * 3.64 ms with 4 MiB; at 256 connections 8 MiB cost 2.6 % of the throughput and 4 MiB 9.5 %.
 *
 * How: V8 takes its semi-space limit only when the heap is set up, so a running process cannot
 * lower it; but it reads the growth factor each time it grows the young generation (doubling by
 * default: 1, 2, 4, 8, 16 MiB). This watches the GC and, once the semi-spaces have reached the
 * cap, sets the factor to 1: they stay there. V8 grows them again only after more than their
 * size (8 MiB) has survived scavenges since the last growth, so the watcher, which runs between
 * two turns of the event loop, has many scavenges' time to act. A single synchronous stretch of
 * work that keeps that much alive could still outrun it; the semi-spaces then stay where V8 put
 * them. It keeps watching: after the member has been idle V8 shrinks the young generation, and
 * the factor goes back to V8's own so that it grows to the cap again. An operator who starts node
 * with --max-semi-space-size or --semi-space-growth-factor (on the command line or in
 * NODE_OPTIONS) keeps their choice.
 */
export const MAX_SEMI_SPACE_BYTES = 8 * 1024 * 1024;

const OWN_FLAGS = /--(max-semi-space-size|semi-space-growth-factor|max_semi_space_size|semi_space_growth_factor)\b/;

/** The size of one semi-space of V8's young generation (half of new_space's reserved size). */
export function semiSpaceBytes(): number {
  const space = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  return space === undefined ? 0 : space.space_size / 2;
}

/** V8's own growth factor for the semi-spaces (its --semi-space-growth-factor default). */
const V8_GROWTH_FACTOR = 2;

/**
 * The growth factor to give V8 when a semi-space is `semiBytes`: V8's own below the cap, 1 at it.
 * Below the cap matters too: when the member has been idle V8 shrinks the young generation, and
 * a factor left at 1 would keep it small for good (measured before this was so: a third to a
 * half of the throughput at 256 connections lost to scavenges of a 1 MiB young generation).
 */
export function growthFactorFor(semiBytes: number, maxBytes: number): number {
  return semiBytes >= maxBytes ? 1 : V8_GROWTH_FACTOR;
}

/**
 * Keeps the young generation's semi-spaces at most `maxBytes` (see MAX_SEMI_SPACE_BYTES) for the
 * life of the process. Returns a function that stops watching; does nothing when node was given
 * its own flags.
 */
export function capYoungGeneration(maxBytes = MAX_SEMI_SPACE_BYTES, nodeFlags = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`): () => void {
  if (OWN_FLAGS.test(nodeFlags)) return () => {};
  let factor = V8_GROWTH_FACTOR;
  const adjust = (): void => {
    const want = growthFactorFor(semiSpaceBytes(), maxBytes);
    if (want === factor) return;
    v8.setFlagsFromString(`--semi-space-growth-factor=${want}`);
    factor = want;
  };
  adjust();
  const observer = new PerformanceObserver(adjust);
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}
