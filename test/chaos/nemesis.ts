/**
 * The nemesis: faults injected into real member processes on a schedule drawn from a seed.
 *
 *   - kill: SIGKILL a member (the leader half of the time), wait, restart it from its data dir;
 *     sometimes two members or all of them at once;
 *   - pause: SIGSTOP a member (the leader half of the time), sometimes two, for longer than an
 *     election timeout, then SIGCONT;
 *   - partition: cut one member (the leader half of the time) off from the others with iptables,
 *     sometimes from the clients too, or cut just one pair (a bridge), then heal (skipped, with the
 *     reason printed, when this machine does not allow iptables);
 *   - membership: through the Cluster API, replace a member (the leader half of the time) the way an
 *     operator replaces a dead one (remove it, stop it, wipe its disk, start it as a new member with
 *     --join), or hand leadership to a follower (reconfigure.ts);
 *   - snapshot: stop a member until the others have compacted their logs past it, then restart it,
 *     so it must catch up by InstallSnapshot; or wipe a follower and re-add it (reconfigure.ts).
 *
 * One fault at a time: each is healed before the next, and after each the nemesis waits (bounded)
 * for the cluster to elect a leader again. Which fault, whom and how long come from the seed; what
 * "the leader" is at that moment comes from the cluster.
 */
import { SeededRng } from '../../src/util/rng.js';
import { sleep, type ProcessCluster } from '../support/process-cluster.js';
import { iptablesAvailability, IptablesNetwork, type Availability } from './network.js';
import type { ClusterView } from './workload.js';
import { hold, release, startMember, type FaultContext, type SharedState } from './fault-context.js';
import { membershipFault, snapshotFault, type Reconfigured } from './reconfigure.js';

export const NEMESES = ['kill', 'pause', 'partition', 'membership', 'snapshot'] as const;
export type NemesisKind = (typeof NEMESES)[number];

export interface FaultTiming {
  /** Quiet time before each fault, [min, max) ms. */
  readonly quietMs: readonly [number, number];
  /** How long a killed member stays down. */
  readonly downMs: readonly [number, number];
  /** How long a member stays paused: longer than the election timeout (randomized up to 2x). */
  readonly pauseMs: readonly [number, number];
  /** How long a partition lasts. */
  readonly partitionMs: readonly [number, number];
}

export const DEFAULT_TIMING: FaultTiming = {
  quietMs: [500, 2500],
  downMs: [300, 2000],
  pauseMs: [1000, 3000],
  partitionMs: [1000, 4000],
};

/** One injected fault, on the history's clock (performance.now()). */
export interface FaultEvent {
  readonly kind: NemesisKind;
  /** The member(s) hit, comma-separated. */
  readonly target: string;
  /** Was the target the leader when it was chosen? */
  readonly wasLeader: boolean;
  readonly startMs: number;
  readonly endMs: number;
  readonly detail: string;
  /** membership and snapshot: which operation ('replace', 'transfer', 'lag', 'wipe'). */
  readonly variant?: string;
  /** Snapshots the member brought back installed while catching up (its flotilla_snapshots_installed_total). */
  readonly snapshotInstalls?: number;
  /** snapshot: the others' logs had been compacted past the member before it came back. */
  readonly forced?: boolean;
}

export interface Crash {
  readonly member: string;
  /** performance.now() when it was noticed. */
  readonly atMs: number;
  readonly exitCode: number | null;
  /** The signal that ended it, when one did: a signal the suite did not send came from outside. */
  readonly signal: string | null;
  /** The member's last log lines before it exited. */
  readonly logTail: string;
}

export interface NemesisFigures {
  readonly faults: readonly FaultEvent[];
  readonly byKind: Record<NemesisKind, number>;
  /** Why a nemesis did not run (partition without iptables). */
  readonly skipped: Partial<Record<NemesisKind, string>>;
  /** Faults after which no leader was elected within the recovery bound. */
  readonly slowRecoveries: number;
  /** Members that exited without being killed: each is a flotilla bug (or a broken build), restarted to go on. */
  readonly crashes: readonly Crash[];
  /** Packets the partition rules dropped, summed over partitions: shows the cuts cut. */
  readonly droppedPackets: number;
  /**
   * What the membership and snapshot nemeses saw go wrong in the cluster: a removed leader that
   * kept leading, a joined member never promoted, a change that never committed, a member that did
   * not catch up. Each is a flotilla bug (or a machine far too slow).
   */
  readonly problems: readonly string[];
  /** snapshot: members brought back behind the others' compacted logs, and those whose metrics show an install. */
  readonly forcedSnapshots: { readonly forced: number; readonly installed: number };
}

