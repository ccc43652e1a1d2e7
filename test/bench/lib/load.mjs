// Filling a flotilla cluster with unique keys by concurrent PUTs (wrk's flotilla-load mode), with
// progress from the leader's applied index and a time budget.
import { sleep } from './proc.mjs';
import { runWrk } from './wrk.mjs';

const n0 = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');

export function formatDuration(s) {
  return s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${s.toFixed(1)} s`;
}

/**
 * Write `target` unique keys (PREFIX<thread>-<n>, 100-byte values by default) on `leader` with
 * wrk, stopping it once the leader has applied them all or the budget is spent.
 * @returns {Promise<{ loaded: number, seconds: number, rate: number, errors: number, finished: boolean }>}
 *   loaded is the number of committed writes (the store revision moved by that much).
 */
export async function loadUniqueKeys({ repo, cluster, leader, target, connections, budgetS, prefix, valueBytes = 100, say, progressEveryS = 10 }) {
  const rev0 = await cluster.revision(leader);
  const applied0 = (await cluster.status(leader))?.appliedIndex ?? 0;
  const t0 = performance.now();
  let wrkChild = null;
  let done = false;
  let finished = false;
  let lastPrint = 0;
  let lastLoaded = -1;
  let stalledSince = performance.now();
  const monitor = (async () => {
    while (!done) {
      await sleep(500);
      const s = await cluster.status(leader);
      const elapsed = (performance.now() - t0) / 1000;
      const loaded = s ? s.appliedIndex - applied0 : lastLoaded;
      if (loaded !== lastLoaded) stalledSince = performance.now();
      lastLoaded = loaded;
      // Done: every key written (or all but a handful, and nothing has moved for 3 s).
      finished = loaded >= target || (loaded >= target - 16 && performance.now() - stalledSince > 3000);
      if (finished || elapsed > budgetS) {
        wrkChild?.kill('SIGINT');
        return;
      }
      if (elapsed - lastPrint >= progressEveryS) {
        lastPrint = elapsed;
        const rate = loaded / elapsed;
        say(`  written ${n0(loaded)} / ${n0(target)} keys (${n0(rate)}/s, about ${formatDuration((target - loaded) / Math.max(rate, 1))} to go)`);
      }
    }
  })();
  const load = await runWrk({
    repo,
    url: leader.clientUrl,
    mode: 'flotilla-load',
    connections,
    seconds: Math.ceil(budgetS + 30),
    valueBytes,
    keys: target,
    prefix,
    onSpawn: (c) => (wrkChild = c),
  });
  done = true;
  await monitor;
  const seconds = (performance.now() - t0) / 1000;
  const rev1 = await cluster.revision(leader);
  const loaded = rev1 - rev0 - 1;
  return { loaded, seconds, rate: loaded / seconds, errors: load.errors, finished: loaded >= target, command: load.command };
}
