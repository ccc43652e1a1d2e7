import type { RaftInitialState, RaftStatus } from '../../src/raft/raft-core.js';
import type { ConfigState, Entry, Message, NodeId, ReadState } from '../../src/raft/types.js';
import { MemoryLogStore } from '../../src/storage/memory-log-store.js';
import { Checker } from './invariants.js';
import type { CoreOptions, NodeHooks } from './sim-node.js';
import { SimNode } from './sim-node.js';
import { describeMessage } from './trace.js';

export type MessageFilter = (m: Message) => boolean;

export interface ManualClusterOptions {
  readonly ids: readonly NodeId[];
  /** The founding configuration (default: every id a voter). */
  readonly config?: ConfigState;
  /** Members that start from a given disk state (Figure 7 logs, say) instead of empty. */
  readonly initial?: Readonly<Record<NodeId, RaftInitialState>>;
  readonly core?: Partial<CoreOptions>;
}

/** Rounds of delivery before `deliverAll` gives up: a scripted scenario that never goes quiet is a bug. */
const DELIVER_ROUNDS_MAX = 100;
const DEFAULT_CORE: CoreOptions = { electionTicks: 10, heartbeatTicks: 1 };

/**
 * A tiny cluster for scripted scenarios: the same SimNode runtime loop and Checker as the
 * simulator, but every message waits in a queue until the test delivers, drops or holds it, and
 * each delivery is written to a text trace for inline snapshots.
 */
export class ManualCluster {
  readonly nodes = new Map<NodeId, SimNode>();
  readonly checker = new Checker();
  /** Messages sent and not yet delivered or dropped, oldest first. */
  queue: Message[] = [];
  readonly trace: string[] = [];
  readonly readStates = new Map<NodeId, ReadState[]>();
  #cut = new Set<string>();
  #seed = 1;

