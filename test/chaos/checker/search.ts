/**
 * Wing & Gong's linearizability search with Lowe's memoization, as Porcupine does it: a depth-first
 * search over which pending op to linearize next, remembering each (set of linearized ops, model
 * state) it has reached so that no configuration is explored twice.
 *
 * Required (ok) ops must all be linearized, each between its invocation and its completion.
 * Optional (unknown-outcome) ops never complete: each may be linearized once at any point after its
 * invocation, or never. So the search succeeds as soon as every required op is linearized. Left
 * alone, optional ops multiply the configurations (each may or may not have happened by any point),
 * so the search only considers orders of a normal form that loses no linearization:
 *   - an optional op is linearized only right before an op that needs it, one that would be illegal
 *     without it. In any linearization an optional op not needed by its successor either changes
 *     nothing that matters (drop it) or commutes with the successor (move it later); see #frame;
 *   - optional ops with identical effects are interchangeable: only the earliest invoked pending one
 *     of each kind is tried;
 *   - a pending read that is legal as it stands is linearized at once, alone (see isPure);
 *   - dominance: a configuration with the same required ops and state as one already explored, and a
 *     superset of its optional ops, can do nothing that one could not (optional ops have no deadline).
 * And configurations that are already dead are cut at once: overwriting a value some pending read
 * still has to see, with no pending write able to bring it back (#strandsReads), or raising the
 * floor past a pending write's known revision (#strandsWrites; known revisions order the writes).
 *
 * The normal form relies on what register-model.ts guarantees: optional ops never move the floor, and
 * values are unique per write.
 */
import { assert } from '../../../src/util/assert.js';
import { ABSENT, NO_REV, sameState, step, UNREAD, type Effect, type KeyOp, type RegisterState } from './register-model.js';

export type Verdict = 'linearizable' | 'not-linearizable' | 'timeout';

export interface SearchBudget {
  readonly maxSteps: number;
  /** Give up once now() passes this. */
  readonly deadlineMs: number;
  readonly now: () => number;
}

export interface SearchResult {
  readonly verdict: Verdict;
  readonly steps: number;
  /** The state the search started from. */
  readonly start: RegisterState;
  /** A complete linearization (linearizable), else the longest valid prefix found, in order. */
  readonly longest: readonly KeyOp[];
  /** The model state after `longest`. */
  readonly longestState: RegisterState;
}

/** Reading the clock every step would cost more than the step. */
const CLOCK_CHECK_INTERVAL_STEPS = 1024;
/** Frame.chosen of the root frame, which no op led to. */
const ROOT = 0x7fffffff;

export function searchLinearization(ops: readonly KeyOp[], start: RegisterState, budget: SearchBudget): SearchResult {
  return new Search(ops).run(start, budget);
}

interface Frame {
  readonly state: RegisterState;
  /** Set when an optional op led here: the state before it, which the next op must need changed. */
  readonly before: RegisterState | null;
  /** The candidate linearized to reach this frame (a required index, or ~index of an optional op). */
  readonly chosen: number;
  readonly candidates: readonly number[];
  next: number;
}

/** The configurations seen with one set of required ops and one state: their optional-op sets. */
interface SeenBucket {
  readonly required: Bitset;
  readonly optionals: Bitset[];
}

interface Best {
  readonly chosen: readonly number[];
  readonly state: RegisterState;
  readonly requiredDone: number;
}

class Search {
  readonly #required: readonly KeyOp[];
  readonly #optional: readonly KeyOp[];
  /** Optional ops of equal class have identical effects. */
  readonly #optionalClass: Int32Array;
  readonly #classStamp: Int32Array;
  #stamp = 0;
  /** Pending required ops by invocation and by completion; pending optional ops by invocation. */
  readonly #byInvoke: LinkedOrder;
  readonly #byComplete: LinkedOrder;
  /** Pending required writes whose revision is known, by revision. */
  readonly #byRevision: LinkedOrder;
  readonly #revisionOf: Float64Array;
  readonly #optionalByInvoke: LinkedOrder;
  readonly #requiredDone: Bitset;
  readonly #optionalDone: Bitset;
  /** Zobrist hashes of #requiredDone, two words to make collisions (checked anyway) rare. */
  readonly #zobristA: Uint32Array;
  readonly #zobristB: Uint32Array;
  #hashA = 0;
  #hashB = 0;
  #remaining: number;
  /** Per value slot (see slotOf): pending reads that return it, pending ops that can (re)establish it. */
  readonly #pendingReads: Int32Array;
  readonly #pendingWrites: Int32Array;
  /** Keyed by the Zobrist hash of the required set and the state; a list in case hashes collide. */
  readonly #seen = new Map<string, SeenBucket[]>();
  #steps = 0;
  #start: RegisterState | undefined;

