/**
 * The sequential specification the linearizability search checks one key against: a register with
 * revisions, seen only through what flotilla's clients observe (CONTRACT.md).
 *
 * State: the key is absent, or holds a value with a modRevision. Revisions are store-wide, so a key's
 * revisions are not consecutive; what holds per key is that each write's revision exceeds every
 * earlier write's. `floor` carries that fact: the highest revision known to belong to an earlier
 * write of this key. A write acknowledged ok tells its revision; a write of unknown outcome does not,
 * so its revision stays unknown (NO_REV) until a read's ETag or a successful If-Match names it.
 *
 * Unknown-outcome ops matter only if they took effect, so the model gives them one effect (the
 * successful one): "it did not take effect" is the search simply never linearizing the op. A write
 * of unknown outcome whose value no read ever returns is given the value UNREAD: only reads compare
 * values, so all such writes are interchangeable, and the search can treat them as one.
 *
 * Left out on purpose, each making the model more permissive, never a source of false alarms:
 *   - version and createRevision (CONTRACT.md returns them but does not define how they evolve);
 *   - the revision a delete consumes (the contract does not say one does);
 *   - what a 412 against a not-yet-observed revision implies (that revision is not the If-Match);
 *   - a floor raised by an unknown-outcome write's If-Match (see stepWrite).
 */
import { assert } from '../../../src/util/assert.js';
import { describeValue, type Operation } from './history.js';

/** valueId of an absent key. */
export const ABSENT = -1;
/** valueId written by an unknown-outcome write whose value no successful read returned. */
export const UNREAD = -2;
/** rev of a value whose revision has not been observed. */
export const NO_REV = -1;

export interface RegisterState {
  /** An id from the key's ValueTable, or ABSENT, or UNREAD. */
  readonly valueId: number;
  /** The value's modRevision, or NO_REV while unobserved. */
  readonly rev: number;
  /** The highest revision known to belong to a write of this key so far: the next one must exceed it. */
  readonly floor: number;
}

export const INITIAL_STATE: RegisterState = { valueId: ABSENT, rev: NO_REV, floor: 0 };

export type Precondition =
  | { readonly kind: 'none' }
  | { readonly kind: 'absent' }              // If-None-Match: *
  | { readonly kind: 'match'; readonly rev: number }; // If-Match: "rev"

/** What an op did, in model terms; `rev` is NO_REV when the client did not learn it. */
export type Effect =
  | { readonly type: 'write'; readonly valueId: number; readonly pre: Precondition; readonly rev: number }
  | { readonly type: 'refused'; readonly pre: Precondition } // 412: the precondition did not hold
  | { readonly type: 'read'; readonly valueId: number; readonly rev: number } // valueId ABSENT for a 404
  | { readonly type: 'delete'; readonly deleted: 0 | 1 | null }; // null: not known (unknown outcome)

/** One operation of one key, as the search sees it. */
export interface KeyOp {
  readonly op: Operation;
  /** ok ops must be linearized; unknown-outcome ones may be, at most once, or never. */
  readonly required: boolean;
  readonly invokeMs: number;
  /** Infinity for an unknown-outcome op. */
  readonly completeMs: number;
  readonly effect: Effect;
}

/** Interns a key's values so that states compare and hash as small numbers. */
export class ValueTable {
  readonly #ids = new Map<string, number>();
  readonly #names: string[] = [];

  intern(value: string): number {
    let id = this.#ids.get(value);
    if (id === undefined) {
      id = this.#names.length;
      this.#ids.set(value, id);
      this.#names.push(value);
    }
    return id;
  }

  /** The value, or null for UNREAD. */
  name(valueId: number): string | null {
    assert(valueId !== ABSENT, 'an absent key has no value');
    return valueId === UNREAD ? null : this.#names[valueId];
  }
}

export interface KeyModel {
  readonly ops: readonly KeyOp[];
  readonly values: ValueTable;
  /** Failed ops and unknown-outcome reads: they neither happened nor told anything. */
  readonly discarded: number;
}

