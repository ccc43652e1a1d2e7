import type { ConfigChange, ProposeResult, RaftOptions, RaftStatus } from '../../src/raft/raft-core.js';
import { RaftCore } from '../../src/raft/raft-core.js';
import type { Ready } from '../../src/raft/ready.js';
import type { Entry, Message, NodeId, ReadState, SnapshotMeta } from '../../src/raft/types.js';
import { MemoryLogStore } from '../../src/storage/memory-log-store.js';
import { SeededRng } from '../../src/util/rng.js';
import { assert } from '../../src/util/assert.js';
import { SimMachine, encodeCommand } from './sim-machine.js';

/** The instants inside one Ready at which the simulation may kill the process. */
export type CrashPoint = 'saved' | 'synced' | 'sent' | 'applied';

/** What the world learns from a node as it carries out its Ready batches. */
export interface NodeHooks {
  /** After every call into the core: the checker looks at its status. */
  observe(node: SimNode): void;
  /** The Ready's snapshot, entries and hard state are in the store (maybe unsynced). */
  saved(node: SimNode, ready: Ready): void;
  send(node: SimNode, messages: readonly Message[]): void;
  applied(node: SimNode, entry: Entry, command: string | null): void;
  snapshotInstalled(node: SimNode, meta: SnapshotMeta): void;
  readState(node: SimNode, state: ReadState): void;
  /** Return the number of unsynced writes that survive to crash here, or null to carry on. */
  crashAt(node: SimNode, point: CrashPoint): number | null;
}

export type CoreOptions = Omit<RaftOptions, 'id' | 'rng' | 'logger'>;

export type NodeState = 'up' | 'down' | 'retired';

/** More Ready batches than this from one input means the core never settles. */
const READY_ROUNDS_MAX = 16;

/**
 * One member as the runtime runs it: a RaftCore, its MemoryLogStore and the simulated state
 * machine, driven exactly as src/member/driver.ts drives them (save, sync, send, apply, answer
 * reads, advance). A crash throws the core and the page cache away; a restart rebuilds both from
 * what the store kept.
 */
export class SimNode {
  readonly id: NodeId;
  readonly store: MemoryLogStore;
  #core: RaftCore | null = null;
  #machine = new SimMachine();
  #state: NodeState = 'down';
  /** Images received beside snapshot messages, until the core's Ready asks to install one. */
  #images = new Map<string, Uint8Array>();
  /** The status after the last call into the core (checkers read it without calling again). */
  lastStatus: RaftStatus | null = null;
  incarnation = 0;

  /** The core's options; a scenario may change them, to take effect at the next start. */
  options: CoreOptions;

  constructor(
    id: NodeId,
    store: MemoryLogStore,
    options: CoreOptions,
    readonly hooks: NodeHooks,
  ) {
    this.id = id;
    this.store = store;
    this.options = options;
  }

  get state(): NodeState {
    return this.#state;
  }

  get machine(): SimMachine {
    return this.#machine;
  }