  constructor(ops: readonly KeyOp[]) {
    this.#required = ops.filter((o) => o.required).sort(byInvocation);
    this.#optional = ops.filter((o) => !o.required).sort(byInvocation);
    const n = this.#required.length;
    this.#remaining = n;
    this.#byInvoke = new LinkedOrder(n, range(n));
    this.#byComplete = new LinkedOrder(n, range(n).sort((a, b) => byCompletion(this.#required[a], this.#required[b])));
    this.#revisionOf = Float64Array.from(this.#required, (o) => knownRevision(o.effect));
    const known = range(n).filter((i) => this.#revisionOf[i] > 0);
    this.#byRevision = new LinkedOrder(n, known.sort((a, b) => this.#revisionOf[a] - this.#revisionOf[b]));
    this.#optionalByInvoke = new LinkedOrder(this.#optional.length, range(this.#optional.length));
    this.#requiredDone = new Bitset(n);
    this.#optionalDone = new Bitset(this.#optional.length);
    this.#zobristA = Uint32Array.from(range(n), (i) => mix32(2 * i + 1));
    this.#zobristB = Uint32Array.from(range(n), (i) => mix32(2 * i + 2));
    this.#optionalClass = classify(this.#optional);
    this.#classStamp = new Int32Array(this.#optional.length);
    const slots = 1 + ops.reduce((max, o) => Math.max(max, slotOf(valueIdOf(o.effect))), 0);
    this.#pendingReads = new Int32Array(slots);
    this.#pendingWrites = new Int32Array(slots);
    for (const o of ops) this.#count(o.effect, 1);
  }

  run(start: RegisterState, budget: SearchBudget): SearchResult {
    this.#start = start;
    if (this.#remaining === 0) return this.#result('linearizable', [], start);
    let best: Best = { chosen: [], state: start, requiredDone: 0 };
    const frames: Frame[] = [this.#frame(start, ROOT, null)];
    this.#remember(start);
    while (frames.length > 0) {
      if (this.#outOfBudget(budget)) return this.#result('timeout', best.chosen, best.state);
      const top = frames[frames.length - 1];
      if (top.next === top.candidates.length) {
        frames.pop();
        if (top.chosen !== ROOT) this.#undo(top.chosen);
        continue;
      }
      const chosen = top.candidates[top.next++];
      const state = this.#tryStep(top.state, chosen);
      if (state === null) continue;
      this.#do(chosen);
      if (this.#isDominated(state)) {
        this.#undo(chosen);
        continue;
      }
      // A frame reached by an optional op explores only part of its configuration: not a dominator.
      if (chosen >= 0) this.#remember(state);
      if (this.#remaining === 0) return this.#result('linearizable', [...pathOf(frames), chosen], state);
      frames.push(this.#frame(state, chosen, chosen < 0 ? top.state : null));
      const done = this.#required.length - this.#remaining;
      if (done > best.requiredDone) best = { chosen: pathOf(frames), state, requiredDone: done };
    }
    return this.#result('not-linearizable', best.chosen, best.state);
  }

  #outOfBudget(budget: SearchBudget): boolean {
    this.#steps++;
    if (this.#steps > budget.maxSteps) return true;
    return this.#steps % CLOCK_CHECK_INTERVAL_STEPS === 0 && budget.now() > budget.deadlineMs;
  }

  #tryStep(state: RegisterState, chosen: number): RegisterState | null {
    const next = step(state, this.#op(chosen).effect);
    if (next === null) return null;
    if (chosen < 0 && sameState(next, state)) return null;
    if (next.valueId !== state.valueId && this.#strandsReads(state.valueId)) return null;
    if (next.floor > state.floor && this.#strandsWrites(chosen, next.floor)) return null;
    return next;
  }

  /** Raising the floor to `floor` is hopeless if another pending write was given a revision not above it. */
  #strandsWrites(chosen: number, floor: number): boolean {
    const order = this.#byRevision;
    let i = order.first();
    if (i === chosen) i = order.next[i];
    return i !== order.head && this.#revisionOf[i] <= floor;
  }

  /**
   * Leaving value `valueId` behind is hopeless if a pending read still has to return it and no
   * pending op can bring it back (values are unique per write; absence comes back by a delete).
   */
  #strandsReads(valueId: number): boolean {
    const slot = slotOf(valueId);
    return slot >= 0 && this.#pendingReads[slot] > 0 && this.#pendingWrites[slot] === 0;
  }

  #count(effect: Effect, delta: number): void {
    if (effect.type === 'read') {
      this.#pendingReads[slotOf(effect.valueId)] += delta;
      return;
    }
    const slot = slotOf(valueIdOf(effect));
    if (slot >= 0 && (effect.type === 'write' || effect.type === 'delete')) this.#pendingWrites[slot] += delta;
  }

  /**
   * The ops that may go next: every pending op invoked no later than the earliest completion among
   * pending required ops (that one must be linearized before anything invoked after it completes).
   * After an optional op, only those it made legal (illegal in `before`).
   */
  #frame(state: RegisterState, chosen: number, before: RegisterState | null): Frame {
    const minComplete = this.#required[this.#byComplete.first()].completeMs;
    const needed = (o: KeyOp): boolean => before === null || step(before, o.effect) === null;
    const candidates: number[] = [];
    const invoke = this.#byInvoke;
    for (let i = invoke.first(); i !== invoke.head && this.#required[i].invokeMs <= minComplete; i = invoke.next[i]) {
      const o = this.#required[i];
      if (!needed(o)) continue;
      if (isPure(o.effect) && step(state, o.effect) === state) return { state, before, chosen, candidates: [i], next: 0 };
      candidates.push(i);
    }
    this.#stamp++;
    const optional = this.#optionalByInvoke;
    for (let j = optional.first(); j !== optional.head && this.#optional[j].invokeMs <= minComplete; j = optional.next[j]) {
      const cls = this.#optionalClass[j];
      if (this.#classStamp[cls] === this.#stamp || !needed(this.#optional[j])) continue;
      this.#classStamp[cls] = this.#stamp;
      candidates.push(~j);
    }
    return { state, before, chosen, candidates, next: 0 };
  }

  #op(chosen: number): KeyOp {
    return chosen >= 0 ? this.#required[chosen] : this.#optional[~chosen];
  }

  #do(chosen: number): void {
    this.#count(this.#op(chosen).effect, -1);
    if (chosen < 0) {
      this.#optionalByInvoke.remove(~chosen);
      this.#optionalDone.set(~chosen);
      return;
    }
    this.#byInvoke.remove(chosen);
    this.#byComplete.remove(chosen);
    if (this.#revisionOf[chosen] > 0) this.#byRevision.remove(chosen);
    this.#requiredDone.set(chosen);
    this.#hashA ^= this.#zobristA[chosen];
    this.#hashB ^= this.#zobristB[chosen];
    this.#remaining--;
  }

  /** Exactly reverses #do; calls nest, which the dancing-links restore relies on. */
  #undo(chosen: number): void {
    this.#count(this.#op(chosen).effect, 1);
    if (chosen < 0) {
      this.#optionalDone.clear(~chosen);
      this.#optionalByInvoke.restore(~chosen);
      return;
    }
    this.#remaining++;
    this.#hashB ^= this.#zobristB[chosen];
    this.#hashA ^= this.#zobristA[chosen];
    this.#requiredDone.clear(chosen);
    if (this.#revisionOf[chosen] > 0) this.#byRevision.restore(chosen);
    this.#byComplete.restore(chosen);
    this.#byInvoke.restore(chosen);
  }

  #seenKey(state: RegisterState): string {
    return `${this.#hashA}:${this.#hashB}:${state.valueId}:${state.rev}:${state.floor}`;
  }

  #bucket(state: RegisterState, create: boolean): SeenBucket | undefined {
    const key = this.#seenKey(state);
    let buckets = this.#seen.get(key);
    const found = buckets?.find((b) => b.required.equals(this.#requiredDone));
    if (found !== undefined || !create) return found;
    const bucket = { required: this.#requiredDone.copy(), optionals: [] };
    if (buckets === undefined) this.#seen.set(key, (buckets = []));
    buckets.push(bucket);
    return bucket;
  }

  #isDominated(state: RegisterState): boolean {
    const bucket = this.#bucket(state, false);
    return bucket !== undefined && bucket.optionals.some((seen) => seen.isSubsetOf(this.#optionalDone));
  }

  #remember(state: RegisterState): void {
    this.#bucket(state, true)?.optionals.push(this.#optionalDone.copy());
  }

  #result(verdict: Verdict, chosen: readonly number[], state: RegisterState): SearchResult {
    assert(this.#start !== undefined, 'a result comes from a run');
    return { verdict, steps: this.#steps, start: this.#start, longest: chosen.map((c) => this.#op(c)), longestState: state };
  }
}

/**
 * The value an effect reads or establishes: a write's value, ABSENT for a delete that may remove the
 * key, else UNREAD (nothing to track).
 */
function valueIdOf(e: Effect): number {
  if (e.type === 'read' || e.type === 'write') return e.valueId;
  return e.type === 'delete' && e.deleted !== 0 ? ABSENT : UNREAD;
}

/** A write's revision when the client learned it, else 0 (revisions are positive). */
function knownRevision(e: Effect): number {
  return e.type === 'write' && e.rev !== NO_REV ? e.rev : 0;
}

/** Index into the pending counts: ABSENT is slot 0, value v slot v + 1; UNREAD has none (-1). */
function slotOf(valueId: number): number {
  return valueId === UNREAD ? -1 : valueId + 1;
}

/** The ops linearized so far, in order (the root frame was reached by none). */
function pathOf(frames: readonly Frame[]): number[] {
  return frames.slice(1).map((f) => f.chosen);
}

/**
 * Ops that never change the state when they are legal (reads, 412s, deletes of nothing). One that is
 * legal right now without learning anything can be linearized right now: any linearization that puts
 * it later still works with it moved here (it is already invoked, and nothing pending had to precede
 * it). Forcing it prunes the n! orders of n concurrent reads down to one.
 */
function isPure(e: Effect): boolean {
  return e.type === 'read' || e.type === 'refused' || (e.type === 'delete' && e.deleted === 0);
}

function byInvocation(a: KeyOp, b: KeyOp): number {
  return a.invokeMs - b.invokeMs || a.op.id - b.op.id;
}

function byCompletion(a: KeyOp, b: KeyOp): number {
  return a.completeMs - b.completeMs || byInvocation(a, b);
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Numbers optional ops by effect: equal numbers mean interchangeable ops. */
function classify(optional: readonly KeyOp[]): Int32Array {
  const classes = new Map<string, number>();
  return Int32Array.from(optional, (o) => {
    const signature = effectSignature(o.effect);
    let cls = classes.get(signature);
    if (cls === undefined) {
      cls = classes.size;
      classes.set(signature, cls);
    }
    return cls;
  });
}

function effectSignature(e: Effect): string {
  switch (e.type) {
    case 'write':
      return `w:${e.valueId}:${e.rev}:${e.pre.kind}:${e.pre.kind === 'match' ? e.pre.rev : ''}`;
    case 'refused':
      return `r:${e.pre.kind}:${e.pre.kind === 'match' ? e.pre.rev : ''}`;
    case 'read':
      return `g:${e.valueId}:${e.rev}`;
    case 'delete':
      return `d:${e.deleted}`;
  }
}

function mix32(x: number): number {
  let z = (x + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * A circular doubly linked list over some of 0..size-1 in a fixed order, with `head` = size as the
 * sentinel. remove() and restore() are Knuth's dancing links: O(1), valid when restores mirror removals.
 */
class LinkedOrder {
  readonly next: Int32Array;
  readonly prev: Int32Array;
  readonly head: number;

  constructor(size: number, order: readonly number[]) {
    this.head = size;
    this.next = new Int32Array(size + 1);
    this.prev = new Int32Array(size + 1);
    let last = size;
    for (const i of order) {
      assert(i >= 0 && i < size, 'a linked order holds indices below its size');
      this.next[last] = i;
      this.prev[i] = last;
      last = i;
    }
    this.next[last] = size;
    this.prev[size] = last;
  }

  first(): number {
    return this.next[this.head];
  }

  remove(i: number): void {
    this.next[this.prev[i]] = this.next[i];
    this.prev[this.next[i]] = this.prev[i];
  }

  restore(i: number): void {
    this.next[this.prev[i]] = i;
    this.prev[this.next[i]] = i;
  }
}

class Bitset {
  readonly words: Uint32Array;

  constructor(bits: number, words?: Uint32Array) {
    this.words = words ?? new Uint32Array(Math.ceil(bits / 32));
  }

  set(i: number): void {
    this.words[i >>> 5] |= 1 << (i & 31);
  }

  clear(i: number): void {
    this.words[i >>> 5] &= ~(1 << (i & 31));
  }

  copy(): Bitset {
    return new Bitset(0, this.words.slice());
  }

  equals(other: Bitset): boolean {
    assert(other.words.length === this.words.length, 'bitsets of different sizes');
    for (let w = 0; w < this.words.length; w++) if (this.words[w] !== other.words[w]) return false;
    return true;
  }

  isSubsetOf(other: Bitset): boolean {
    for (let w = 0; w < this.words.length; w++) if ((this.words[w] & ~other.words[w]) !== 0) return false;
    return true;
  }
}
