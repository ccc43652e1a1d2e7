/**
 * The key-value state machine: how committed entries change keys, leases, revisions and the
 * applied index.
 *
 * It is pure (no I/O) and split in two steps around the reads the storage layer does:
 *  1. `planApply` decodes the batch's commands and names the keys and leases whose stored state
 *     it needs, and the leases it revokes (whose attached keys must be read too);
 *  2. the caller reads those, then `runApply` applies the commands in order and returns the
 *     results, the final state of every key and lease it changed, the lease index changes and the
 *     watch events of each new revision.
 * The caller writes all of that, the applied index and the revision in the same atomic batch as
 * the Raft log (see storage/level-storage.ts), so a restart resumes exactly.
 *
 * Revisions: a store-wide counter, 0 for an empty store. Each put, and each delete of a present
 * key, increments it by one. A txn that changes anything, and a lease revoke that deletes any key,
 * increment it by exactly one however many keys they change. A delete of an absent key, a failed
 * precondition, a failed command and a lease grant change nothing.
 *
 * Everything here must come out the same on every member whatever batches the entries arrive in:
 * a batch's result depends only on the stored state and the commands, never on batch boundaries
 * (a revoke deletes its keys in byte order, not in the order the batch met them).
 */
import { assert } from '../util/assert.js';
import { asBuffer } from '../util/bytes.js';
import {
  decodeCommand,
  type Command,
  type Compare,
  type DeleteCommand,
  type KeyCommand,
  type LeaseGrantCommand,
  type LeaseRevokeCommand,
  type LeaseRevokeReason,
  type PutCommand,
  type TxnCommand,
} from './command.js';
import {
  LeaseExistsError,
  LeaseNotFoundError,
  PreconditionFailedError,
  TooManyLeasesError,
} from './errors.js';
import type { KeyMeta, KvRecord } from './kv-record.js';

/** The most leases that may exist at once; a grant beyond it fails with OVERLOADED. */
export const MAX_LEASES = 100_000;

/** The part of a Raft entry the state machine reads (a raft `Entry` fits). */
export interface CommittedEntry {
  readonly index: number;
  readonly type: 'normal' | 'config';
  readonly data: Uint8Array;
}

/** Where the state machine stands: the last entry applied and the store revision after it. */
export interface KvCounters {
  readonly appliedIndex: number;
  readonly revision: number;
}

/**
 * One change of one key, as watchers see it. A delete carries an empty value and, like etcd's,
 * createRevision, version and lease 0 (the key no longer exists).
 */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  /** The value written (a view, not a copy); empty for a delete. */
  readonly value: Uint8Array;
  /** The revision of this change. */
  readonly modRevision: number;
  readonly createRevision: number;
  readonly version: number;
  readonly lease: number;
}

export interface PutResult {
  readonly kind: 'put';
  readonly index: number;
  readonly requestId: string;
  readonly key: string;
  /** The store revision after this put (the same as modRevision). */
  readonly revision: number;
  readonly modRevision: number;
  readonly createRevision: number;
  readonly version: number;
  /** The one put event. */
  readonly events: readonly WatchEvent[];
}

export interface DeleteResult {
  readonly kind: 'delete';
  readonly index: number;
  readonly requestId: string;
  readonly key: string;
  /** 1 if the key existed (and the revision moved), 0 if it was already absent. */
  readonly deleted: 0 | 1;
  /** The store revision after this delete. */
  readonly revision: number;
  /** The delete event, or none when deleted is 0. */
  readonly events: readonly WatchEvent[];
}

/** One result per operation of the txn branch that ran, in order. */
export type TxnOpResult =
  | {
      readonly op: 'put';
      readonly key: string;
      readonly modRevision: number;
      readonly createRevision: number;
      readonly version: number;
    }
  | { readonly op: 'delete'; readonly key: string; readonly deleted: 0 | 1 }
  | { readonly op: 'get'; readonly key: string; readonly item: KvRecord | null };

