import type { Rng } from '../../src/util/rng.js';
import type { CoreOptions } from './sim-node.js';

/** Everything the world can do in one step. */
export const EVENT_KINDS = [
  'deliver', 'drop', 'duplicate', 'delay', 'tick', 'ready', 'crash', 'crashLeader', 'restart',
  'partition', 'isolateLeader', 'oneWay', 'heal', 'propose', 'read', 'compact', 'transfer',
  'membership', 'campaign',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

/**
 * The shape of one run, drawn from its seed (swarm testing, as TigerBeetle's VOPR does in
 * options_swarm): fault rates differ per seed, and each fault is switched off entirely in some
 * runs, so calm runs reach deep states and brutal runs stress recovery.
 */
export interface Swarm {
  readonly members: number;
  /** Relative weight of each event (an event that cannot happen now is skipped). */
  readonly weights: Readonly<Record<EventKind, number>>;
  /** Chance that a delivery takes a random message instead of the oldest. */
  readonly reorder: number;
  /** Chance that a member carries out its Ready right after an input (else later, batched). */
  readonly eagerReady: number;
  /** Chance, at each instant inside a Ready, that the member crashes right there. */
  readonly crashInReady: number;
  /** Chance that a crash keeps some unsynced writes (a torn tail) rather than none. */
  readonly tornTail: number;
  /** Chance that a member misses a clock tick (clocks drift apart). */
  readonly clockSkew: number;
  /** Chance that a lost message is reported to its sender as unreachable. */
  readonly reportUnreachable: number;
  readonly core: CoreOptions;
}

/** Steps of faults per seed before the heal (the test and the sweep share it). */
export const DEFAULT_STEPS = 3000;

export const ELECTION_TICKS = 10;
export const HEARTBEAT_TICKS = 1;

export type Faults = 'swarm' | 'none';

export function drawSwarm(rng: Rng, faults: Faults, members?: number): Swarm {
  const on = faults === 'swarm';
  // A rate in [0, max), switched off outright with probability `off`.
  const rate = (max: number, off = 0.25) => (on && !rng.chance(off) ? rng.next() * max : 0);
  const between = (lo: number, hi: number) => lo + rng.next() * (hi - lo);
  const weights: Record<EventKind, number> = {
    deliver: between(30, 60),
    drop: rate(8),
    duplicate: rate(4),
    delay: rate(4),
    tick: between(4, 14),
    ready: between(4, 12),
    crash: rate(1.5, 0.3),
    // Faults aimed at the leader leave uncommitted tails of old terms behind: the logs that
    // Figure 8 and the log-repair paths are about.
    crashLeader: rate(3, 0.4),
    restart: between(2, 8),
    partition: rate(1.2, 0.3),
    isolateLeader: rate(3, 0.4),
    oneWay: rate(0.8, 0.5),
    heal: between(0.5, 2),
    propose: between(3, 15),
    read: rate(5),
    compact: rate(3, 0.3),
    transfer: rate(0.6, 0.5),
    membership: rate(1.5, 0.5),
    campaign: rate(0.3, 0.6),
  };
  return {
    members: members ?? (rng.chance(0.5) ? 3 : 5),
    weights,
    reorder: rate(0.5),
    eagerReady: between(0.3, 1),
    crashInReady: rate(0.01, 0.5),
    tornTail: rng.next(),
    clockSkew: rate(0.3),
    reportUnreachable: rng.next(),
    core: drawCoreOptions(rng, on),
  };
}

/** Core limits vary too: tiny append batches and inflight windows reach paths defaults never do. */
function drawCoreOptions(rng: Rng, varied: boolean): CoreOptions {
  const small = (lo: number, hi: number, dflt: number, p: number) => (varied && rng.chance(p) ? rng.int(lo, hi) : dflt);
  return {
    electionTicks: ELECTION_TICKS,
    heartbeatTicks: HEARTBEAT_TICKS,
    preVote: !varied || rng.chance(0.8),
    checkQuorum: !varied || rng.chance(0.8),
    maxInflightAppends: small(1, 5, 64, 0.5),
    // Appends smaller than the backlog are where a follower can match an old-term entry without
    // the new leader's no-op after it (the Figure 8 situation), so they get the larger share.
    maxEntriesPerAppend: small(1, 5, 4096, 0.6),
    maxUncommittedEntries: small(3, 30, 65_536, 0.4),
  };
}

export function describeSwarm(s: Swarm): string {
  const w = Object.entries(s.weights)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k}=${v.toFixed(1)}`)
    .join(' ');
  const c = s.core;
  return [
    `members=${s.members} reorder=${s.reorder.toFixed(2)} eagerReady=${s.eagerReady.toFixed(2)} crashInReady=${s.crashInReady.toFixed(4)}`,
    `core: preVote=${c.preVote} checkQuorum=${c.checkQuorum} maxInflight=${c.maxInflightAppends} maxEntries=${c.maxEntriesPerAppend} maxUncommitted=${c.maxUncommittedEntries} lazyCommitNotifyEntries=${c.lazyCommitNotifyEntries ?? 0}`,
    `weights: ${w}`,
  ].join('\n');
}
