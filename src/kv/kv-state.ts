/**
 * The key-value state machine: how committed entries change keys, revisions and the applied index.
 *
 * It is pure (no I/O) and split in two steps around the one read the storage layer does:
 *  1. `planApply` decodes the batch's commands and names the keys whose stored metadata it needs;
 *  2. the caller reads those keys (one `getMany`), then `runApply` applies the commands in order
 *     and returns the results and the final state of every key it changed.
 * The caller writes that final state, the applied index and the revision in the same atomic batch
 * as the Raft log (see storage/level-storage.ts), so a restart resumes exactly.
 *
 * Revisions: a store-wide counter, 0 for an empty store. Each put, and each delete of a present
 * key, increments it by one; a delete of an absent key and a failed precondition change nothing.
 */
import { assert } from '../util/assert.js';
import { decodeCommand, type Command, type DeleteCommand, type PutCommand } from './command.js';
import { PreconditionFailedError } from './errors.js';
import type { KeyMeta } from './kv-record.js';

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
}

/** The command's precondition did not hold: nothing changed. */
export interface FailedResult {
  readonly kind: 'error';
  readonly index: number;
  readonly requestId: string;
  readonly error: PreconditionFailedError;
}

/** A leader's no-op or a config entry: not a key-value command, but applied all the same. */
export interface NoneResult {
  readonly kind: 'none';
  readonly index: number;
  readonly requestId: '';
}

/** The outcome of one committed entry; `requestId` settles the client request waiting on it. */
export type ApplyResult = PutResult | DeleteResult | FailedResult | NoneResult;

/** A batch of committed entries, decoded, with the keys it needs to read. */
export interface ApplyPlan {
  /** The applied index the entries follow. */
  readonly appliedIndex: number;
  readonly entries: readonly CommittedEntry[];
  /** commands[i] is entries[i]'s command, or null for a no-op or config entry. */
  readonly commands: readonly (Command | null)[];
  /** Each key the commands name, once, in first-mention order. */
  readonly keys: readonly string[];
}

/** A key's state after a batch: its metadata and value (a view into the entry's data). */
export interface KeyWrite {
  readonly meta: KeyMeta;
  readonly value: Uint8Array;
}

export interface ApplyOutcome extends KvCounters {
  /** One per entry, in order. */
  readonly results: readonly ApplyResult[];
  /** The final state of each key the batch changed: a record to store, or null to delete it. */
  readonly writes: ReadonlyMap<string, KeyWrite | null>;
}

/**
 * Decodes committed entries, which must directly follow `appliedIndex`. Throws CorruptDataError
 * when a normal entry's data is not a command this version knows: the member must stop rather
 * than skip it, or it would diverge from members that applied it.
 */
export function planApply(entries: readonly CommittedEntry[], appliedIndex: number): ApplyPlan {
  const commands: (Command | null)[] = [];
  const keys = new Set<string>();
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    assert(entry.index === appliedIndex + 1 + i, `apply: entry ${entry.index} does not follow ${appliedIndex + i}`);
    const command = isKvCommand(entry) ? decodeCommand(entry.data) : null;
    if (command !== null) keys.add(command.key);
    commands.push(command);
  }
  return { appliedIndex, entries, commands, keys: [...keys] };
}

/**
 * Applies a plan in entry order. `stored[i]` is the stored metadata of `plan.keys[i]` (null if
 * absent) as of `counters`. Later commands see the effects of earlier ones in the same batch.
 */
export function runApply(plan: ApplyPlan, stored: readonly (KeyMeta | null)[], counters: KvCounters): ApplyOutcome {
  assert(stored.length === plan.keys.length, `apply: ${stored.length} stored records for ${plan.keys.length} keys`);
  const applied = counters.appliedIndex;
  assert(applied === plan.appliedIndex, `apply: planned after ${plan.appliedIndex}, applied is ${applied}`);
  const batch: BatchState = { current: new Map(), writes: new Map(), revision: counters.revision };
  for (let i = 0; i < plan.keys.length; i++) batch.current.set(plan.keys[i], stored[i]);
  const results = plan.entries.map((entry, i): ApplyResult => {
    const command = plan.commands[i];
    if (command === null) return { kind: 'none', index: entry.index, requestId: '' };
    return applyCommand(batch, entry.index, command);
  });
  return {
    results,
    writes: batch.writes,
    revision: batch.revision,
    appliedIndex: counters.appliedIndex + plan.entries.length,
  };
}

/** An empty entry is the leader's no-op; config entries belong to Raft. */
function isKvCommand(entry: CommittedEntry): boolean {
  return entry.type === 'normal' && entry.data.byteLength > 0;
}

/** The store as the batch has changed it so far, over what was stored before it. */
interface BatchState {
  readonly current: Map<string, KeyMeta | null>;
  readonly writes: Map<string, KeyWrite | null>;
  revision: number;
}

function applyCommand(batch: BatchState, index: number, command: Command): ApplyResult {
  const meta = batch.current.get(command.key);
  assert(meta !== undefined, `apply: key ${JSON.stringify(command.key)} was not read`);
  const error = checkPreconditions(command, meta);
  if (error !== null) return { kind: 'error', index, requestId: command.requestId, error };
  return command.op === 'put' ? applyPut(batch, index, command, meta) : applyDelete(batch, index, command, meta);
}

function applyPut(
  batch: BatchState,
  index: number,
  command: PutCommand,
  meta: KeyMeta | null,
): PutResult {
  const revision = ++batch.revision;
  const next: KeyMeta = {
    createRevision: meta === null ? revision : meta.createRevision,
    modRevision: revision,
    version: meta === null ? 1 : meta.version + 1,
    lease: command.lease ?? 0,
  };
  batch.current.set(command.key, next);
  batch.writes.set(command.key, { meta: next, value: command.value });
  return { kind: 'put', index, requestId: command.requestId, key: command.key, revision, ...pick(next) };
}

function applyDelete(
  batch: BatchState,
  index: number,
  command: DeleteCommand,
  meta: KeyMeta | null,
): DeleteResult {
  const result = { kind: 'delete', index, requestId: command.requestId, key: command.key } as const;
  if (meta === null) return { ...result, deleted: 0, revision: batch.revision };
  batch.current.set(command.key, null);
  batch.writes.set(command.key, null);
  return { ...result, deleted: 1, revision: ++batch.revision };
}

function pick(meta: KeyMeta): { modRevision: number; createRevision: number; version: number } {
  return { modRevision: meta.modRevision, createRevision: meta.createRevision, version: meta.version };
}

/** If-None-Match wants the key absent; If-Match wants it present at exactly that modRevision. */
function checkPreconditions(command: Command, meta: KeyMeta | null): PreconditionFailedError | null {
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