export interface TxnResult {
  readonly kind: 'txn';
  readonly index: number;
  readonly requestId: string;
  /** True if every compare held and the success branch ran; false for the failure branch. */
  readonly succeeded: boolean;
  /** The store revision after the txn (unchanged if the branch changed nothing). */
  readonly revision: number;
  readonly results: readonly TxnOpResult[];
  /** The branch's changes, in op order, all at `revision`. */
  readonly events: readonly WatchEvent[];
}

export interface LeaseGrantResult {
  readonly kind: 'leaseGrant';
  readonly index: number;
  readonly requestId: string;
  readonly id: number;
  readonly ttlSeconds: number;
}

export interface LeaseRevokeResult {
  readonly kind: 'leaseRevoke';
  readonly index: number;
  readonly requestId: string;
  readonly id: number;
  readonly reason: LeaseRevokeReason;
  /** How many keys were attached, and so deleted. */
  readonly deletedKeys: number;
  /** The store revision after the revoke (unchanged if no key was attached). */
  readonly revision: number;
  /** One delete per attached key, in byte order of the keys, all at `revision`. */
  readonly events: readonly WatchEvent[];
}

/** Why a command changed nothing. */
export type ApplyError = PreconditionFailedError | LeaseNotFoundError | LeaseExistsError | TooManyLeasesError;

/** The command failed (a precondition, a missing lease, ...): nothing changed. */
export interface FailedResult {
  readonly kind: 'error';
  readonly index: number;
  readonly requestId: string;
  readonly error: ApplyError;
}

/** A leader's no-op or a config entry: not a key-value command, but applied all the same. */
export interface NoneResult {
  readonly kind: 'none';
  readonly index: number;
  readonly requestId: '';
}

/** The outcome of one committed entry; `requestId` settles the client request waiting on it. */
export type ApplyResult =
  | PutResult
  | DeleteResult
  | TxnResult
  | LeaseGrantResult
  | LeaseRevokeResult
  | FailedResult
  | NoneResult;

/** A batch of committed entries, decoded, with what it needs to read. */
export interface ApplyPlan {
  /** The applied index the entries follow. */
  readonly appliedIndex: number;
  readonly entries: readonly CommittedEntry[];
  /** commands[i] is entries[i]'s command, or null for a no-op or config entry. */
  readonly commands: readonly (Command | null)[];
  /** Each key the commands name, once, in first-mention order. */
  readonly keys: readonly string[];
  /**
   * The keys whose stored value the commands read (a txn's value compares and gets). For every
   * other key only the metadata counts: the caller may read just that (KeyWrite.value then
   * throws if read).
   */
  readonly valueKeys: ReadonlySet<string>;
  /** Each lease id the commands name (put leases, grants, revokes), once. */
  readonly leases: readonly number[];
  /** The leases the batch revokes: the caller reads the keys attached to each. */
  readonly revokedLeases: readonly number[];
}

/** A key's state: its metadata and value (a view into the entry's data or the stored record). */
export interface KeyWrite {
  readonly meta: KeyMeta;
  readonly value: Uint8Array;
}

/** What is stored about a lease. */
export interface LeaseRecord {
  readonly ttlSeconds: number;
}

/** What the caller read for a plan, as of the counters it passes to runApply. */
export interface StoredState {
  /** Every key of plan.keys and every key of leaseKeys: its record, or null if absent. */
  readonly keys: ReadonlyMap<string, KeyWrite | null>;
  /** Every lease of plan.leases: its record, or null if it does not exist. */
  readonly leases: ReadonlyMap<number, LeaseRecord | null>;
  /** For each of plan.revokedLeases, the keys stored as attached to it. */
  readonly leaseKeys: ReadonlyMap<number, readonly string[]>;
  /** How many leases exist. */
  readonly leaseCount: number;
}

/** A change to the lease index (lease id ++ key): a key attached to or detached from a lease. */
export interface LeaseKeyChange {
  readonly lease: number;
  readonly key: string;
  readonly attach: boolean;
}

/** The events of one new revision. */
export interface RevisionEvents {
  readonly revision: number;
  readonly events: readonly WatchEvent[];
}