/** Turns one key's operations into model ops. */
export function buildKeyModel(ops: readonly Operation[]): KeyModel {
  const values = new ValueTable();
  const readValues = new Set<string>();
  for (const op of ops) {
    if (op.kind === 'get' && op.outcome === 'ok' && typeof op.output.value === 'string') readValues.add(op.output.value);
  }
  const keyOps: KeyOp[] = [];
  const writerOf = new Map<string, Operation>();
  for (const op of ops) {
    const effect = effectOf(op, values, readValues);
    if (effect === null) continue;
    if (effect.type === 'write') checkUniqueValue(op, writerOf);
    const required = op.outcome === 'ok';
    assert(!required || op.completeMs !== null, `#${op.id} is ok but has no completeMs`);
    keyOps.push({ op, required, invokeMs: op.invokeMs, completeMs: op.completeMs ?? Infinity, effect });
  }
  return { ops: keyOps, values, discarded: ops.length - keyOps.length };
}

/**
 * A value must name one write: reads are matched to writes by value, and the search's reductions
 * assume it. A retry after an unknown outcome must therefore write a fresh value.
 */
function checkUniqueValue(op: Operation, writerOf: Map<string, Operation>): void {
  const value = op.input.value ?? '';
  const other = writerOf.get(value);
  assert(other === undefined,
    `#${other?.id} and #${op.id} both write ${describeValue(value)} to one key: give every write its own value`);
  writerOf.set(value, op);
}

function effectOf(op: Operation, values: ValueTable, readValues: ReadonlySet<string>): Effect | null {
  if (op.outcome === 'fail') return null;
  const known = op.outcome === 'ok';
  switch (op.kind) {
    case 'get': {
      if (!known) return null;
      const value = op.output.value;
      assert(value !== undefined, `#${op.id}: an ok get needs output.value`);
      return { type: 'read', valueId: value === null ? ABSENT : values.intern(value), rev: op.output.modRevision ?? NO_REV };
    }
    case 'delete':
      return { type: 'delete', deleted: known ? deletedCount(op) : null };
    case 'put':
    case 'cas':
    case 'create':
      return writeEffect(op, values, readValues);
  }
}

function deletedCount(op: Operation): 0 | 1 | null {
  const deleted = op.output.deleted;
  if (deleted === undefined) return null;
  assert(deleted === 0 || deleted === 1, `#${op.id}: a delete of one key removes 0 or 1, not ${deleted}`);
  return deleted;
}

function writeEffect(op: Operation, values: ValueTable, readValues: ReadonlySet<string>): Effect {
  const pre = preconditionOf(op);
  if (op.outcome === 'ok' && op.output.preconditionFailed) return { type: 'refused', pre };
  const value = op.input.value;
  assert(value !== undefined, `#${op.id}: a ${op.kind} needs input.value`);
  if (op.outcome === 'ok') return { type: 'write', valueId: values.intern(value), pre, rev: op.output.modRevision ?? NO_REV };
  const valueId = readValues.has(value) ? values.intern(value) : UNREAD;
  return { type: 'write', valueId, pre, rev: NO_REV };
}

function preconditionOf(op: Operation): Precondition {
  if (op.kind === 'create') return { kind: 'absent' };
  if (op.kind === 'cas') {
    assert(op.input.ifMatch !== undefined, `#${op.id}: a cas needs input.ifMatch`);
    return { kind: 'match', rev: op.input.ifMatch };
  }
  return { kind: 'none' };
}

/** Where step() explains a rejection; left out on the search's hot path. */
export interface Explain {
  readonly values: ValueTable;
  readonly reasons: string[];
}

/** The state after `effect`, or null if the effect cannot happen in state `s`. */
export function step(s: RegisterState, effect: Effect, why?: Explain): RegisterState | null {
  switch (effect.type) {
    case 'read':
      return stepRead(s, effect.valueId, effect.rev, why);
    case 'write':
      return stepWrite(s, effect.valueId, effect.pre, effect.rev, why);
    case 'refused':
      return stepRefused(s, effect.pre, why);
    case 'delete':
      return stepDelete(s, effect.deleted, why);
  }
}

export function sameState(a: RegisterState, b: RegisterState): boolean {
  return a.valueId === b.valueId && a.rev === b.rev && a.floor === b.floor;
}

function stepRead(s: RegisterState, valueId: number, rev: number, why?: Explain): RegisterState | null {
  if (valueId === ABSENT) {
    if (s.valueId === ABSENT) return s;
    why?.reasons.push(`it read 404 but the key holds ${describeState(s, why.values)}`);
    return null;
  }
  if (s.valueId !== valueId) {
    why?.reasons.push(`it read ${describeValueId(valueId, why.values)} but the key ${describeHolding(s, why.values)}`);
    return null;
  }
  return observeRevision(s, rev, 'ETag', why);
}

