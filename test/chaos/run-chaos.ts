/**
 * One chaos run: start three real members on 127.0.0.11-13, drive the workload against them while
 * the nemesis injects faults, heal, read every key once more, and check the recorded history for
 * linearizability. On a violation the history and the smallest failing window go to a directory
 * under the OS temp dir, whose path is in the result (and printed).
 */
import { rmSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLinearizability, type CheckResult } from './checker/linearizability.js';
import { HistoryRecorder, type Operation } from './checker/history.js';
import { findAnomalies } from './checker/anomalies.js';
import { http, sleep, ProcessCluster } from '../support/process-cluster.js';
import { describeExit, runNemesis, type FaultEvent, type FaultTiming, type NemesisFigures, type NemesisKind } from './nemesis.js';
import { onAbnormalEnd } from './cleanup.js';
import { writeChaosFailure } from './report.js';
import { runWorkload, type ClusterView, type OpMix, type ReadMode, type WorkloadFigures } from './workload.js';

const BIND_SOURCE = fileURLToPath(new URL('./bind-source.mjs', import.meta.url));

export interface ChaosOptions {
  readonly seed: number;
  readonly durationMs: number;
  readonly nemeses: readonly NemesisKind[];
  readonly clients: number;
  readonly keys: number;
  readonly readMode: ReadMode;
  readonly mix?: OpMix;
  readonly timing?: FaultTiming;
  /** Nemesis targeting: how often the leader is the target; whether others are only followers; partitions cutting clients too. */
  readonly leaderBias?: number;
  readonly followersOnly?: boolean;
  readonly cutClients?: number;
  readonly spread?: number;
  /** Concurrent fault streams: 2 lets faults overlap (a kill while another member is paused or cut off). */
  readonly overlap?: number;
  /** Rotate to fresh keys this often (long runs), so no key's history grows past what the checker handles. */
  readonly keyEpochMs?: number;
  readonly opTimeoutMs?: number;
  readonly thinkMs?: number;
  /** Compact the log every this many entries (--snapshot-entries). */
  readonly snapshotEntries?: number;
  /** The checker's budget per key. */
  readonly checkMsPerKey?: number;
  /** Label for the report directory and log lines. */
  readonly label?: string;
  readonly log?: (line: string) => void;
}

export interface ChaosFigures {
  readonly seed: number;
  readonly label: string;
  /** --snapshot-entries the members ran with, and the log compactions and InstallSnapshots their logs show. */
  readonly snapshotEntries: number;
  readonly snapshots: { readonly compactions: number; readonly installs: number };
  /** From the first op to the last fault healed and the last client op resolved. */
  readonly durationMs: number;
  readonly workload: WorkloadFigures;
  readonly nemesis: NemesisFigures;
  /** Keys whose final linearizable read succeeded after the last heal / all keys touched. */
  readonly finalReads: { readonly ok: number; readonly keys: number };
  readonly checkMs: number;
  /** The checker's second opinion, by simple counting (checker/anomalies.ts). */
  readonly anomalies: { readonly lostWrites: number; readonly staleReads: number; readonly unexplainedReads: number; readonly keysWithoutFinalRead: number };
}

export interface ChaosResult {
  readonly figures: ChaosFigures;
  readonly check: CheckResult;
  readonly history: readonly Operation[];
  /** What went wrong, if anything: a verdict other than linearizable, crashes, a cluster that did not recover. */
  readonly problems: readonly string[];
  /** Where the report went, when there were problems. */
  readonly reportDir?: string;
}

function problemsOf(f: ChaosFigures, check: CheckResult): string[] {
  const problems: string[] = [];
  if (!check.ok) problems.push(check.verdict);
  for (const c of f.nemesis.crashes) problems.push(`${c.member} exited on its own (${describeExit(c)})`);
  if (f.finalReads.ok < f.finalReads.keys) problems.push(`final reads: ${f.finalReads.ok} of ${f.finalReads.keys} keys answered after the last heal`);
  if (f.nemesis.slowRecoveries > 0) problems.push(`${f.nemesis.slowRecoveries} faults after which no leader was elected in time`);
  problems.push(...f.nemesis.problems);
  if (f.workload.unexpected.length > 0) problems.push(`${f.workload.unexpected.length} answers the API does not allow`);
  const a = f.anomalies;
  if (a.lostWrites + a.staleReads + a.unexplainedReads > 0) problems.push(`${a.lostWrites} lost writes, ${a.staleReads} stale reads, ${a.unexplainedReads} unexplained reads`);
  return problems;
}

/**
 * Member flags for chaos: a write that waits 2 s for commit answers 504 (unknown) before the client
 * gives up; and a tiny snapshot threshold (as Jepsen runs etcd with --snapshot-count 100), so every
 * run compacts the log many times and a member that was down, paused or cut off for a few seconds
 * catches up by InstallSnapshot rather than by entries.
 */