export interface ApplyOutcome extends KvCounters {
  /** One per entry, in order. */
  readonly results: readonly ApplyResult[];
  /** The final state of each key the batch changed: a record to store, or null to delete it. */
  readonly writes: ReadonlyMap<string, KeyWrite | null>;
  /** The final state of each lease the batch changed: a record to store, or null to delete it. */
  readonly leaseWrites: ReadonlyMap<number, LeaseRecord | null>;
  /** How the lease index must change so that it matches the `lease` field of the stored keys. */
  readonly leaseKeyChanges: readonly LeaseKeyChange[];
  /** Each new revision with its events, in revision order: the watch history to append. */
  readonly history: readonly RevisionEvents[];
  /** How many leases exist after the batch. */
  readonly leaseCount: number;
}

/**
 * Decodes committed entries, which must directly follow `appliedIndex`. Throws CorruptDataError
 * when a normal entry's data is not a command this version knows: the member must stop rather
 * than skip it, or it would diverge from members that applied it.
 */
export function planApply(entries: readonly CommittedEntry[], appliedIndex: number): ApplyPlan {
  const commands: (Command | null)[] = [];
  const keys = new Set<string>();
  const valueKeys = new Set<string>();
  const leases = new Set<number>();
  const revoked = new Set<number>();
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    assert(entry.index === appliedIndex + 1 + i, `apply: entry ${entry.index} does not follow ${appliedIndex + i}`);
    const command = isKvCommand(entry) ? decodeCommand(entry.data) : null;
    if (command !== null) nameReads(command, keys, valueKeys, leases, revoked);
    commands.push(command);
  }
  return { appliedIndex, entries, commands, keys: [...keys], valueKeys, leases: [...leases], revokedLeases: [...revoked] };
}

function nameReads(command: Command, keys: Set<string>, valueKeys: Set<string>, leases: Set<number>, revoked: Set<number>): void {
  switch (command.op) {
    case 'put':
      keys.add(command.key);
      if (command.lease !== undefined) leases.add(command.lease);
      return;
    case 'delete':
      keys.add(command.key);
      return;
    case 'txn':
      for (const c of command.compare) {
        keys.add(c.key);
        if (c.target === 'value') valueKeys.add(c.key);
      }
      for (const op of [...command.success, ...command.failure]) {
        keys.add(op.key);
        if (op.op === 'get') valueKeys.add(op.key);
        if (op.op === 'put' && op.lease !== undefined) leases.add(op.lease);
      }
      return;
    case 'leaseGrant':
      leases.add(command.id);
      return;
    case 'leaseRevoke':
      leases.add(command.id);
      revoked.add(command.id);
      return;
  }
}

/**
 * Applies a plan in entry order over `stored` (what the caller read for it as of `counters`).
 * Later commands see the effects of earlier ones in the same batch.
 */
export function runApply(plan: ApplyPlan, stored: StoredState, counters: KvCounters): ApplyOutcome {
  const applied = counters.appliedIndex;
  assert(applied === plan.appliedIndex, `apply: planned after ${plan.appliedIndex}, applied is ${applied}`);
  for (const key of plan.keys) assert(stored.keys.has(key), `apply: key ${JSON.stringify(key)} was not read`);
  for (const id of plan.leases) assert(stored.leases.has(id), `apply: lease ${id} was not read`);
  const batch: BatchState = {
    stored: stored.keys,
    current: new Map(stored.keys),
    writes: new Map(),
    leases: new Map(stored.leases),
    leaseWrites: new Map(),
    attached: new Map(),
    history: [],
    revision: counters.revision,
    leaseCount: stored.leaseCount,
  };
  for (const id of plan.revokedLeases) {
    const keys = stored.leaseKeys.get(id);
    assert(keys !== undefined, `apply: the keys of revoked lease ${id} were not read`);
    batch.attached.set(id, new Set(keys));
  }
  const results = plan.entries.map((entry, i): ApplyResult => {
    const command = plan.commands[i];
    if (command === null) return { kind: 'none', index: entry.index, requestId: '' };
    return applyCommand(batch, entry.index, command);
  });
  return {
    results,
    writes: batch.writes,
    leaseWrites: batch.leaseWrites,
    leaseKeyChanges: leaseKeyChanges(batch),
    history: batch.history,
    revision: batch.revision,
    leaseCount: batch.leaseCount,
    appliedIndex: counters.appliedIndex + plan.entries.length,
  };
}