export interface NemesisOptions {
  readonly seed: number;
  readonly kinds: readonly NemesisKind[];
  readonly cluster: ProcessCluster;
  /** Inject no fault after this performance.now() instant. */
  readonly deadlineMs: number;
  readonly view?: ClusterView;
  readonly timing?: FaultTiming;
  /** Probability that the target is the leader rather than any member. */
  readonly leaderBias?: number;
  /** When the target is not the leader, pick among the followers only (else among all members). */
  readonly followersOnly?: boolean;
  /** How often a fault hits more than one member: two or all killed, two paused, a bridge cut. */
  readonly spread?: number;
  /** Partitions: probability that clients are cut from the isolated member too. */
  readonly cutClients?: number;
  /** How long to wait for a leader after each fault. */
  readonly recoveryMs?: number;
  readonly maxFaults?: number;
  /** Concurrent fault streams (default 1): with 2, a kill can land while another member is paused or cut off. */
  readonly overlap?: number;
  readonly log?: (line: string) => void;
}

const DEFAULT_RECOVERY_MS = 20_000;
const DEFAULT_SPREAD = 0.3;
const MAX_OVERLAP = 3;
const DEFAULT_MAX_FAULTS = 10_000;

/** Checks once per process whether partitions can run. */
let cachedAvailability: Availability | undefined;
export function partitionAvailability(): Availability {
  cachedAvailability ??= iptablesAvailability();
  return cachedAvailability;
}

/**
 * Runs faults until the deadline, and leaves the cluster whole: every member running and
 * resumed, the network healed and the iptables chain removed, whatever happens.
 */
export async function runNemesis(options: NemesisOptions): Promise<NemesisFigures> {
  const rng = new SeededRng((options.seed ^ 0x6e656d65) >>> 0);
  const log = options.log ?? (() => undefined);
  const timing = options.timing ?? DEFAULT_TIMING;
  const { network, skipped } = openNetwork(options.kinds, options.cluster, log);
  const kinds = options.kinds.filter((k) => skipped[k] === undefined);
  const shared: SharedState = {
    paused: new Set(), down: new Set(), busy: new Set(), fresh: new Set(), partitioned: false, reconfiguring: false, droppedPackets: 0, crashes: [], problems: [], replacements: 0,
  };
  const loops = Math.max(1, Math.min(MAX_OVERLAP, options.overlap ?? 1));
  const contexts: FaultContext[] = Array.from({ length: loops }, (_, i) => ({
    options, timing, network, log, shared, rng: i === 0 ? rng : new SeededRng((options.seed ^ Math.imul(i, 0x27d4eb2d)) >>> 0),
  }));
  const faults: FaultEvent[] = [];
  let slowRecoveries = 0;
  try {
    // allSettled: restoreAll below must not run while another loop is still injecting.
    const settled = await Promise.allSettled(contexts.map((ctx) => faultLoop(ctx, kinds, faults)));
    for (const r of settled) {
      if (r.status === 'rejected') throw r.reason;
      slowRecoveries += r.value;
    }
  } finally {
    await noteCrashes(contexts[0]);
    await restoreAll(contexts[0]);
    network?.remove();
  }
  const byKind: Record<NemesisKind, number> = { kill: 0, pause: 0, partition: 0, membership: 0, snapshot: 0 };
  for (const f of faults) byKind[f.kind]++;
  const forced = faults.filter((f) => f.forced === true);
  const forcedSnapshots = { forced: forced.length, installed: forced.filter((f) => (f.snapshotInstalls ?? 0) > 0).length };
  return { faults, byKind, skipped, slowRecoveries, crashes: shared.crashes, droppedPackets: shared.droppedPackets, problems: shared.problems, forcedSnapshots };
}

/** The iptables chain, when partitions are asked for and this machine allows them; else why not. */
function openNetwork(kinds: readonly NemesisKind[], cluster: ProcessCluster, log: (line: string) => void):
  { network: IptablesNetwork | null; skipped: Partial<Record<NemesisKind, string>> } {
  if (!kinds.includes('partition')) return { network: null, skipped: {} };
  const available = partitionAvailability();
  let reason: string;
  if (available.ok) {
    const network = new IptablesNetwork(cluster.members);
    try {
      network.install();
      return { network, skipped: {} };
    } catch (err) {
      network.remove();
      reason = `could not install the iptables chain: ${(err as Error).message.split('\n')[0]}`;
    }
  } else {
    reason = available.reason;
  }
  log(`partition nemesis skipped: ${reason}`);
  return { network: null, skipped: { partition: reason } };
}

