/**
 * What every nemesis works with: the run's options, its random draws, and the state the fault
 * streams share (who is down, paused, cut off or wiped right now), plus the few moves on member
 * processes they all make. Kept apart from nemesis.ts so reconfigure.ts can use it too.
 */
import type { Rng } from '../../src/util/rng.js';
import { endingAbnormally } from './cleanup.js';
import type { IptablesNetwork } from './network.js';
import type { Crash, FaultTiming, NemesisOptions } from './nemesis.js';

/** What concurrent fault loops share: who is down, paused or cut off right now. */
export interface SharedState {
  /** Members stopped with SIGSTOP and not yet resumed, and members killed and not yet restarted. */
  readonly paused: Set<string>;
  readonly down: Set<string>;
  /** Members under any fault now: a second loop leaves them alone. */
  readonly busy: Set<string>;
  /** Members whose data dir was wiped and who are not a voter again yet: they (re)start with --join. */
  readonly fresh: Set<string>;
  /** One partition at a time (healing flushes the chain). */
  partitioned: boolean;
  /** One membership change (or snapshot fault) at a time, cluster-wide. */
  reconfiguring: boolean;
  droppedPackets: number;
  readonly crashes: Crash[];
  /** What the membership and snapshot nemeses saw go wrong (NemesisFigures.problems). */
  readonly problems: string[];
  /** Members the membership nemesis replaced so far (its first fault is always a replacement). */
  replacements: number;
}

export interface FaultContext {
  readonly options: NemesisOptions;
  readonly rng: Rng;
  readonly timing: FaultTiming;
  readonly network: IptablesNetwork | null;
  readonly log: (line: string) => void;
  readonly shared: SharedState;
}

export function hold(shared: SharedState, name: string, set: Set<string>): void {
  set.add(name);
  shared.busy.add(name);
}

export function release(shared: SharedState, name: string, set: Set<string>): void {
  set.delete(name);
  shared.busy.delete(name);
}

/**
 * Starts a member again, unless the test worker is ending (its clean-up just killed them all). One
 * whose data dir was wiped starts as a new member, with --join through a running member: with
 * --initial-cluster on an empty dir it would found a cluster of its own. `joinVia`: the client URL
 * to join through (default: the first running member).
 */
export function startMember(ctx: FaultContext, name: string, joinVia?: string): void {
  if (endingAbnormally()) return;
  const { cluster } = ctx.options;
  if (!ctx.shared.fresh.has(name)) {
    cluster.start(name);
    return;
  }
  const via = joinVia ?? (cluster.members.find((m) => m.name !== name && cluster.isRunning(m.name)) ?? cluster.members.find((m) => m.name !== name))?.clientUrl;
  if (via === undefined) throw new Error(`${name} was wiped and there is no other member to join through`);
  cluster.start(name, { join: via });
}

/** A problem the cluster showed: logged now, reported with the run. */
export function problem(ctx: FaultContext, what: string): void {
  ctx.shared.problems.push(what);
  ctx.log(`PROBLEM: ${what}`);
}