/** An empty entry is the leader's no-op; config entries belong to Raft. */
function isKvCommand(entry: CommittedEntry): boolean {
  return entry.type === 'normal' && entry.data.byteLength > 0;
}

/** The store as the batch has changed it so far, over what was stored before it. */
interface BatchState {
  /** What was stored before the batch (for the lease index). */
  readonly stored: ReadonlyMap<string, KeyWrite | null>;
  readonly current: Map<string, KeyWrite | null>;
  readonly writes: Map<string, KeyWrite | null>;
  readonly leases: Map<number, LeaseRecord | null>;
  readonly leaseWrites: Map<number, LeaseRecord | null>;
  /** For each lease the batch revokes: the keys attached to it right now. */
  readonly attached: Map<number, Set<string>>;
  readonly history: RevisionEvents[];
  revision: number;
  leaseCount: number;
}

function applyCommand(batch: BatchState, index: number, command: Command): ApplyResult {
  switch (command.op) {
    case 'put':
    case 'delete':
      return applyKeyCommand(batch, index, command);
    case 'txn':
      return applyTxn(batch, index, command);
    case 'leaseGrant':
      return applyLeaseGrant(batch, index, command);
    case 'leaseRevoke':
      return applyLeaseRevoke(batch, index, command);
  }
}

// ---- keys ----

function currentKey(batch: BatchState, key: string): KeyWrite | null {
  const record = batch.current.get(key);
  assert(record !== undefined, `apply: key ${JSON.stringify(key)} was not read`);
  return record;
}

function leaseExists(batch: BatchState, id: number): boolean {
  const lease = batch.leases.get(id);
  assert(lease !== undefined, `apply: lease ${id} was not read`);
  return lease !== null;
}

/** Sets a key's state, keeping the attached sets of the leases being revoked up to date. */
function setKey(batch: BatchState, key: string, next: KeyWrite | null): void {
  const before = batch.current.get(key)?.meta.lease ?? 0;
  const after = next?.meta.lease ?? 0;
  if (before !== after) {
    batch.attached.get(before)?.delete(key);
    batch.attached.get(after)?.add(key);
  }
  batch.current.set(key, next);
  batch.writes.set(key, next);
}

function putKey(batch: BatchState, key: string, value: Uint8Array, lease: number, revision: number): WatchEvent {
  const previous = currentKey(batch, key);
  const meta: KeyMeta = {
    createRevision: previous === null ? revision : previous.meta.createRevision,
    modRevision: revision,
    version: previous === null ? 1 : previous.meta.version + 1,
    lease,
  };
  setKey(batch, key, { meta, value });
  return { type: 'put', key, value, ...meta };
}

const NO_BYTES = new Uint8Array(0);

/** Deletes a present key and returns its event, or returns null if it is absent. */
function deleteKey(batch: BatchState, key: string, revision: number): WatchEvent | null {
  if (currentKey(batch, key) === null) return null;
  setKey(batch, key, null);
  return { type: 'delete', key, value: NO_BYTES, modRevision: revision, createRevision: 0, version: 0, lease: 0 };
}

/** Moves the store to a new revision made of these events. */
function commitRevision(batch: BatchState, revision: number, events: readonly WatchEvent[]): void {
  assert(revision === batch.revision + 1 && events.length > 0, `apply: revision ${revision} after ${batch.revision}`);
  batch.revision = revision;
  batch.history.push({ revision, events });
}

function applyKeyCommand(batch: BatchState, index: number, command: KeyCommand): ApplyResult {
  const record = currentKey(batch, command.key);
  const error = checkPreconditions(command, record?.meta ?? null) ?? checkPutLease(batch, command);
  if (error !== null) return { kind: 'error', index, requestId: command.requestId, error };
  return command.op === 'put' ? applyPut(batch, index, command) : applyDelete(batch, index, command);
}

