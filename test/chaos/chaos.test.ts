/**
 * The chaos suite: real `flotilla serve` processes, concurrent clients, seeded faults, and a
 * linearizability check of everything the clients saw.
 *
 * Short run (part of `make test`, about three minutes): one run per nemesis (kill, pause, partition,
 * membership, snapshot) that must be linearizable, and one that must not: the same workload reading
 * with `?consistency=stale` from followers while members are cut off or paused, which proves the
 * checker catches real staleness.
 *
 * Long run (`make chaos`, i.e. FLOTILLA_CHAOS=long): FLOTILLA_CHAOS_MINUTES (default 10) per run,
 * the runs named by FLOTILLA_CHAOS_NEMESES (default kill,pause,partition,membership,snapshot; also
 * `mixed`: kill, pause and partition in two overlapping fault streams), a summary row per run
 * appended to docs/chaos.md, and the stale-read proof again.
 *
 * A failure prints its seed; `FLOTILLA_SEED=<n> npx vitest run test/chaos` replays the same schedule
 * of faults and choices (the timing of real processes is the machine's, so not always the outcome).
 */
import { rm } from 'node:fs/promises';
import { describe, expect, test } from 'vitest';
import { DEFAULT_TIMING, describeExit, partitionAvailability, type FaultTiming, type NemesisKind } from './nemesis.js';
import { runChaos, summarize, type ChaosResult } from './run-chaos.js';
import { appendChaosDoc } from './chaos-doc.js';

