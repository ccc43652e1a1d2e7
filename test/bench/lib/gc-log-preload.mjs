// Loaded into a member with `node --import` by put1-timeline.mjs: appends every GC pause of this
// process to $FLOTILLA_BENCH_GC_LOG_DIR/gc-<pid>.txt as "<epoch ms start> <ms> <kind>" lines, so
// pauses can be laid beside packet times. Does nothing without that variable.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, PerformanceObserver } from 'node:perf_hooks';

const dir = process.env.FLOTILLA_BENCH_GC_LOG_DIR;
if (dir) {
  const file = join(dir, `gc-${process.pid}.txt`);
  const kinds = {
    [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
    [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak',
  };
  new PerformanceObserver((list) => {
    const lines = list.getEntries().map((e) => `${(performance.timeOrigin + e.startTime).toFixed(3)} ${e.duration.toFixed(3)} ${kinds[e.detail?.kind] ?? 'other'}\n`);
    if (lines.length > 0) appendFileSync(file, lines.join(''));
  }).observe({ entryTypes: ['gc'] });
}
