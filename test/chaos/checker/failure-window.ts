/**
 * Turns a failed search into something a person can act on: the op that could not be linearized, and
 * a small window of ops around it that cannot be linearized on its own.
 *
 * The search's longest valid prefix L ends where it got stuck (findStuck says which op is to blame
 * and up to when the ops around it matter: the horizon). The window is the last k ops of L plus every
 * op still pending that was invoked by the horizon, judged from the state after the rest of L. k = 0
 * is always non-linearizable from that state (else L was not the longest), but rarely tells why: a
 * stale read alone looks like a read. So k grows until the window is non-linearizable from *every*
 * state the key held earlier in L too, i.e. whatever the key held before the window; such a window is
 * `selfContained` and explains itself. Past MAX_WINDOW_OPS the k = 0 window is reported, trimmed to
 * the ops invoked nearest the culprit.
 */
import { assert } from '../../../src/util/assert.js';
import { describeOperation } from './history.js';
import {
  ABSENT, describeState, step, type Explain, type KeyModel, type KeyOp, type RegisterState,
} from './register-model.js';
import { searchLinearization, type SearchResult } from './search.js';

/** The most ops a reported window may hold. */
export const MAX_WINDOW_OPS = 50;
/** Unknown-outcome ops kept in a window; older ones are left out (the full search already tried them). */
const MAX_WINDOW_OPTIONAL_OPS = 16;
/** Earlier states a window is tried from before calling it self-contained. */
const MAX_START_STATES = 64;
/** Step budgets for the small searches that judge candidate windows. */
const WINDOW_SEARCH_MAX_STEPS = 100_000;
const SHRINK_MAX_STEPS = 2_000_000;

export interface WindowFinding {
  /** Sorted by invocation. */
  readonly window: readonly KeyOp[];
  readonly stuck: KeyOp;
  /** The state the window is judged from: after the longest prefix minus the window's part of it. */
  readonly startState: RegisterState;
  /** The window is non-linearizable from every state the key held earlier, not just startState. */
  readonly selfContained: boolean;
  /** Pending unknown-outcome ops left out of the window (older than it). */
  readonly omittedUnknownOps: number;
  readonly message: string;
}

export function findFailureWindow(model: KeyModel, failed: SearchResult): WindowFinding {
  const prefix = failed.longest;
  const states = replay(prefix, failed.start);
  const end = states[prefix.length];
  const inPrefix = new Set(prefix);
  const pending = model.ops.filter((o) => !inPrefix.has(o));
  const stuck = findStuck(model, pending, end, prefix.length);
  const concurrent = pending.filter((o) => o.required && o.invokeMs <= stuck.horizonMs);
  const optional = pending.filter((o) => !o.required && o.invokeMs <= stuck.horizonMs);
  const { message } = stuck;

  let stepsLeft = SHRINK_MAX_STEPS;
  for (let k = 0; k <= prefix.length && stepsLeft > 0; k++) {
    const candidate = windowOf(prefix.slice(prefix.length - k), concurrent, optional);
    if (candidate.ops.length > MAX_WINDOW_OPS) break;
    const startStates = earlierStates(states, prefix.length - k);
    const judged = nonLinearizableFromAll(candidate.ops, startStates, stepsLeft);
    stepsLeft -= judged.steps;
    if (judged.proven) {
      return {
        window: candidate.ops, stuck: stuck.op, startState: startStates[0], selfContained: true,
        omittedUnknownOps: candidate.omitted, message,
      };
    }
  }
  const fallback = windowOf([], concurrent, optional);
  return {
    window: nearest(fallback.ops, stuck.op, MAX_WINDOW_OPS).sort(byInvocation), stuck: stuck.op, startState: end,
    selfContained: false, omittedUnknownOps: fallback.omitted, message,
  };
}

/**
 * Where a search that ran out of budget got furthest, and what stopped it there: a lead, not a
 * verdict (the op may be linearizable by an order the search had not reached yet).
 */
export function describeFurthestPoint(model: KeyModel, partial: SearchResult): string {
  const prefix = partial.longest;
  const inPrefix = new Set(prefix);
  const pending = model.ops.filter((o) => !inPrefix.has(o));
  if (!pending.some((o) => o.required)) return 'every op was linearized';
  const end = replay(prefix, partial.start)[prefix.length];
  return findStuck(model, pending, end, prefix.length).message;
}

/** states[j] is the state after the first j ops of `prefix`. */
function replay(prefix: readonly KeyOp[], start: RegisterState): RegisterState[] {
  const states = [start];
  for (const o of prefix) {
    const next = step(states[states.length - 1], o.effect);
    assert(next !== null, `the search's prefix does not replay at #${o.op.id}`);
    states.push(next);
  }
  return states;
}

interface Stuck {
  readonly op: KeyOp;
  /** Pending ops invoked up to here belong in the window. */
  readonly horizonMs: number;
  readonly message: string;
}

/**
 * Why the longest prefix could go no further. Its earliest-completing pending op (`blocker`) must go
 * next, and usually the model refuses it: it is the culprit. But when some pending read still has to
 * see the value the key holds, and nothing pending can write that value again, the search keeps the
 * value in place for that read, and the blocker fails because it needs the key changed (it would
 * overwrite the value, or it reads a later one): the pinned read is then the culprit, typically a
 * stale read.
 */