function memberFlags(snapshotEntries: number): string[] {
  return [
    '--request-timeout', '2000',
    '--snapshot-entries', String(snapshotEntries),
    '--snapshot-catchup-entries', String(Math.max(1, Math.floor(snapshotEntries / 10))),
  ];
}

/** FLOTILLA_CHAOS_SNAPSHOT_ENTRIES overrides it (a large number takes snapshots out of the picture). */
export const DEFAULT_SNAPSHOT_ENTRIES = Number(process.env['FLOTILLA_CHAOS_SNAPSHOT_ENTRIES'] ?? 200);
const FINAL_READ_ATTEMPTS = 50;
const FINAL_READ_BUDGET_MS = 30_000;
const LEADER_AFTER_HEAL_MS = 30_000;

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const label = options.label ?? `${options.nemeses.join('+')} ${options.readMode}`;
  const snapshotEntries = options.snapshotEntries ?? DEFAULT_SNAPSHOT_ENTRIES;
  const cluster = await ProcessCluster.create({
    size: 3, heartbeatMs: 50, electionMs: 500, distinctHosts: true, extraFlags: memberFlags(snapshotEntries),
    env: { NODE_OPTIONS: [process.env['NODE_OPTIONS'], `--import=${BIND_SOURCE}`].filter(Boolean).join(' ') },
  });
  const recorder = new HistoryRecorder();
  const view: ClusterView = { leader: null };
  // If the test worker ends mid-run (a timeout, Ctrl-C, vitest gone), leave no member behind, stopped or not.
  const forget = onAbnormalEnd(() => killMembersNow(cluster));
  try {
    await cluster.startAll();
    view.leader = await cluster.leader();
    const startMs = performance.now();
    const deadlineMs = startMs + options.durationMs;
    // allSettled: if one side throws, the other must still finish before the cluster is destroyed.
    const [ranWorkload, ranNemesis] = await Promise.allSettled([
      runWorkload({
        seed: options.seed, members: cluster.members, recorder, clients: options.clients, keys: options.keys,
        readMode: options.readMode, deadlineMs, view, mix: options.mix, keyEpochMs: options.keyEpochMs,
        opTimeoutMs: options.opTimeoutMs, thinkMs: options.thinkMs,
      }),
      runNemesis({
        seed: options.seed, kinds: options.nemeses, cluster, deadlineMs, view, timing: options.timing,
        leaderBias: options.leaderBias, followersOnly: options.followersOnly, cutClients: options.cutClients,
        spread: options.spread, overlap: options.overlap,
        log: (line) => log(`[${label} seed ${options.seed}] ${line}`),
      }),
    ]);
    if (ranWorkload.status === 'rejected') throw ranWorkload.reason;
    if (ranNemesis.status === 'rejected') throw ranNemesis.reason;
    const workload = ranWorkload.value;
    const nemesis = ranNemesis.value;
    const durationMs = performance.now() - startMs;
    await cluster.waitForLeader(LEADER_AFTER_HEAL_MS).catch(() => null);
    const finalReads = await readEveryKey(cluster, recorder, options.clients + 1);
    const history = recorder.operations;
    const checkStart = performance.now();
    const check = checkLinearizability(history, { maxMsPerKey: options.checkMsPerKey });
    const checkMs = performance.now() - checkStart;
    const found = findAnomalies(history);
    const anomalies = {
      lostWrites: found.lostWrites, staleReads: found.staleReads, unexplainedReads: found.unexplainedReads,
      keysWithoutFinalRead: found.keysWithoutFinalRead.length,
    };
    const figures: ChaosFigures = {
      seed: options.seed, label, snapshotEntries, snapshots: snapshotActivity(cluster), durationMs, workload, nemesis, finalReads, checkMs, anomalies,
    };
    const problems = problemsOf(figures, check);
    if (problems.length === 0) return { figures, check, history, problems };
    const reportDir = await writeChaosFailure({ figures, check, history, cluster, problems });
    log(`[${label} seed ${options.seed}] ${problems.join('; ')}: report in ${reportDir} (open timeline.html)`);
    return { figures, check, history, problems, reportDir };
  } finally {
    // A stopped member must be resumed before it is killed and its dir removed.
    cluster.resumeAll();
    await cluster.destroy();
    forget();
  }
}

/**
 * What the members' logs (the lines ProcessCluster keeps) say about snapshots: informational only,
 * so a changed log message makes these zero rather than failing the run.
 */