  /** The live core; only call when `state === 'up'`. */
  get core(): RaftCore {
    assert(this.#core !== null, `${this.id} is not running`);
    return this.#core;
  }

  /** Start (or restart) from what the store holds, replaying the log into a fresh state machine. */
  start(rngSeed: number): void {
    assert(this.#state === 'down', `${this.id} started while ${this.#state}`);
    const loaded = this.store.load();
    this.#machine = SimMachine.fromImage(loaded.image, loaded.snapshot.index);
    for (const e of loaded.entries) {
      if (e.index > loaded.applied) break;
      this.hooks.applied(this, e, this.#machine.apply(e));
    }
    assert(this.#machine.applied === loaded.applied, `${this.id}: store applied ${loaded.applied} but its log replays to ${this.#machine.applied}`);
    this.#core = new RaftCore({ ...this.options, id: this.id, rng: new SeededRng(rngSeed) }, loaded);
    this.#state = 'up';
    this.incarnation++;
    this.hooks.observe(this);
    const applied = this.core.status().applied;
    assert(applied === loaded.applied, `${this.id}: core resumed at applied ${applied}, the state machine is at ${loaded.applied}`);
  }

  /** The process dies: the core and the page cache go, `keepUnsynced` writes reach the disk. */
  crash(keepUnsynced: number): void {
    assert(this.#state === 'up', `${this.id} crashed while ${this.#state}`);
    this.store.crash(keepUnsynced);
    this.#core = null;
    this.#images.clear();
    this.lastStatus = null;
    this.#state = 'down';
  }

  /** Removed from the cluster and shut down for good (an operator stops removed members). */
  retire(): void {
    if (this.#state === 'up') this.crash(0);
    this.#state = 'retired';
  }

  deliver(msg: Message, image: Uint8Array | null): void {
    if (msg.type === 'snapshot' && image !== null) this.#images.set(imageKey(msg.snapshot), image);
    this.core.step(msg);
    this.hooks.observe(this);
  }

  tick(): void {
    this.core.tick();
    this.hooks.observe(this);
  }

  propose(command: string): ProposeResult {
    const result = this.core.propose(encodeCommand(command));
    this.hooks.observe(this);
    return result;
  }

  proposeConfigChange(change: ConfigChange): ProposeResult {
    const result = this.core.proposeConfigChange(change);
    this.hooks.observe(this);
    return result;
  }

  readIndex(context: number): boolean {
    const result = this.core.readIndex(context);
    this.hooks.observe(this);
    return result.ok;
  }

  transferLeadership(to: NodeId): boolean {
    const ok = this.core.transferLeadership(to);
    this.hooks.observe(this);
    return ok;
  }

  campaign(): void {
    this.core.campaign();
    this.hooks.observe(this);
  }

  /** Snapshot the state machine at `index` into the store, then let the core drop the log prefix. */
  compact(index: number): void {
    this.store.compact(index, this.#machine.image(index));
    this.core.compact(index);
    this.hooks.observe(this);
  }

  /** Carry out Ready batches until the core has nothing left (bounded). Stops if the node crashes. */
  processReady(): void {
    for (let round = 0; this.#state === 'up' && this.core.hasReady(); round++) {
      assert(round < READY_ROUNDS_MAX, `${this.id}: the core still has work after ${READY_ROUNDS_MAX} Ready batches`);
      this.#handleReady(this.core.ready());
    }
  }

  #handleReady(ready: Ready): void {
    const image = ready.snapshot === null ? null : this.#takeImage(ready.snapshot);
    this.store.save(ready, image);
    this.hooks.saved(this, ready);
    if (this.#maybeCrash('saved')) return;
    if (ready.mustSync) this.store.sync();
    if (this.#maybeCrash('synced')) return;
    this.hooks.send(this, ready.messages);
    if (this.#maybeCrash('sent')) return;
    this.#apply(ready, image);
    if (this.#maybeCrash('applied')) return;
    for (const rs of ready.readStates) this.hooks.readState(this, rs);
    this.core.advance(ready);
    this.hooks.observe(this);
  }

  #apply(ready: Ready, image: Uint8Array | null): void {
    if (ready.snapshot !== null && image !== null) {
      this.#machine = SimMachine.fromImage(image, ready.snapshot.index);
      this.hooks.snapshotInstalled(this, ready.snapshot);
    }
    for (const e of ready.committed) this.hooks.applied(this, e, this.#machine.apply(e));
    const last = ready.committed[ready.committed.length - 1];
    if (last !== undefined) this.store.saveApplied(last.index);
  }

  #takeImage(meta: SnapshotMeta): Uint8Array {
    const key = imageKey(meta);
    const image = this.#images.get(key);
    assert(image !== undefined, `${this.id}: the core installs snapshot ${key} but no image came with it`);
    this.#images.clear();
    return image;
  }

  #maybeCrash(point: CrashPoint): boolean {
    const keep = this.hooks.crashAt(this, point);
    if (keep === null) return false;
    this.crash(keep);
    return true;
  }
}

function imageKey(meta: SnapshotMeta): string {
  return `${meta.index}/${meta.term}`;
}