function checkPutLease(batch: BatchState, command: KeyCommand): LeaseNotFoundError | null {
  if (command.op !== 'put' || command.lease === undefined || leaseExists(batch, command.lease)) return null;
  return missingLease(command.key, command.lease);
}

function missingLease(key: string, lease: number): LeaseNotFoundError {
  return new LeaseNotFoundError(lease, `Cannot write ${JSON.stringify(key)}: lease ${lease} not found`);
}

function applyPut(batch: BatchState, index: number, command: PutCommand): PutResult {
  const revision = batch.revision + 1;
  const event = putKey(batch, command.key, command.value, command.lease ?? 0, revision);
  commitRevision(batch, revision, [event]);
  const { requestId, key } = command;
  const { modRevision, createRevision, version } = event;
  return { kind: 'put', index, requestId, key, revision, modRevision, createRevision, version, events: [event] };
}

function applyDelete(batch: BatchState, index: number, command: DeleteCommand): DeleteResult {
  const result = { kind: 'delete', index, requestId: command.requestId, key: command.key } as const;
  const event = deleteKey(batch, command.key, batch.revision + 1);
  if (event === null) return { ...result, deleted: 0, revision: batch.revision, events: [] };
  commitRevision(batch, event.modRevision, [event]);
  return { ...result, deleted: 1, revision: batch.revision, events: [event] };
}

/** If-None-Match wants the key absent; If-Match wants it present at exactly that modRevision. */
function checkPreconditions(command: KeyCommand, meta: KeyMeta | null): PreconditionFailedError | null {
  const what = `Cannot ${command.op === 'put' ? 'write' : 'delete'} ${JSON.stringify(command.key)}`;
  if (command.ifNoneMatch === true && meta !== null) {
    return new PreconditionFailedError(
      command.key,
      meta.modRevision,
      `${what}: it exists with modRevision ${meta.modRevision}, If-None-Match wanted none`,
    );
  }
  if (command.ifMatch === undefined || meta?.modRevision === command.ifMatch) return null;
  const actual = meta === null ? 'it does not exist' : `modRevision is ${meta.modRevision}`;
  const message = `${what}: ${actual}, If-Match wanted ${command.ifMatch}`;
  return new PreconditionFailedError(command.key, meta?.modRevision ?? 0, message);
}

// ---- txn ----

function applyTxn(batch: BatchState, index: number, command: TxnCommand): TxnResult | FailedResult {
  const { requestId } = command;
  // Every compare sees the state before the txn; nothing has been written yet.
  const succeeded = command.compare.every((c) => compareHolds(c, currentKey(batch, c.key)));
  const ops = succeeded ? command.success : command.failure;
  // All or nothing: find any op that would fail before changing anything. Only a put's lease can
  // fail, and no txn op changes leases, so checking up front is exact.
  for (const op of ops) {
    if (op.op === 'put' && op.lease !== undefined && !leaseExists(batch, op.lease)) {
      return { kind: 'error', index, requestId, error: missingLease(op.key, op.lease) };
    }
  }
  const revision = batch.revision + 1;
  const results: TxnOpResult[] = [];
  const events: WatchEvent[] = [];
  for (const op of ops) {
    if (op.op === 'put') {
      const event = putKey(batch, op.key, op.value, op.lease ?? 0, revision);
      events.push(event);
      const { modRevision, createRevision, version } = event;
      results.push({ op: 'put', key: op.key, modRevision, createRevision, version });
    } else if (op.op === 'delete') {
      const event = deleteKey(batch, op.key, revision);
      if (event !== null) events.push(event);
      results.push({ op: 'delete', key: op.key, deleted: event === null ? 0 : 1 });
    } else {
      const record = currentKey(batch, op.key);
      const item = record === null ? null : { key: op.key, value: record.value, ...record.meta };
      results.push({ op: 'get', key: op.key, item });
    }
  }
  if (events.length > 0) commitRevision(batch, revision, events);
  return { kind: 'txn', index, requestId, succeeded, revision: batch.revision, results, events };
}

