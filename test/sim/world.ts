import type { Ready } from '../../src/raft/ready.js';
import type { ConfigState, Entry, Message, NodeId, ReadState, SnapshotMeta } from '../../src/raft/types.js';
import { MemoryLogStore } from '../../src/storage/memory-log-store.js';
import { SeededRng } from '../../src/util/rng.js';
import { Checker, Violation } from './invariants.js';
import { SimNetwork } from './network.js';
import type { CrashPoint, NodeHooks } from './sim-node.js';
import { SimNode } from './sim-node.js';
import { EVENT_KINDS, ELECTION_TICKS, describeSwarm, drawSwarm } from './swarm.js';
import type { EventKind, Faults, Swarm } from './swarm.js';
import { Trace, describeMessage } from './trace.js';

export interface WorldOptions {
  readonly seed: number;
  /** Founding voters; by default the seed picks 3 or 5. */
  readonly members?: number;
  readonly faults?: Faults;
}

/** A failed run: the message carries the property, the seed, the replay command and a trace. */
export class SimulationFailure extends Error {
  override readonly name = 'SimulationFailure';
}

interface Probe {
  readonly leader: NodeId;
  readonly index: number;
  readonly term: number;
  readonly command: string;
}

export interface ConvergeResult {
  readonly converged: boolean;
  readonly ticks: number;
  readonly reason: string;
}

/** Spare members that may join later (each id joins at most once: ids are never reused). */
const SPARES = 2;
/** Messages in flight before the wire loses new ones (a full socket buffer). */
const NETWORK_CAPACITY = 256;
const TRACE_LINES = 50;
/** Mixed into the seed for the lazy-notification stream. */
const LAZY_STREAM = 0x2545f491;
/** Delivery passes per tick in the liveness phase (each pass is one network round trip). */
const PASSES_PER_TICK_MAX = 20;
/** Every this many steps, compare each core's log with its store entry by entry. */
const DEEP_CHECK_EVERY = 500;
/** Rounds of transport reports handed over at the end of one step. */
const REPORT_ROUNDS_MAX = 4;
/** Deliveries grow likelier as the wire fills, so that it rarely overflows. */
const DELIVER_BOOST_PER_MESSAGE = 1 / 32;

/**
 * A seeded, deterministic cluster in one process: members with memory stores and simulated state
 * machines, a simulated network and clock, all driven by ONE SeededRng from one seed. `run` picks
 * an event per step and checks every safety property after it; `healAll` + `runUntilConverged`
 * then require the cluster to recover.
 */
export class World {
  readonly seed: number;
  readonly rng: SeededRng;
  readonly swarm: Swarm;
  readonly nodes: SimNode[] = [];
  readonly net = new SimNetwork(NETWORK_CAPACITY);
  readonly checker = new Checker();
  readonly founding: ConfigState;
  readonly #trace = new Trace(TRACE_LINES);
  /** Decides lazy commit notification and when a lazy leader's owed notification goes out. */
  readonly #lazyRng: SeededRng;
  readonly #byId = new Map<NodeId, SimNode>();
  #calm = false;
  #step = 0;
  #commandSeq = 0;
  #readSeq = 0;
  #usedSpares = new Set<NodeId>();
  #pendingRemovals: Array<{ id: NodeId; index: number; term: number }> = [];
  #reports: Array<() => void> = [];
  /** The swarm's event weights in EVENT_KINDS order, and scratch space for each draw. */
  readonly #baseWeights: number[];
  readonly #weights: number[];
  /** What happened in this run, to see that a sweep reaches the interesting states. */
  readonly stats = { readsAsked: 0, crashesInReady: 0, snapshotsInstalled: 0, configChanges: 0, retired: 0, proposalsRefused: 0, lost: 0 };
  readonly counts: Record<EventKind, number> = Object.fromEntries(EVENT_KINDS.map((k) => [k, 0])) as Record<EventKind, number>;