function snapshotActivity(cluster: ProcessCluster): { compactions: number; installs: number } {
  let compactions = 0;
  let installs = 0;
  for (const m of cluster.members) {
    const log = cluster.logs(m.name);
    compactions += log.split('"msg":"compacted the log"').length - 1;
    installs += log.split('"msg":"installed a snapshot"').length - 1;
  }
  return { compactions, installs };
}

function killMembersNow(cluster: ProcessCluster): void {
  for (const m of cluster.members) {
    const pid = cluster.pid(m.name);
    if (pid === undefined || !cluster.isRunning(m.name)) continue;
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  // The data dirs live under the cluster's own temp root (ProcessCluster.create made it).
  const root = dirname(cluster.members[0].dataDir);
  if (basename(root).startsWith('flotilla-cluster-')) rmSync(root, { recursive: true, force: true });
}

/**
 * After the last heal, one more client reads every key the run touched, linearizably, retrying until
 * it gets an answer (bounded). The reads go into the history: they pin down the final state, so a lost
 * acknowledged write shows up as a violation, and that they succeed at all shows the cluster is live.
 */
async function readEveryKey(cluster: ProcessCluster, recorder: HistoryRecorder, client: number): Promise<{ ok: number; keys: number }> {
  const keys = [...new Set(recorder.operations.map((o) => o.key))].sort();
  const deadline = performance.now() + FINAL_READ_BUDGET_MS;
  let ok = 0;
  for (const key of keys) {
    for (let attempt = 0; attempt < FINAL_READ_ATTEMPTS && performance.now() < deadline; attempt++) {
      const member = cluster.members[attempt % cluster.members.length];
      const id = recorder.invoke(client, key, 'get');
      const answer = await finalRead(`${member.clientUrl}/v1/kv/${encodeURIComponent(key)}`);
      if (answer.kind === 'ok') {
        recorder.ok(id, answer.output);
        ok++;
        break;
      }
      recorder.fail(id, { error: answer.reason });
      await sleep(200);
    }
  }
  return { ok, keys: keys.length };
}

type FinalAnswer = { kind: 'ok'; output: { value: string | null; modRevision?: number; status: number } } | { kind: 'fail'; reason: string };

async function finalRead(url: string): Promise<FinalAnswer> {
  try {
    const r = await http('GET', url, { timeoutMs: 3000 });
    if (r.status === 404) return { kind: 'ok', output: { value: null, status: 404 } };
    if (r.status !== 200) return { kind: 'fail', reason: `${r.status}` };
    const etag = Number(String(r.headers['etag']).replaceAll('"', ''));
    const output = { value: r.body.toString('utf8'), status: 200 };
    return { kind: 'ok', output: Number.isSafeInteger(etag) ? { ...output, modRevision: etag } : output };
  } catch (err) {
    return { kind: 'fail', reason: String((err as { code?: string }).code ?? err) };
  }
}

/** The snapshot nemesis's own count, when it ran: members brought back behind the compacted log, and those whose metrics show an install. */
export function forcedSnapshots(f: ChaosFigures): string {
  const s = f.nemesis.forcedSnapshots;
  return s.forced === 0 ? '' : ` (${s.installed} of ${s.forced} forced by the nemesis)`;
}

/** One line per run, for logs and docs/chaos.md. */
export function summarize(result: ChaosResult): string {
  const f = result.figures;
  const w = f.workload;
  const faults = Object.entries(f.nemesis.byKind).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
  const skipped = Object.entries(f.nemesis.skipped).map(([k, why]) => `${k} skipped: ${why}`).join('; ');
  const reasons = Object.entries(w.reasons).sort(([, a], [, b]) => b - a).slice(0, 5).map(([why, n]) => `${why} ${n}`).join(', ');
  return `${f.label} seed ${f.seed}: ${w.ops} ops (${w.byOutcome.ok} ok, ${w.byOutcome.fail} failed, ${w.byOutcome.unknown} unknown${reasons ? `; ${reasons}` : ''}), ` +
    `snapshots: ${f.snapshots.compactions} compactions, ${f.snapshots.installs} installed by lagging members${forcedSnapshots(f)}, ` +
    `faults: ${faults}${skipped ? ` (${skipped})` : ''}${f.nemesis.droppedPackets ? ` (${f.nemesis.droppedPackets} packets dropped)` : ''}, final reads ${f.finalReads.ok}/${f.finalReads.keys}, ` +
    `verdict ${result.check.verdict} (checked in ${Math.round(f.checkMs)} ms), ` +
    `anomalies: ${f.anomalies.lostWrites} lost writes, ${f.anomalies.staleReads} stale reads, ${f.anomalies.unexplainedReads} unexplained reads` +
    (result.problems.length > 0 ? `; PROBLEMS: ${result.problems.join('; ')}` : '') +
    (result.reportDir ? `, report: ${result.reportDir}` : '');
}

export type { FaultEvent };