const LONG = process.env['FLOTILLA_CHAOS'] === 'long';
const BASE_SEED = Number(process.env['FLOTILLA_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const REPLAY = `FLOTILLA_SEED=${BASE_SEED} npx vitest run test/chaos`;
const CLIENTS = 5;
const KEYS = 4;
const SHORT_RUN_MS = 25_000;
/**
 * Membership and snapshot faults take seconds each (a member rejoins, or the others compact past
 * it): their short runs leave less quiet time between faults, so 25 s still hold a handful.
 */
const RECONFIGURE_TIMING = { ...DEFAULT_TIMING, quietMs: [300, 1500] } as const;
/** Time around a run: starting members, healing, final reads, checking. */
const RUN_OVERHEAD_MS = 60_000;
const STALE_RUN_MS = 10_000;
const MIN_OK_OPS = 40;
const STALE_ATTEMPTS = 4;
/** `mixed`: every nemesis in one run, in two overlapping streams of faults, coming faster. */
const MIXED_TIMING = { quietMs: [100, 1200], downMs: [200, 2000], pauseMs: [800, 3000], partitionMs: [800, 4000] } as const;

console.log(`chaos: seed ${BASE_SEED}${LONG ? ' (long run)' : ''}; replay with ${REPLAY}`);

function expectLinearizable(result: ChaosResult): void {
  const f = result.figures;
  const context = `${summarize(result)}\nreplay: ${REPLAY}`;
  console.log(summarize(result));
  expect(f.workload.unexpected, `answers the API does not allow\n${context}`).toEqual([]);
  expect(f.nemesis.crashes.map((c) => `${c.member}: ${describeExit(c)}`), `members that exited on their own\n${context}`).toEqual([]);
  expect(result.check.verdict, `${result.check.failure?.message ?? ''}\n${context}`).toBe('linearizable');
  expect(f.anomalies, `lost writes, stale or unexplained reads\n${context}`).toEqual({ lostWrites: 0, staleReads: 0, unexplainedReads: 0, keysWithoutFinalRead: 0 });
  expect(f.finalReads.ok, `every key readable after the last heal\n${context}`).toBe(f.finalReads.keys);
  // Not vacuous: acknowledged operations to check. (Kept low: a loaded 2-core machine does little.)
  expect(f.workload.byOutcome.ok, `the clients made progress\n${context}`).toBeGreaterThanOrEqual(MIN_OK_OPS);
  expect(result.problems, context).toEqual([]);
}

/**
 * Not vacuous: the membership run replaced a member at least once (removed, wiped, rejoined and
 * promoted), and the snapshot run brought a member back behind the others' compacted logs and saw
 * it install a snapshot.
 */
function expectReconfigured(name: string, result: ChaosResult): void {
  const faults = result.figures.nemesis.faults;
  const context = `${summarize(result)}\nfaults:\n${faults.map((f) => `  ${f.detail}`).join('\n')}\nreplay: ${REPLAY}`;
  if (name === 'membership') {
    const rejoined = faults.filter((f) => (f.variant === 'replace' || f.variant === 'wipe') && f.detail.includes('rejoined'));
    expect(rejoined.length, `a member was replaced and rejoined as a voter\n${context}`).toBeGreaterThanOrEqual(1);
  }
  if (name === 'snapshot') {
    const forced = result.figures.nemesis.forcedSnapshots;
    expect(forced.installed, `a member brought back behind the compacted log installed a snapshot\n${context}`).toBeGreaterThanOrEqual(1);
    expect(forced.installed, `every member brought back behind the compacted log installed a snapshot\n${context}`).toBe(forced.forced);
  }
}

/** The partition run falls back to kill and pause, saying why, when iptables is not usable here. */
function partitionNemeses(): NemesisKind[] {
  const available = partitionAvailability();
  if (available.ok) return ['partition'];
  console.log(`partition nemesis skipped: ${available.reason}; this run uses kill and pause instead`);
  return ['kill', 'pause'];
}

if (!LONG) {
  describe('chaos (short run)', () => {
    test.each<[string, () => NemesisKind[], FaultTiming | undefined]>([
      ['kill', () => ['kill'], undefined],
      ['pause', () => ['pause'], undefined],
      ['partition', partitionNemeses, undefined],
      ['membership', () => ['membership'], RECONFIGURE_TIMING],
      ['snapshot', () => ['snapshot'], RECONFIGURE_TIMING],
    ])(`%s: default reads and every write stay linearizable (seed ${BASE_SEED})`, { timeout: SHORT_RUN_MS + RUN_OVERHEAD_MS }, async (name, nemeses, timing) => {
      const result = await runChaos({
        seed: BASE_SEED, durationMs: SHORT_RUN_MS, nemeses: nemeses(), clients: CLIENTS, keys: KEYS,
        readMode: 'linearizable', label: name, timing,
      });
      expectLinearizable(result);
      expect(result.figures.nemesis.faults.length, 'faults were injected').toBeGreaterThan(2);
      expectReconfigured(name, result);
    });

    test(`the checker catches stale reads: ?consistency=stale on cut-off or paused followers (seed ${BASE_SEED})`, { timeout: STALE_ATTEMPTS * (STALE_RUN_MS + RUN_OVERHEAD_MS) }, async () => {
      const found = await findStaleness(BASE_SEED);
      expect(found.result?.check.verdict, `no attempt of ${found.attempts} produced a stale read the checker reported; seeds ${found.seeds.join(', ')}`).toBe('not-linearizable');
      // The violation was the point: its report would only be a temp dir left behind by every run.
      if (found.result?.reportDir) await rm(found.result.reportDir, { recursive: true, force: true });
    });
  });
} else {
  const minutes = Number(process.env['FLOTILLA_CHAOS_MINUTES'] ?? 10);
  const runs = (process.env['FLOTILLA_CHAOS_NEMESES'] ?? 'kill,pause,partition,membership,snapshot').split(',').map((s) => s.trim()).filter(Boolean);
  describe(`chaos (long run, ${minutes} min per nemesis)`, () => {
    test.each(runs.map((n, i) => [n, i] as const))(`%s for ${minutes} min`, { timeout: minutes * 60_000 * 2 + 600_000 }, async (run, i) => {
      const kinds = longRunNemeses(run);
      const result = await runChaos({
        seed: BASE_SEED + i, durationMs: minutes * 60_000, nemeses: kinds, clients: CLIENTS, keys: KEYS,
        readMode: 'linearizable', label: run, keyEpochMs: 60_000, checkMsPerKey: 120_000,
        ...(run === 'mixed' ? { timing: MIXED_TIMING, overlap: 2 } : {}),
        ...(run === 'membership' || run === 'snapshot' ? { timing: RECONFIGURE_TIMING } : {}),
      });
      await appendChaosDoc(result);
      expectLinearizable(result);
    });
    test('the checker still catches stale reads', { timeout: STALE_ATTEMPTS * (STALE_RUN_MS + RUN_OVERHEAD_MS) }, async () => {
      const found = await findStaleness(BASE_SEED + 100);
      expect(found.result?.check.verdict).toBe('not-linearizable');
      if (found.result) await appendChaosDoc(found.result, { expectViolation: true });
    });
  });
}

function longRunNemeses(run: string): NemesisKind[] {
  if (run === 'partition') return partitionNemeses();
  if (run === 'mixed') return partitionAvailability().ok ? ['kill', 'pause', 'partition'] : ['kill', 'pause'];
  if (run === 'kill' || run === 'pause' || run === 'membership' || run === 'snapshot') return [run];
  throw new Error(`FLOTILLA_CHAOS_NEMESES: unknown run ${JSON.stringify(run)} (kill, pause, partition, membership, snapshot, mixed)`);
}

/** Which fault, if any, was under way when the op that could not be linearized ran. */
function faultAt(result: ChaosResult): string {
  const stuck = result.check.failure?.stuck;
  if (stuck === undefined) return 'no window';
  const end = stuck.completeMs ?? Infinity;
  const fault = result.figures.nemesis.faults.find((f) => f.startMs <= end && f.endMs >= stuck.invokeMs);
  return fault === undefined ? 'no fault under way: a follower lagging the leader' : `during: ${fault.detail}`;
}

/**
 * Runs the stale-read workload with different seeds until the checker reports a violation (bounded).
 * The faults are the ones that leave a follower behind while it still answers: a partition of peer
 * traffic only (clients still reach it), and pauses (reads queued on a stopped member are answered
 * from its old state when it resumes, before it catches up).
 */
async function findStaleness(seed: number): Promise<{ result?: ChaosResult; attempts: number; seeds: number[] }> {
  const seeds: number[] = [];
  for (let attempt = 0; attempt < STALE_ATTEMPTS; attempt++) {
    const s = seed + attempt;
    seeds.push(s);
    const available = partitionAvailability();
    const nemeses: NemesisKind[] = available.ok && attempt % 2 === 0 ? ['partition'] : ['pause'];
    const result = await runChaos({
      seed: s, durationMs: STALE_RUN_MS, nemeses, clients: CLIENTS, keys: 2, readMode: 'stale', label: `stale reads, ${nemeses.join('+')}`,
      timing: { quietMs: [300, 800], downMs: [300, 1000], pauseMs: [1000, 1800], partitionMs: [1500, 3000] },
      leaderBias: 0, followersOnly: true, cutClients: 0, spread: 0,
    });
    console.log(summarize(result));
    if (result.check.verdict === 'not-linearizable') {
      console.log(`stale read caught on attempt ${attempt + 1}: ${result.check.failure?.message ?? ''} (${faultAt(result)})`);
      return { result, attempts: attempt + 1, seeds };
    }
  }
  return { attempts: STALE_ATTEMPTS, seeds };
}