  constructor(options: WorldOptions) {
    this.seed = options.seed;
    this.rng = new SeededRng(options.seed);
    const drawn = drawSwarm(this.rng, options.faults ?? 'swarm', options.members);
    // Drawn from a stream of its own, so a seed whose cores notify eagerly replays the schedule it
    // had before lazy notification existed (the regression seeds among them).
    this.#lazyRng = new SeededRng(options.seed ^ LAZY_STREAM);
    this.swarm = { ...drawn, core: { ...drawn.core, lazyCommitNotifyEntries: this.#lazyRng.chance(0.5) ? this.#lazyRng.int(1, 10) : 0 } };
    this.#baseWeights = EVENT_KINDS.map((k) => this.swarm.weights[k]);
    this.#weights = EVENT_KINDS.map(() => 0);
    const voters = Array.from({ length: this.swarm.members }, (_, i) => `n${i + 1}`);
    this.founding = { voters, learners: [] };
    const spares = Array.from({ length: SPARES }, (_, i) => `n${this.swarm.members + i + 1}`);
    const hooks = this.#hooks();
    for (const id of voters) this.#addNode(new SimNode(id, MemoryLogStore.fresh(this.founding), this.swarm.core, hooks));
    // A spare knows no configuration: it cannot campaign until a leader adds it and it learns one.
    for (const id of spares) this.#addNode(new SimNode(id, MemoryLogStore.fresh({ voters: [], learners: [] }), this.swarm.core, hooks));
    for (const n of this.nodes) n.start(this.#coreSeed());
  }

  get step(): number {
    return this.#step;
  }

  node(id: NodeId): SimNode | undefined {
    return this.#byId.get(id);
  }

  /** Everything observable about the run, in one string: equal for two runs of one seed. */
  fingerprint(): string {
    return JSON.stringify({
      step: this.#step,
      stats: this.stats,
      counts: this.counts,
      committed: this.checker.maxCommitted,
      terms: this.checker.leaderOfTerm.size,
      members: this.nodes.map((n) => this.#describeNode(n)),
      trace: this.#trace.lines(),
    });
  }

  /** Run `steps` random events, checking safety after each. */
  run(options: { steps: number }): void {
    this.#guard(() => {
      for (let i = 0; i < options.steps; i++) this.#oneStep();
      this.#deepCheck();
    });
  }

  /** End the faults: heal every link, stop losing messages, restart every crashed member. */
  healAll(): void {
    this.#guard(() => {
      this.#calm = true;
      this.net.heal();
      for (const n of this.nodes) if (n.state === 'down') this.#restart(n);
      this.#note('heal all; restart every crashed member; no more faults');
    });
  }

  /**
   * Liveness: within ticksMax ticks of a calm network, one leader that every member follows,
   * then a fresh proposal applied on every member and a read answered.
   */
  runUntilConverged(options: { ticksMax: number }): ConvergeResult {
    return this.#guard(() => this.#converge(options.ticksMax));
  }