/**
 * etcd's comparison: revisions and versions as numbers (0 for an absent key), values bytewise.
 * An absent key has no value: only '!=' holds on it.
 */
export function compareHolds(compare: Compare, record: KeyWrite | null): boolean {
  if (compare.target === 'value') {
    assert(compare.value instanceof Uint8Array, 'compare: a value target needs bytes');
    if (record === null) return compare.op === '!=';
    return orderHolds(compare.op, Buffer.compare(asBuffer(record.value), asBuffer(compare.value)));
  }
  assert(typeof compare.value === 'number', `compare: target ${compare.target} needs a number`);
  const actual = record === null ? 0 : record.meta[compare.target];
  return orderHolds(compare.op, Math.sign(actual - compare.value));
}

function orderHolds(op: Compare['op'], order: number): boolean {
  switch (op) {
    case '=':
      return order === 0;
    case '!=':
      return order !== 0;
    case '<':
      return order < 0;
    case '>':
      return order > 0;
  }
}

// ---- leases ----

function applyLeaseGrant(batch: BatchState, index: number, command: LeaseGrantCommand): LeaseGrantResult | FailedResult {
  const { requestId, id, ttlSeconds } = command;
  if (leaseExists(batch, id)) return { kind: 'error', index, requestId, error: new LeaseExistsError(id) };
  if (batch.leaseCount >= MAX_LEASES) return { kind: 'error', index, requestId, error: new TooManyLeasesError(MAX_LEASES) };
  const record: LeaseRecord = { ttlSeconds };
  batch.leases.set(id, record);
  batch.leaseWrites.set(id, record);
  batch.leaseCount++;
  return { kind: 'leaseGrant', index, requestId, id, ttlSeconds };
}

function applyLeaseRevoke(batch: BatchState, index: number, command: LeaseRevokeCommand): LeaseRevokeResult | FailedResult {
  const { requestId, id, reason } = command;
  if (!leaseExists(batch, id)) return { kind: 'error', index, requestId, error: new LeaseNotFoundError(id) };
  const attached = batch.attached.get(id);
  assert(attached !== undefined, `apply: lease ${id} is revoked but its keys were not read`);
  const revision = batch.revision + 1;
  const events: WatchEvent[] = [];
  for (const key of inByteOrder(attached)) {
    assert(currentKey(batch, key)?.meta.lease === id, `apply: key ${JSON.stringify(key)} is not attached to lease ${id}`);
    const event = deleteKey(batch, key, revision);
    if (event !== null) events.push(event);
  }
  assert(attached.size === 0, `apply: lease ${id} still has keys after its revoke`);
  batch.leases.set(id, null);
  batch.leaseWrites.set(id, null);
  batch.leaseCount--;
  if (events.length > 0) commitRevision(batch, revision, events);
  const deletedKeys = events.length;
  return { kind: 'leaseRevoke', index, requestId, id, reason, deletedKeys, revision: batch.revision, events };
}

/** Keys in the byte order of their UTF-8 (the store's order; JS string order differs). */
function inByteOrder(keys: Iterable<string>): string[] {
  return [...keys]
    .map((key) => ({ key, bytes: Buffer.from(key, 'utf8') }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map((k) => k.key);
}

/** Compares each written key's final lease with its stored one. */
function leaseKeyChanges(batch: BatchState): LeaseKeyChange[] {
  const changes: LeaseKeyChange[] = [];
  for (const [key, write] of batch.writes) {
    const stored = batch.stored.get(key);
    assert(stored !== undefined, `apply: key ${JSON.stringify(key)} was written but not read`);
    const before = stored?.meta.lease ?? 0;
    const after = write?.meta.lease ?? 0;
    if (before === after) continue;
    if (before !== 0) changes.push({ lease: before, key, attach: false });
    if (after !== 0) changes.push({ lease: after, key, attach: true });
  }
  return changes;
}