  constructor(options: ManualClusterOptions) {
    const config = options.config ?? { voters: options.ids, learners: [] };
    const core = { ...DEFAULT_CORE, ...options.core };
    for (const id of options.ids) {
      const initial = options.initial?.[id];
      const store = initial !== undefined ? new MemoryLogStore(initial) : MemoryLogStore.fresh(config);
      if (initial !== undefined) this.checker.assumeCommitted(initial.entries, initial.hardState.commit);
      this.nodes.set(id, new SimNode(id, store, core, this.#hooks()));
      this.readStates.set(id, []);
    }
    for (const n of this.nodes.values()) n.start(this.#seed++);
  }

  node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no member ${id}`);
    return n;
  }

  status(id: NodeId): RaftStatus {
    return this.node(id).core.status();
  }

  /** The log as `index/term` pairs, e.g. "1/1 2/1 3/4". */
  log(id: NodeId): string {
    const n = this.node(id);
    const s = n.core.status();
    return n.core.entriesFrom(s.firstIndex, s.lastIndex + 1).map((e) => `${e.index}/${e.term}`).join(' ');
  }

  /** Terms of the log in index order, e.g. "1 1 1 4 4" (Figure 7's notation). */
  terms(id: NodeId): string {
    const n = this.node(id);
    const s = n.core.status();
    return n.core.entriesFrom(s.firstIndex, s.lastIndex + 1).map((e) => e.term).join(' ');
  }

  /** The one member that considers itself leader, or null. */
  leader(): NodeId | null {
    const leaders = [...this.nodes.values()].filter((n) => n.state === 'up' && n.core.status().role === 'leader');
    return leaders.length === 1 ? leaders[0].id : null;
  }

  /** Carry out every member's pending Ready (messages go to the queue). */
  flush(): void {
    for (const n of this.nodes.values()) if (n.state === 'up') n.processReady();
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) {
      this.node(id).tick();
      this.node(id).processReady();
    }
  }

  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const n of this.nodes.values()) if (n.state === 'up') n.tick();
      this.flush();
    }
  }

  /** Let time pass with a working network: each tick, every member ticks, then all mail is delivered. */
  run(ticks: number, filter: MessageFilter = () => true): void {
    for (let i = 0; i < ticks; i++) {
      this.tickAll();
      this.deliverAll(filter);
    }
  }

  campaign(id: NodeId): void {
    this.note(`${id} campaigns`);
    this.node(id).campaign();
    this.flush();
  }

  propose(id: NodeId, command: string): number {
    const r = this.node(id).propose(command);
    this.flush();
    if (!r.ok) throw new Error(`${id} refused ${command}: ${r.code}`);
    return r.index;
  }

  /** Ask `id` for a read index; the answer shows up in `readStates` (and the checker checks it). */
  read(id: NodeId, context: number): boolean {
    const n = this.node(id);
    this.checker.readStarted(n, context);
    const ok = n.readIndex(context);
    if (!ok) this.checker.readFailedToStart(context);
    this.flush();
    return ok;
  }

  /** Deliver queued messages that match, once each, oldest first; returns how many went. */
  deliver(filter: MessageFilter = () => true): number {
    const take = this.queue.filter(filter);
    this.queue = this.queue.filter((m) => !filter(m));
    for (const m of take) this.#deliverOne(m);
    return take.length;
  }

  /** Deliver until the queue is empty (messages across cut links are lost). */
  deliverAll(filter: MessageFilter = () => true): void {
    for (let round = 0; round < DELIVER_ROUNDS_MAX; round++) {
      if (this.deliver(filter) === 0) return;
    }
    throw new Error(`messages still flowing after ${DELIVER_ROUNDS_MAX} rounds`);
  }

  /** Lose queued messages that match. */
  drop(filter: MessageFilter): number {
    const before = this.queue.length;
    for (const m of this.queue.filter(filter)) this.note(`drop ${describeMessage(m)}`);
    this.queue = this.queue.filter((m) => !filter(m));
    return before - this.queue.length;
  }

  /** Cut `id` off from everyone, both ways. */
  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.#cut.add(`${id}>${other}`);
      this.#cut.add(`${other}>${id}`);
    }
    this.note(`isolate ${id}`);
  }

  cut(from: NodeId, to: NodeId): void {
    this.#cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.#cut.clear();
    this.note('heal');
  }

  crash(id: NodeId): void {
    this.node(id).crash(0);
    this.note(`crash ${id}`);
  }

  restart(id: NodeId): void {
    this.node(id).start(this.#seed++);
    this.note(`restart ${id}`);
    this.node(id).processReady();
  }

  note(line: string): void {
    this.trace.push(line);
  }

  /** The trace since `from`, as one string for an inline snapshot. */
  traceFrom(from: number, filter: (line: string) => boolean = () => true): string {
    return this.trace.slice(from).filter(filter).join('\n');
  }

  #deliverOne(m: Message): void {
    const to = this.nodes.get(m.to);
    if (to === undefined || to.state !== 'up' || this.#cut.has(`${m.from}>${m.to}`)) {
      this.note(`lost ${describeMessage(m)}`);
      return;
    }
    this.note(describeMessage(m));
    to.deliver(m, m.type === 'snapshot' ? this.node(m.from).store.snapshotImage() : null);
    if (m.type === 'snapshot') this.node(m.from).core.reportSnapshot(m.to, true);
    this.flush();
  }

  #hooks(): NodeHooks {
    const nodes = () => [...this.nodes.values()];
    return {
      observe: (n) => {
        n.lastStatus = n.core.status();
        this.checker.observe(n, n.lastStatus, nodes());
      },
      saved: (n, ready) => this.checker.saved(n, ready),
      send: (_n, messages) => {
        for (const m of messages) this.queue.push(m);
      },
      applied: (n, entry: Entry, command) => this.checker.applied(n, entry, command),
      snapshotInstalled: (n, meta) => this.checker.snapshotInstalled(n, meta),
      readState: (n, rs) => {
        this.readStates.get(n.id)?.push(rs);
        this.checker.readState(n, rs);
      },
      crashAt: () => null,
    };
  }
}

/** Predicates for `deliver` and `drop`. */
export const to = (...ids: NodeId[]): MessageFilter => (m) => ids.includes(m.to);
export const from = (...ids: NodeId[]): MessageFilter => (m) => ids.includes(m.from);
export const ofType = (...types: Message['type'][]): MessageFilter => (m) => types.includes(m.type);
export const all = (...filters: MessageFilter[]): MessageFilter => (m) => filters.every((f) => f(m));

/** A disk state holding entries with the given terms from index 1 (Figure 7's notation). */
export function logWithTerms(terms: readonly number[], hard: { term: number; commit?: number }, config: ConfigState): RaftInitialState {
  const entries: Entry[] = terms.map((term, i) => ({ index: i + 1, term, type: 'normal', data: new TextEncoder().encode(`x${i + 1}t${term}`) }));
  return {
    hardState: { term: hard.term, vote: null, commit: hard.commit ?? 0 },
    snapshot: { index: 0, term: 0, config },
    entries,
    applied: 0,
  };
}