  /** Carry out fn; any failure becomes a SimulationFailure that says how to replay it. */
  #guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof SimulationFailure) throw err;
      throw this.failure(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
    }
  }

  failure(what: string): SimulationFailure {
    const lines = [
      `seed ${this.seed} failed at step ${this.#step}: ${what}`,
      `replay: FLOTILLA_SEED=${this.seed} npx vitest run test/sim`,
      describeSwarm(this.swarm),
      `members: ${this.nodes.map((n) => this.#describeNode(n)).join(' | ')}`,
      `last ${TRACE_LINES} events:`,
      ...this.#trace.lines().map((l) => `  ${l}`),
    ];
    return new SimulationFailure(lines.join('\n'));
  }

  #describeNode(n: SimNode): string {
    const s = n.lastStatus;
    if (n.state !== 'up' || s === null) return `${n.id} ${n.state}`;
    const lastTerm = n.store.term(n.store.lastIndex()) ?? '?';
    const config = `voters=${s.config.voters.join(',')}${s.config.learners.length > 0 ? ` learners=${s.config.learners.join(',')}` : ''}`;
    return `${n.id} ${s.role} t${s.term} vote=${s.vote ?? '-'} lead=${s.leader ?? '-'} last=${s.lastIndex}/${lastTerm} c=${s.commit} a=${s.applied} ${config}`;
  }

  // ------------------------------------------------------------ one step

  #oneStep(): void {
    this.#step++;
    this.checker.now = this.#step;
    const kind = this.#pickEvent();
    if (kind !== null) {
      this.counts[kind]++;
      this.#do(kind);
    }
    this.#afterStep();
  }

  /** Draw the next event by weight, among those that can happen now (hot: runs every step). */
  #pickEvent(): EventKind | null {
    const base = this.#baseWeights;
    const weights = this.#weights;
    const anyDown = this.nodes.some((n) => n.state === 'down');
    let total = 0;
    for (let i = 0; i < EVENT_KINDS.length; i++) {
      const weight = this.#possible(EVENT_KINDS[i], anyDown) ? base[i] : 0;
      weights[i] = EVENT_KINDS[i] === 'deliver' ? weight * (1 + this.net.size * DELIVER_BOOST_PER_MESSAGE) : weight;
      total += weights[i];
    }
    if (total === 0) return null;
    let x = this.rng.next() * total;
    for (let i = 0; i < EVENT_KINDS.length; i++) {
      x -= weights[i];
      if (x < 0) return EVENT_KINDS[i];
    }
    return null;
  }

  #possible(kind: EventKind, anyDown: boolean): boolean {
    switch (kind) {
      case 'deliver':
      case 'drop':
      case 'duplicate':
      case 'delay':
        return this.net.size > 0;
      case 'restart':
        return anyDown;
      case 'heal':
        return this.net.cutLinks() > 0;
      default:
        return true;
    }
  }

  #do(kind: EventKind): void {
    switch (kind) {
      case 'deliver': return this.#deliverOne();
      case 'drop': return this.#dropOne();
      case 'duplicate': return this.#duplicateOne();
      case 'delay': return this.#delayOne();
      case 'tick': return this.#tick();
      case 'ready': return this.#readyOne();
      case 'crash': return this.#crashOne();
      case 'crashLeader': return this.#crashLeader();
      case 'restart': return this.#restartOne();
      case 'partition': return this.#partition();
      case 'isolateLeader': return this.#isolateLeader();
      case 'oneWay': return this.#oneWay();
      case 'heal': return this.#heal();
      case 'propose': return this.#propose();
      case 'read': return this.#read();
      case 'compact': return this.#compact();
      case 'transfer': return this.#transfer();
      case 'membership': return this.#membership();
      case 'campaign': return this.#campaign();
    }
  }

  #afterStep(): void {
    this.#flushReports();
    this.checker.checkDurability(this.nodes, this.founding);
    this.#retireRemoved();
    if (this.#step % DEEP_CHECK_EVERY === 0) this.#deepCheck();
  }

  // ------------------------------------------------------------ network events

  #deliverOne(): void {
    const env = this.net.take(this.rng, this.swarm.reorder);
    if (env !== null) this.#deliver(env.msg, env.image);
  }

  #deliver(msg: Message, image: Uint8Array | null): void {
    const to = this.#byId.get(msg.to);
    if (to === undefined || to.state !== 'up' || !this.net.canDeliver(msg.from, msg.to)) {
      this.#note(`lost ${describeMessage(msg)}${to?.state === 'up' ? ' (cut)' : ' (member down)'}`);
      this.#lost(msg);
      return;
    }
    this.#note(`deliver ${describeMessage(msg)}`);
    to.deliver(msg, image);
    if (msg.type === 'snapshot') this.#tellSender(msg, (n) => n.core.reportSnapshot(msg.to, true));
    this.#maybeProcess(to);
  }

  /** The runtime learns of a failed send: a snapshot is reported failed, others maybe unreachable. */
  #lost(msg: Message): void {
    this.stats.lost++;
    if (msg.type === 'snapshot') this.#tellSender(msg, (n) => n.core.reportSnapshot(msg.to, false));
    else if (this.rng.chance(this.swarm.reportUnreachable)) this.#tellSender(msg, (n) => n.core.reportUnreachable(msg.to));
  }

  /**
   * Send failures reach the runtime later, from the transport, never in the middle of a Ready:
   * queue the report and hand it over at the end of the step.
   */
  #tellSender(msg: Message, fn: (n: SimNode) => void): void {
    const incarnation = this.#byId.get(msg.from)?.incarnation;
    this.#reports.push(() => {
      const from = this.#byId.get(msg.from);
      if (from === undefined || from.state !== 'up' || from.incarnation !== incarnation) return;
      fn(from);
      from.hooks.observe(from);
      this.#maybeProcess(from);
    });
  }

  /** Hand over queued transport reports (bounded: reports may cause sends that cause reports). */
  #flushReports(): void {
    for (let round = 0; round < REPORT_ROUNDS_MAX && this.#reports.length > 0; round++) {
      const reports = this.#reports;
      this.#reports = [];
      for (const r of reports) r();
    }
    this.#reports = [];
  }

  #dropOne(): void {
    const env = this.net.take(this.rng, 1);
    if (env === null) return;
    this.#note(`drop ${describeMessage(env.msg)}`);
    this.#lost(env.msg);
  }

  #duplicateOne(): void {
    const env = this.net.duplicate(this.rng);
    if (env !== null) this.#note(`duplicate ${describeMessage(env.msg)}`);
  }

  #delayOne(): void {
    const env = this.net.delay();
    if (env !== null) this.#note(`delay ${describeMessage(env.msg)}`);
  }

  #partition(): void {
    const ids = this.#shuffled(this.nodes.filter((n) => n.state !== 'retired').map((n) => n.id));
    const k = this.rng.int(1, ids.length);
    const a = ids.slice(0, k);
    const b = ids.slice(k);
    this.net.partition(a, b);
    this.#note(`partition {${a.join(',')}} | {${b.join(',')}}`);
  }

  /** Cut a leader off, alone or with a minority that it cannot commit with. */
  #isolateLeader(): void {
    const leaders = this.#leaders();
    if (leaders.length === 0) return;
    const leader = this.#pick(leaders);
    const others = this.#shuffled(this.nodes.filter((n) => n.state !== 'retired' && n !== leader).map((n) => n.id));
    const voters = leader.core.config().voters.length;
    const companions = this.rng.int(0, Math.max(1, Math.floor((voters - 1) / 2)));
    const side = [leader.id, ...others.slice(0, companions)];
    this.net.partition(side, others.slice(companions));
    this.#note(`isolate leader {${side.join(',')}}`);
  }

  #oneWay(): void {
    const ids = this.nodes.filter((n) => n.state !== 'retired').map((n) => n.id);
    const from = this.#pick(ids);
    if (this.rng.chance(0.5)) {
      for (const to of ids) if (to !== from) this.net.cut(from, to);
      this.#note(`cut everything out of ${from}`);
      return;
    }
    const to = this.#pick(ids.filter((x) => x !== from));
    this.net.cut(from, to);
    this.#note(`cut ${from}→${to}`);
  }

  #heal(): void {
    this.net.heal();
    this.#note('heal');
  }

  // ------------------------------------------------------------ member events

  /** One tick of the simulated clock: every member's timer fires, except the ones drifting behind. */
  #tick(): void {
    const ticked: NodeId[] = [];
    for (const n of this.nodes) {
      if (n.state !== 'up' || this.rng.chance(this.swarm.clockSkew)) continue;
      ticked.push(n.id);
      n.tick();
      this.#maybeProcess(n);
    }
    this.#note(`tick ${ticked.join(',')}`);
  }

  #readyOne(): void {
    const n = this.#pickUp();
    if (n === null || !n.core.hasReady()) return;
    this.#note(`ready ${n.id}`);
    this.#processReady(n);
  }

  #crashOne(): void {
    const n = this.#pickUp();
    if (n !== null) n.crash(this.#crash(n, 'between events'));
  }

  /** How many unsynced writes survive this crash (a torn tail, in some runs). */
  #crash(n: SimNode, where: string): number {
    const unsynced = n.store.unsyncedWrites();
    const keep = unsynced > 0 && this.rng.chance(this.swarm.tornTail) ? this.rng.int(0, unsynced + 1) : 0;
    this.#note(`crash ${n.id} ${where} (keeps ${keep} of ${unsynced} unsynced writes)`);
    return keep;
  }

  #crashLeader(): void {
    const leaders = this.#leaders();
    if (leaders.length === 0) return;
    const n = this.#pick(leaders);
    n.crash(this.#crash(n, 'while leading'));
  }

  #restartOne(): void {
    const down = this.nodes.filter((n) => n.state === 'down');
    if (down.length > 0) this.#restart(this.#pick(down));
  }

  #restart(n: SimNode): void {
    this.#note(`restart ${n.id}`);
    n.start(this.#coreSeed());
    this.#maybeProcess(n);
  }

  #propose(): void {
    const leaders = this.#leaders();
    if (leaders.length === 0) return;
    const n = this.#pick(leaders);
    const burst = this.rng.int(1, 5);
    for (let i = 0; i < burst; i++) {
      const command = `c${++this.#commandSeq}`;
      const r = n.propose(command);
      this.#note(`propose ${command} on ${n.id}: ${r.ok ? `${r.index}/${r.term}` : r.code}`);
      if (!r.ok) {
        this.stats.proposalsRefused++;
        break;
      }
    }
    this.#maybeProcess(n);
  }

  #read(): void {
    const n = this.#pickUp();
    if (n === null) return;
    const context = ++this.#readSeq;
    this.checker.readStarted(n, context);
    const ok = n.readIndex(context);
    if (ok) this.stats.readsAsked++;
    else this.checker.readFailedToStart(context);
    this.#note(`read ${context} on ${n.id} (floor ${this.checker.maxApplied}): ${ok ? 'asked' : 'no leader'}`);
    this.#maybeProcess(n);
  }

  /** Snapshot a member's state machine; mostly up to what it applied, as a runtime would. */
  #compact(): void {
    const candidates = this.nodes.filter((n) => n.state === 'up' && n.machine.applied > n.store.snapshot().index);
    if (candidates.length === 0) return;
    const n = this.#pick(candidates);
    const lo = n.store.snapshot().index + 1;
    const hi = n.machine.applied;
    const index = this.rng.chance(0.7) ? hi : this.rng.int(lo, hi + 1);
    this.#note(`compact ${n.id} to ${index}`);
    n.compact(index);
  }

  #transfer(): void {
    const leaders = this.#leaders();
    if (leaders.length === 0) return;
    const n = this.#pick(leaders);
    const others = n.core.config().voters.filter((v) => v !== n.id);
    if (others.length === 0) return;
    const to = this.#pick(others);
    const ok = n.transferLeadership(to);
    this.#note(`transfer ${n.id}→${to}: ${ok}`);
    this.#maybeProcess(n);
  }

  #campaign(): void {
    const n = this.#pickUp();
    if (n === null) return;
    this.#note(`campaign ${n.id}`);
    n.campaign();
    this.#maybeProcess(n);
  }

  /** One single-server change on a leader: add a spare as learner, promote a learner, or remove someone. */
  #membership(): void {
    const leaders = this.#leaders();
    if (leaders.length === 0) return;
    const n = this.#pick(leaders);
    const c = n.core.config();
    const options: Array<{ type: 'addLearner' | 'promote' | 'remove'; id: NodeId }> = [];
    const spare = this.nodes.find((x) => !this.founding.voters.includes(x.id) && !this.#usedSpares.has(x.id));
    if (spare !== undefined) options.push({ type: 'addLearner', id: spare.id });
    for (const id of c.learners) options.push({ type: 'promote', id }, { type: 'remove', id });
    // Keep at least two voters, so that removals still leave a cluster that needs a quorum.
    if (c.voters.length > 2) for (const id of c.voters) options.push({ type: 'remove', id });
    if (options.length === 0) return;
    const change = this.#pick(options);
    if (this.#change(n, change) && change.type === 'addLearner') this.#usedSpares.add(change.id);
  }

  #change(n: SimNode, change: { type: 'addLearner' | 'promote' | 'remove'; id: NodeId }): boolean {
    const r = n.proposeConfigChange(change);
    this.#note(`config ${change.type} ${change.id} on ${n.id}: ${r.ok ? `${r.index}/${r.term}` : r.code}`);
    if (r.ok) this.stats.configChanges++;
    if (r.ok && change.type === 'remove') this.#pendingRemovals.push({ id: change.id, index: r.index, term: r.term });
    this.#maybeProcess(n);
    return r.ok;
  }

  /** Once a removal commits, the operator shuts the removed member down for good. */
  #retireRemoved(): void {
    if (this.#pendingRemovals.length === 0) return;
    this.#pendingRemovals = this.#pendingRemovals.filter((r) => {
      const term = this.checker.committedTermAt(r.index);
      if (term === undefined) return true;
      const node = this.#byId.get(r.id);
      if (term === r.term && node !== undefined && node.state !== 'retired') {
        this.#note(`retire ${r.id} (its removal ${r.index}/${r.term} committed)`);
        node.retire();
        this.stats.retired++;
      }
      return false;
    });
  }

  // ------------------------------------------------------------ the per-member runtime loop

  #maybeProcess(n: SimNode): void {
    if (n.state === 'up' && (this.#calm || this.rng.chance(this.swarm.eagerReady))) this.#processReady(n);
  }

  /**
   * With lazy commit notification, the runtime's short timer: after some Readies, a leader sends
   * the commit index it still owes; otherwise the next append or heartbeat carries it.
   */
  #processReady(n: SimNode): void {
    n.processReady();
    if (n.state === 'up' && n.core.commitNotifyOwed() && this.#lazyRng.chance(0.3)) {
      this.#note(`notify commit ${n.id}`);
      n.core.notifyCommit();
    }
  }

  #hooks(): NodeHooks {
    return {
      observe: (n) => {
        n.lastStatus = n.core.status();
        this.checker.observe(n, n.lastStatus, this.nodes);
      },
      saved: (n, ready: Ready) => this.checker.saved(n, ready),
      send: (n, messages) => this.#send(n, messages),
      applied: (n, entry: Entry, command: string | null) => this.checker.applied(n, entry, command),
      snapshotInstalled: (n, meta: SnapshotMeta) => {
        this.stats.snapshotsInstalled++;
        this.checker.snapshotInstalled(n, meta);
      },
      readState: (n, rs: ReadState) => this.checker.readState(n, rs),
      crashAt: (n, point: CrashPoint) => {
        if (this.#calm || !this.rng.chance(this.swarm.crashInReady)) return null;
        this.stats.crashesInReady++;
        return this.#crash(n, `after ${point}`);
      },
    };
  }

  #send(n: SimNode, messages: readonly Message[]): void {
    for (const m of messages) {
      let image: Uint8Array | null = null;
      if (m.type === 'snapshot') {
        const have = n.store.snapshot();
        if (have.index !== m.snapshot.index || have.term !== m.snapshot.term) {
          throw new Violation(`snapshot: ${n.id} sends snapshot ${m.snapshot.index}/${m.snapshot.term} but its store holds ${have.index}/${have.term}`);
        }
        image = n.store.snapshotImage();
      }
      if (!this.net.send(m, image)) {
        this.#note(`wire full: lost ${describeMessage(m)}`);
        this.#lost(m);
      }
    }
  }

  // ------------------------------------------------------------ liveness

  #converge(ticksMax: number): ConvergeResult {
    let probe: Probe | null = null;
    let read: { context: number; node: SimNode } | null = null;
    let reason = 'no leader yet';
    for (let tick = 1; tick <= ticksMax; tick++) {
      this.#step++;
      this.checker.now = this.#step;
      for (const n of this.nodes) if (n.state === 'up') this.#tickAndProcess(n);
      this.#drainNetwork();
      this.#afterStep();
      const leader = this.#agreedLeader();
      if (typeof leader === 'string') {
        reason = leader;
        continue;
      }
      if (probe === null || this.#probeLost(probe, leader)) {
        probe = this.#proposeProbe(leader);
        reason = 'probe refused';
        continue;
      }
      const probeIndex = probe.index;
      const lagging = this.#members(leader).filter((n) => n.machine.applied < probeIndex);
      if (lagging.length > 0) {
        reason = `probe ${probe.command} at ${probe.index} not yet applied on ${lagging.map((n) => n.id).join(',')}`;
        continue;
      }
      const answer = read === null ? undefined : this.checker.readAnswers.get(read.context);
      if (read !== null && answer !== undefined && answer >= probe.index) {
        this.#deepCheck();
        return { converged: true, ticks: tick, reason: 'converged' };
      }
      // No read yet, or it failed (index 0) when leadership moved: ask again.
      if (read === null || answer === 0) read = this.#startProbeRead(leader);
      reason = read === null ? 'read refused' : `read ${read.context} on ${read.node.id} not answered`;
    }
    return { converged: false, ticks: ticksMax, reason };
  }

  /** The probe's leader lost it: its slot was committed with another entry, or leadership moved on. */
  #probeLost(probe: Probe, leader: SimNode): boolean {
    const term = this.checker.committedTermAt(probe.index);
    if (term !== undefined) return term !== probe.term;
    return leader.id !== probe.leader || leader.lastStatus?.term !== probe.term;
  }

  #tickAndProcess(n: SimNode): void {
    n.tick();
    n.processReady();
  }

  /** Deliver everything in flight, round trip after round trip, until the wire is quiet (bounded). */
  #drainNetwork(): void {
    for (let pass = 0; pass < PASSES_PER_TICK_MAX && this.net.size > 0; pass++) {
      for (const env of this.net.takeAll()) this.#deliver(env.msg, env.image);
    }
  }

  /** The one leader every member of its configuration follows, or why there is none. */
  #agreedLeader(): SimNode | string {
    const leaders = this.#leaders();
    if (leaders.length !== 1) return `${leaders.length} leaders`;
    const leader = leaders[0];
    const s = leader.lastStatus!;
    for (const n of this.#members(leader)) {
      const ns = n.lastStatus;
      if (n.state !== 'up' || ns === null) return `${n.id} is ${n.state}`;
      if (ns.leader !== leader.id || ns.term !== s.term) return `${n.id} follows ${ns.leader ?? 'nobody'} in term ${ns.term}, not ${leader.id} in ${s.term}`;
    }
    return leader;
  }

  #members(leader: SimNode): SimNode[] {
    const c = leader.core.config();
    return [...c.voters, ...c.learners].map((id) => this.#byId.get(id)!).filter((n) => n !== undefined);
  }

  #proposeProbe(leader: SimNode): Probe | null {
    const command = `probe${++this.#commandSeq}`;
    const r = leader.propose(command);
    this.#note(`liveness probe ${command} on ${leader.id}: ${r.ok ? `${r.index}/${r.term}` : r.code}`);
    leader.processReady();
    return r.ok ? { index: r.index, term: r.term, command, leader: leader.id } : null;
  }

  #startProbeRead(leader: SimNode): { context: number; node: SimNode } | null {
    const node = this.#pick(this.#members(leader));
    const context = ++this.#readSeq;
    this.checker.readStarted(node, context);
    const ok = node.readIndex(context);
    this.#note(`liveness read ${context} on ${node.id}: ${ok ? 'asked' : 'no leader'}`);
    if (!ok) {
      this.checker.readFailedToStart(context);
      return null;
    }
    node.processReady();
    return { context, node };
  }

  /**
   * Each core's stable log must equal what its store holds, entry for entry. Only between Ready
   * batches: a core that just took a snapshot counts it stable before its Ready is saved.
   */
  #deepCheck(): void {
    for (const n of this.nodes) {
      if (n.state !== 'up' || n.core.hasReady()) continue;
      const s = n.core.status();
      const lo = Math.max(s.firstIndex, n.store.snapshot().index + 1);
      const hi = Math.min(s.stableIndex, n.store.lastIndex());
      if (s.stableIndex > n.store.lastIndex()) throw new Violation(`store: ${n.id} core says ${s.stableIndex} is durable, the store ends at ${n.store.lastIndex()}`);
      if (hi < lo) continue;
      const mem = n.core.entriesFrom(lo, hi + 1);
      const disk = n.store.entries(lo, hi + 1);
      for (let i = 0; i < mem.length; i++) {
        if (mem[i].term !== disk[i]?.term) throw new Violation(`store: ${n.id} holds ${mem[i].index}/${mem[i].term} in memory but term ${disk[i]?.term} on disk`);
      }
    }
  }

  // ------------------------------------------------------------ helpers

  #addNode(n: SimNode): void {
    this.nodes.push(n);
    this.#byId.set(n.id, n);
  }

  #leaders(): SimNode[] {
    return this.nodes.filter((n) => n.state === 'up' && n.lastStatus?.role === 'leader');
  }

  #pickUp(): SimNode | null {
    const up = this.nodes.filter((n) => n.state === 'up');
    return up.length === 0 ? null : this.#pick(up);
  }

  #pick<T>(items: readonly T[]): T {
    return items[this.rng.int(0, items.length)];
  }

  #shuffled<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.rng.int(0, i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }

  #coreSeed(): number {
    return this.rng.int(0, 0x7fff_ffff);
  }

  #note(line: string): void {
    this.#trace.add(`${this.#step} ${line}`);
  }
}

/** One seed end to end: faults for `steps`, then heal and require convergence. */
export function runSeed(seed: number, options: { steps: number; members?: number }): World {
  const world = new World({ seed, members: options.members });
  world.run({ steps: options.steps });
  world.healAll();
  const result = world.runUntilConverged({ ticksMax: 20 * ELECTION_TICKS });
  if (!result.converged) throw world.failure(`no convergence within ${result.ticks} ticks after heal: ${result.reason}`);
  return world;
}