/** One stream of faults, one at a time, until the deadline. Returns how many recoveries were slow. */
async function faultLoop(ctx: FaultContext, kinds: readonly NemesisKind[], faults: FaultEvent[]): Promise<number> {
  const { options, rng, timing } = ctx;
  const maxFaults = options.maxFaults ?? DEFAULT_MAX_FAULTS;
  let slow = 0;
  while (kinds.length > 0 && faults.length < maxFaults) {
    const quiet = rng.int(timing.quietMs[0], timing.quietMs[1]);
    if (performance.now() + quiet >= options.deadlineMs) break;
    await sleep(quiet);
    const kind = kinds[rng.int(0, kinds.length)];
    await noteCrashes(ctx);
    const fault = await inject(kind, ctx);
    if (fault === null) continue;
    faults.push(fault);
    await noteCrashes(ctx);
    if (!(await recovered(options))) {
      slow++;
      ctx.log(`no leader within ${options.recoveryMs ?? DEFAULT_RECOVERY_MS} ms after ${fault.detail}`);
    }
  }
  return slow;
}

async function pickTarget(ctx: FaultContext): Promise<{ target: string; wasLeader: boolean }> {
  const { cluster } = ctx.options;
  // Draw both choices first, so the seed's sequence does not depend on whether a leader was found.
  const wantLeader = ctx.rng.chance(ctx.options.leaderBias ?? 0.5);
  const pick = ctx.rng.next();
  const leader = wantLeader || ctx.options.followersOnly ? await cluster.leader() : null;
  if (leader !== null && ctx.options.view) ctx.options.view.leader = leader;
  if (wantLeader && leader !== null) return { target: leader, wasLeader: true };
  const pool = cluster.members.filter((m) => !(ctx.options.followersOnly && m.name === leader));
  const target = pool[Math.floor(pick * pool.length)].name;
  return { target, wasLeader: target === leader };
}

function named(targets: readonly string[], role: string): string {
  return targets.map((t, i) => (i === 0 ? `${t}${role}` : t)).join(', ');
}

/** The target and, for a wider fault, up to `count - 1` more members drawn from those not under a fault. */
function widen(ctx: FaultContext, target: string, count: number, pick: number): string[] {
  const others = ctx.options.cluster.members.map((m) => m.name).filter((n) => n !== target && !ctx.shared.busy.has(n));
  const start = Math.floor(pick * others.length);
  const more = Math.min(count - 1, others.length);
  return [target, ...Array.from({ length: more }, (_, i) => others[(start + i) % others.length])];
}