/** A read's ETag or a successful If-Match names the current value's revision: check it, or learn it. */
function observeRevision(s: RegisterState, rev: number, source: string, why?: Explain): RegisterState | null {
  if (rev === NO_REV || s.rev === rev) return s;
  if (s.rev === NO_REV && rev > s.floor) return { valueId: s.valueId, rev, floor: rev };
  if (why !== undefined) {
    why.reasons.push(s.rev === NO_REV
      ? `its ${source} ${rev} is not above revision ${s.floor}, which an earlier write of the key already had`
      : `its ${source} is ${rev} but the current value was written at revision ${s.rev}`);
  }
  return null;
}

/**
 * A write whose own revision is unknown keeps the floor it found, even if its If-Match just named an
 * unobserved revision: raising the floor there would be exact but would split one state into one per
 * If-Match value, multiplying the search for unknown CASes; later writes exceed it in practice anyway.
 */
function stepWrite(s: RegisterState, valueId: number, pre: Precondition, rev: number, why?: Explain): RegisterState | null {
  const base = preconditionHolds(s, pre, why);
  if (base === null) return null;
  if (rev === NO_REV) return { valueId, rev: NO_REV, floor: s.floor };
  if (rev > base.floor) return { valueId, rev, floor: rev };
  why?.reasons.push(`it was given revision ${rev}, not above revision ${base.floor} of an earlier write of the key`);
  return null;
}

function preconditionHolds(s: RegisterState, pre: Precondition, why?: Explain): RegisterState | null {
  switch (pre.kind) {
    case 'none':
      return s;
    case 'absent':
      if (s.valueId === ABSENT) return s;
      why?.reasons.push(`If-None-Match: * succeeded but the key holds ${describeState(s, why.values)}`);
      return null;
    case 'match':
      if (s.valueId !== ABSENT) return observeRevision(s, pre.rev, 'If-Match', why);
      why?.reasons.push(`If-Match ${pre.rev} succeeded but the key is absent`);
      return null;
  }
}

/**
 * A 412 says the precondition did not hold. When the current revision is unobserved it may or may
 * not equal the If-Match, so the refusal is allowed without recording the inequality (permissive).
 */
function stepRefused(s: RegisterState, pre: Precondition, why?: Explain): RegisterState | null {
  if (pre.kind === 'absent') {
    if (s.valueId !== ABSENT) return s;
    why?.reasons.push('If-None-Match: * was refused (412) but the key is absent');
    return null;
  }
  assert(pre.kind === 'match', 'only If-Match and If-None-Match can be refused');
  if (s.valueId === ABSENT || s.rev !== pre.rev) return s;
  why?.reasons.push(`If-Match ${pre.rev} was refused (412) but the key's modRevision is ${pre.rev}`);
  return null;
}

function stepDelete(s: RegisterState, deleted: 0 | 1 | null, why?: Explain): RegisterState | null {
  if (deleted === 0) {
    if (s.valueId === ABSENT) return s;
    why?.reasons.push(`it deleted nothing but the key holds ${describeState(s, why.values)}`);
    return null;
  }
  if (deleted === 1 && s.valueId === ABSENT) {
    why?.reasons.push('it deleted the key but the key is absent');
    return null;
  }
  return s.valueId === ABSENT ? s : { valueId: ABSENT, rev: NO_REV, floor: s.floor };
}

/** A public, self-describing form of a state, for results and reports. */
export interface RegisterStateView {
  /** null when the key is absent; value null for a value no read returned (an unknown-outcome write). */
  readonly current: { readonly value: string | null; readonly modRevision: number | null } | null;
  readonly floorRevision: number;
}

export function viewState(s: RegisterState, values: ValueTable): RegisterStateView {
  const current = s.valueId === ABSENT ? null
    : { value: values.name(s.valueId), modRevision: s.rev === NO_REV ? null : s.rev };
  return { current, floorRevision: s.floor };
}

export function describeState(s: RegisterState, values: ValueTable): string {
  if (s.valueId === ABSENT) return 'nothing (absent)';
  const rev = s.rev === NO_REV ? 'revision not yet observed' : `rev ${s.rev}`;
  return `${describeValueId(s.valueId, values)} (${rev})`;
}

function describeHolding(s: RegisterState, values: ValueTable): string {
  return s.valueId === ABSENT ? 'is absent' : `holds ${describeState(s, values)}`;
}

function describeValueId(valueId: number, values: ValueTable): string {
  const name = values.name(valueId);
  return name === null ? 'a value written by an unknown-outcome op' : describeValue(name);
}