function findStuck(model: KeyModel, pending: readonly KeyOp[], end: RegisterState, prefixLength: number): Stuck {
  const blocker = earliestCompleting(pending.filter((o) => o.required));
  const why: Explain = { values: model.values, reasons: [] };
  const legal = step(end, blocker.effect, why) !== null;
  const pinned = pinnedReads(pending, end).filter((o) => o !== blocker);
  const head = `cannot be linearized after the longest linearizable prefix (${prefixLength} ops)`;
  if (pinned.length === 0 || (!legal && readsValue(blocker, end.valueId))) {
    const reason = why.reasons[0] ??
      `the key holds ${describeState(end, model.values)} and no order of the ops concurrent with it explains its result`;
    return { op: blocker, horizonMs: blocker.completeMs, message: `${describeOperation(blocker.op)} ${head}: ${reason}` };
  }
  const read = earliestCompleting(pinned);
  const order = read.invokeMs > blocker.completeMs ? 'completed before it was invoked' : 'is concurrent with it';
  const effect = legal ? 'overwrites that value' : `needs the key changed first (${why.reasons[0] ?? 'refused'})`;
  const reason = `it reads ${describeState(end, model.values)}, but ${describeOperation(blocker.op)} ${order} ` +
    `and ${effect}, and nothing pending writes that value again`;
  const horizonMs = Math.max(read.completeMs, blocker.completeMs);
  return { op: read, horizonMs, message: `${describeOperation(read.op)} ${head}: ${reason}` };
}

/** Pending reads of the value the key holds, when no pending op can write that value again. */
function pinnedReads(pending: readonly KeyOp[], end: RegisterState): KeyOp[] {
  const rewritable = pending.some((o) => (o.effect.type === 'write' && o.effect.valueId === end.valueId) ||
    (end.valueId === ABSENT && o.effect.type === 'delete' && o.effect.deleted !== 0));
  return rewritable ? [] : pending.filter((o) => o.required && readsValue(o, end.valueId));
}

function readsValue(o: KeyOp, valueId: number): boolean {
  return o.effect.type === 'read' && o.effect.valueId === valueId;
}

function earliestCompleting(ops: readonly KeyOp[]): KeyOp {
  assert(ops.length > 0, 'a failed search leaves some required op out');
  return ops.reduce((a, b) => (b.completeMs < a.completeMs || (b.completeMs === a.completeMs && b.invokeMs < a.invokeMs) ? b : a));
}

function byInvocation(a: KeyOp, b: KeyOp): number {
  return a.invokeMs - b.invokeMs || a.op.id - b.op.id;
}

/** `stuck` and the ops invoked closest to it, when too many were in flight to show them all. */
function nearest(ops: readonly KeyOp[], stuck: KeyOp, max: number): KeyOp[] {
  const distance = (o: KeyOp): number => (o === stuck ? -1 : Math.abs(o.invokeMs - stuck.invokeMs));
  return [...ops].sort((a, b) => distance(a) - distance(b)).slice(0, max);
}

/**
 * The window: `tail` (the end of the prefix) and the pending ops. Unknown-outcome ops invoked before
 * the window are left out, except those writing a value the window reads: without its writer a read
 * would look impossible for the wrong reason.
 */
function windowOf(tail: readonly KeyOp[], concurrent: readonly KeyOp[], optional: readonly KeyOp[]): { ops: KeyOp[]; omitted: number } {
  const core = [...tail, ...concurrent];
  const startMs = Math.min(...core.map((o) => o.invokeMs));
  const read = new Set(core.flatMap((o) => (o.effect.type === 'read' ? [o.effect.valueId] : [])));
  const writers = optional.filter((o) => o.effect.type === 'write' && read.has(o.effect.valueId));
  const recent = optional.filter((o) => o.invokeMs >= startMs && !writers.includes(o)).slice(-MAX_WINDOW_OPTIONAL_OPS);
  const ops = [...core, ...writers, ...recent].sort(byInvocation);
  return { ops, omitted: optional.length - recent.length - writers.length };
}

/**
 * The distinct values the key held up to prefix position `end`, latest first, each with the floor
 * at `end` (the revisions known by then are facts whatever the key held).
 */
function earlierStates(states: readonly RegisterState[], end: number): RegisterState[] {
  const floor = states[end].floor;
  const seen = new Set<string>();
  const result: RegisterState[] = [];
  for (let j = end; j >= 0 && result.length < MAX_START_STATES; j--) {
    const s = states[j];
    const id = `${s.valueId}:${s.rev}`;
    if (seen.has(id)) continue;
    seen.add(id);
    result.push({ valueId: s.valueId, rev: s.rev, floor });
  }
  return result;
}

interface Judgement {
  readonly proven: boolean;
  readonly steps: number;
}

function nonLinearizableFromAll(ops: readonly KeyOp[], starts: readonly RegisterState[], stepsLeft: number): Judgement {
  let steps = 0;
  for (const start of starts) {
    const budget = { maxSteps: Math.min(WINDOW_SEARCH_MAX_STEPS, stepsLeft - steps), deadlineMs: Infinity, now: () => 0 };
    if (budget.maxSteps <= 0) return { proven: false, steps };
    const result = searchLinearization(ops, start, budget);
    steps += result.steps;
    if (result.verdict !== 'not-linearizable') return { proven: false, steps };
  }
  return { proven: true, steps };
}