/** Injects one fault and heals it; null when another fault stream holds what it needs. */
async function inject(kind: NemesisKind, ctx: FaultContext): Promise<FaultEvent | null> {
  const { cluster } = ctx.options;
  const { shared } = ctx;
  const picked = await pickTarget(ctx);
  // Drawn for every fault, used or not, so each fault takes the same number of draws.
  const width = ctx.rng.next();
  const pick = ctx.rng.next();
  const span = ctx.rng.next();
  const cutClients = ctx.rng.chance(ctx.options.cutClients ?? 0.5);
  const free = cluster.members.map((m) => m.name).filter((n) => !shared.busy.has(n));
  const target = shared.busy.has(picked.target) ? free[0] : picked.target;
  if (target === undefined || (kind === 'partition' && shared.partitioned)) return null;
  const role = picked.wasLeader && target === picked.target ? ' (leader)' : '';
  const between = (range: readonly [number, number]): number => Math.floor(range[0] + span * (range[1] - range[0]));
  const spread = ctx.options.spread ?? DEFAULT_SPREAD;
  const startMs = performance.now();
  let detail: string;
  let targets: string[];
  let reconfigured: Reconfigured | null = null;
  switch (kind) {
    case 'kill': {
      // Mostly one member; sometimes two (a majority), sometimes all: acknowledged writes must survive.
      targets = widen(ctx, target, width < spread * 0.6 ? 2 : width < spread ? cluster.members.length : 1, pick);
      const downMs = between(ctx.timing.downMs);
      for (const t of targets) hold(shared, t, shared.down);
      await Promise.all(targets.map((t) => cluster.kill(t)));
      await sleep(downMs);
      for (const t of targets) {
        startMember(ctx, t);
        release(shared, t, shared.down);
      }
      detail = `SIGKILL ${named(targets, role)}, restarted after ${downMs} ms`;
      break;
    }
    case 'pause': {
      targets = widen(ctx, target, width < spread * 0.5 ? 2 : 1, pick);
      const pauseMs = between(ctx.timing.pauseMs);
      for (const t of targets) {
        hold(shared, t, shared.paused);
        cluster.pause(t);
      }
      await sleep(pauseMs);
      for (const t of targets) {
        cluster.resume(t);
        release(shared, t, shared.paused);
      }
      detail = `SIGSTOP ${named(targets, role)} for ${pauseMs} ms`;
      break;
    }
    case 'partition': {
      const network = ctx.network;
      if (network === null) throw new Error('partition without a network');
      const partitionMs = between(ctx.timing.partitionMs);
      shared.partitioned = true;
      if (width < spread * 0.5) {
        // A bridge: the target loses one peer only, and the third member still hears both.
        targets = widen(ctx, target, 2, pick);
        if (targets.length === 2) network.cutPair(targets[0], targets[1]);
        else network.isolate(targets, { clients: false });
        detail = targets.length === 2
          ? `cut ${targets[0]}${role} <-> ${targets[1]} (both still reach the third) for ${partitionMs} ms`
          : `isolate ${target}${role} from peers for ${partitionMs} ms`;
      } else {
        targets = [target];
        network.isolate(targets, { clients: cutClients });
        detail = `isolate ${target}${role}${cutClients ? ' from peers and clients' : ' from peers'} for ${partitionMs} ms`;
      }
      for (const t of targets) shared.busy.add(t);
      await sleep(partitionMs);
      shared.droppedPackets += network.droppedPackets(); // heal() flushes the rules, and their counters
      network.heal();
      for (const t of targets) shared.busy.delete(t);
      shared.partitioned = false;
      break;
    }
    case 'membership':
    case 'snapshot': {
      if (shared.reconfiguring) return null;
      shared.reconfiguring = true;
      try {
        const draws = { variant: width, pick, span };
        const victim = { target, wasLeader: role !== '' };
        reconfigured = kind === 'membership' ? await membershipFault(ctx, victim, draws) : await snapshotFault(ctx, victim, draws);
      } finally {
        shared.reconfiguring = false;
      }
      if (reconfigured === null) return null;
      targets = reconfigured.targets;
      detail = reconfigured.detail;
      break;
    }
  }
  const event: FaultEvent = {
    kind, target: targets.join(','), wasLeader: reconfigured === null ? role !== '' : reconfigured.wasLeader,
    startMs, endMs: performance.now(), detail,
    ...(reconfigured === null ? {} : { variant: reconfigured.variant, forced: reconfigured.forced, snapshotInstalls: reconfigured.snapshotInstalls }),
  };
  ctx.log(`fault ${detail}`);
  return event;
}

const CRASH_LOG_TAIL_CHARS = 4000;
const MAX_CRASH_RESTARTS = 20;

/**
 * A member that is not running although no fault holds it down exited on its own: record it with
 * its exit code and last log lines, and start it again (bounded) so the rest of the run goes on.
 */
async function noteCrashes(ctx: FaultContext): Promise<void> {
  const { cluster } = ctx.options;
  for (const m of cluster.members) {
    if (ctx.shared.down.has(m.name) || cluster.isRunning(m.name)) continue;
    const status = cluster.exitStatus(m.name);
    const crash: Crash = {
      member: m.name, atMs: performance.now(), exitCode: status?.code ?? null, signal: status?.signal ?? null,
      logTail: cluster.logs(m.name).slice(-CRASH_LOG_TAIL_CHARS),
    };
    ctx.shared.crashes.push(crash);
    ctx.log(`${m.name} exited on its own (${describeExit(crash)}); last log line: ${lastLine(crash.logTail)} (more in the report)`);
    if (ctx.shared.crashes.length <= MAX_CRASH_RESTARTS) startMember(ctx, m.name);
  }
}

function lastLine(text: string): string {
  const lines = text.trimEnd().split('\n');
  return lines[lines.length - 1].slice(0, 600);
}

export function describeExit(c: Crash): string {
  return c.signal !== null ? `ended by ${c.signal}, which the suite did not send` : `exit code ${c.exitCode}`;
}

async function recovered(options: NemesisOptions): Promise<boolean> {
  try {
    const leader = await options.cluster.waitForLeader(options.recoveryMs ?? DEFAULT_RECOVERY_MS);
    if (options.view) options.view.leader = leader;
    return true;
  } catch {
    return false;
  }
}

/** Resume every paused member, restart every killed one, heal the network. Never throws. */
async function restoreAll(ctx: FaultContext): Promise<void> {
  const { shared } = ctx;
  for (const name of shared.paused) ctx.options.cluster.resume(name);
  for (const name of shared.down) {
    if (!ctx.options.cluster.isRunning(name)) startMember(ctx, name);
  }
  shared.paused.clear();
  shared.down.clear();
  shared.busy.clear();
  shared.reconfiguring = false;
  try {
    ctx.network?.heal();
  } catch {
    // remove() below takes the chain away anyway
  }
}
