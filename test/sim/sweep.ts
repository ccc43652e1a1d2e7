/**
 * The long simulation sweep (`make sim-long`): the same seeds and checks as raft-sim.test.ts, over
 * many more seeds, spread over worker threads. Compiled by tsc first (Node 20 cannot run .ts):
 *
 *   npx tsc -p test/sim/tsconfig.build.json && FLOTILLA_SEEDS=100000 node test-results/sim-build/test/sim/sweep.js
 *
 * Env: FLOTILLA_SEEDS, FLOTILLA_SEED_START (as the test), FLOTILLA_SIM_STEPS (steps per seed),
 * FLOTILLA_SIM_WORKERS (threads; default: all cores). Exits 1 if any seed fails, printing each
 * failing seed with its replay command.
 */
import { availableParallelism } from 'node:os';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { chunk, seedsFromEnv } from './seeds.js';
import { DEFAULT_STEPS } from './swarm.js';
import { SimulationFailure, runSeed } from './world.js';

interface Job {
  readonly seeds: number[];
}

interface JobResult {
  readonly done: number;
  readonly failures: string[];
}

/** Seeds per job handed to a worker: small enough to balance the load, big enough to be cheap. */
const JOB_SEEDS = 200;
/** Failures printed in full; the rest only by seed. */
const FAILURES_PRINTED_MAX = 5;

function steps(): number {
  return Number(process.env['FLOTILLA_SIM_STEPS'] ?? DEFAULT_STEPS);
}

function runJob(job: Job): JobResult {
  const failures: string[] = [];
  for (const seed of job.seeds) {
    try {
      runSeed(seed, { steps: steps() });
    } catch (err) {
      if (!(err instanceof SimulationFailure)) throw err;
      failures.push(err.message);
    }
  }
  return { done: job.seeds.length, failures };
}

function workerMain(): void {
  const port = parentPort;
  if (port === null) throw new Error('sweep worker started without a parent port');
  port.on('message', (job: Job | null) => {
    if (job === null) {
      port.close();
      return;
    }
    port.postMessage(runJob(job));
  });
  port.postMessage({ done: 0, failures: [] } satisfies JobResult);
}

async function main(): Promise<void> {
  const seeds = seedsFromEnv({ defaultCount: 100_000 });
  const jobs = chunk(seeds, JOB_SEEDS).map((s) => ({ seeds: s }));
  const workers = Math.max(1, Number(process.env['FLOTILLA_SIM_WORKERS'] ?? availableParallelism()));
  const started = Date.now();
  const failures: string[] = [];
  let done = 0;
  let lastReport = started;
  console.log(`sweep: ${seeds.length} seeds from ${seeds[0]}, ${steps()} steps each, ${workers} workers`);
  await Promise.all(
    Array.from({ length: Math.min(workers, jobs.length) }, () =>
      new Promise<void>((resolve, reject) => {
        const w = new Worker(new URL(import.meta.url), { workerData: { worker: true } });
        w.on('message', (r: JobResult) => {
          done += r.done;
          failures.push(...r.failures);
          if (Date.now() - lastReport > 10_000) {
            lastReport = Date.now();
            console.log(`sweep: ${done}/${seeds.length} seeds, ${failures.length} failed, ${rate(done, started)} seeds/s`);
          }
          w.postMessage(jobs.shift() ?? null);
        });
        w.on('error', reject);
        w.on('exit', () => resolve());
      }),
    ),
  );
  report(seeds.length, failures, started);
}

function rate(done: number, started: number): string {
  return (done / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(0);
}

function report(total: number, failures: string[], started: number): void {
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  for (const f of failures.slice(0, FAILURES_PRINTED_MAX)) console.log(`\n${f}`);
  const seedsFailed = failures.map((f) => /^seed (\d+)/.exec(f)?.[1] ?? '?');
  console.log(`\nsweep: ${total} seeds in ${seconds}s (${rate(total, started)} seeds/s), ${failures.length} failed${failures.length > 0 ? `: ${seedsFailed.join(' ')}` : ''}`);
  if (failures.length > 0) process.exitCode = 1;
}

if (isMainThread) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
} else if ((workerData as { worker?: boolean } | null)?.worker === true) {
  workerMain();
}
