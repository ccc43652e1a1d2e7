/**
 * What the chaos workload's clients did and saw, in the one form every checker reads.
 *
 * Each client does one operation at a time on one key and records it as invoked, then as
 *   - ok:      the server answered and the answer says what happened (a 412 is ok, with
 *              `preconditionFailed`: a read-like outcome that must be consistent too);
 *   - fail:    it certainly did not take effect (a refused connection, a 503 or a redirect on a
 *              read that was not followed): the checkers ignore it;
 *   - unknown: it may or may not have taken effect, at any time after its invocation (a timeout, a
 *              dropped connection, a 503/504 on a write). It never completes: completeMs is null.
 * Times come from a monotonic clock (performance.now()), in milliseconds.
 */
import { z } from 'zod';
import { assert } from '../../../src/util/assert.js';

export const OP_KINDS = ['put', 'get', 'cas', 'create', 'delete'] as const;
export type OpKind = (typeof OP_KINDS)[number];

export const OUTCOMES = ['ok', 'fail', 'unknown'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface OpInput {
  /** put, cas, create: the value written; unique per write, so that a read names the write it saw. */
  readonly value?: string;
  /** cas: the modRevision sent as `If-Match: "N"` (the last ETag this client saw for the key). */
  readonly ifMatch?: number;
}

export interface OpOutput {
  /** get: the value read, or null for a 404. */
  readonly value?: string | null;
  /** put, cas, create: the revision the write was given; get: the ETag. */
  readonly modRevision?: number;
  readonly createRevision?: number;
  readonly version?: number;
  /** delete: how many keys it removed (0 or 1). */
  readonly deleted?: number;
  /** The store revision the response reported. */
  readonly revision?: number;
  /** cas or create answered 412: ok, and it wrote nothing because its precondition did not hold. */
  readonly preconditionFailed?: boolean;
  /** The HTTP status, for reports only. */
  readonly status?: number;
  /** fail and unknown: why (timeout, ECONNRESET, 503 NO_LEADER, ...), for reports only. */
  readonly error?: string;
}

export interface Operation {
  readonly id: number;
  readonly client: number;
  readonly key: string;
  readonly kind: OpKind;
  readonly input: OpInput;
  readonly invokeMs: number;
  /** null exactly when the outcome is unknown: such an op has no end. */
  readonly completeMs: number | null;
  readonly outcome: Outcome;
  readonly output: OpOutput;
}

export const HISTORY_FORMAT = 'flotilla-history';
export const HISTORY_VERSION = 1;

export interface HistoryJson {
  readonly format: typeof HISTORY_FORMAT;
  readonly version: typeof HISTORY_VERSION;
  readonly operations: readonly Operation[];
}

/** The reason recorded for an op that was invoked but never resolved (the run ended mid-flight). */
export const NO_RESPONSE = 'no response recorded';

export interface RecorderOptions {
  /** The monotonic clock; performance.now() unless a test drives time itself. */
  readonly now?: () => number;
}

/**
 * Collects the history while the workload runs. One op per client at a time: invoking a second one
 * while the first is unresolved is a workload bug, so it throws. An op never resolved is recorded as
 * unknown, which is exactly what it is.
 */
export class HistoryRecorder {
  readonly #now: () => number;
  readonly #ops = new Map<number, Operation>();
  readonly #inFlightByClient = new Map<number, number>();
  #nextId = 0;

  constructor(options: RecorderOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
  }

  invoke(client: number, key: string, kind: OpKind, input: OpInput = {}): number {
    checkInput(kind, input);
    const busy = this.#inFlightByClient.get(client);
    assert(busy === undefined, `client ${client} invoked a ${kind} while op #${busy} is in flight`);
    const id = this.#nextId++;
    this.#ops.set(id, {
      id, client, key, kind, input: { ...input }, invokeMs: this.#now(),
      completeMs: null, outcome: 'unknown', output: { error: NO_RESPONSE },
    });
    this.#inFlightByClient.set(client, id);
    return id;
  }

  /** The server answered; `output` is what the answer says (a 412 is `{ preconditionFailed: true }`). */
  ok(id: number, output: OpOutput = {}): void {
    this.#resolve(id, 'ok', output);
  }

  /** It certainly did not take effect. */
  fail(id: number, output: OpOutput = {}): void {
    this.#resolve(id, 'fail', output);
  }

  /** It may have taken effect, now or later. The client is free to go on. */
  unknown(id: number, reason: string, output: OpOutput = {}): void {
    this.#resolve(id, 'unknown', { ...output, error: reason });
  }

  get operations(): readonly Operation[] {
    return [...this.#ops.values()];
  }

  toJSON(): HistoryJson {
    return historyToJson(this.operations);
  }

  /** Loads a history saved with toJSON (an object or its JSON text), e.g. to re-check a failed run. */
  static fromJSON(json: unknown): HistoryRecorder {
    const recorder = new HistoryRecorder();
    for (const op of parseHistory(json)) {
      assert(!recorder.#ops.has(op.id), `history has two operations with id ${op.id}`);
      recorder.#ops.set(op.id, op);
      recorder.#nextId = Math.max(recorder.#nextId, op.id + 1);
    }
    return recorder;
  }

  #resolve(id: number, outcome: Outcome, output: OpOutput): void {
    const op = this.#ops.get(id);
    assert(op !== undefined, `no operation #${id}`);
    assert(this.#inFlightByClient.get(op.client) === id, `operation #${id} was already resolved`);
    this.#inFlightByClient.delete(op.client);
    const completeMs = outcome === 'unknown' ? null : this.#now();
    assert(completeMs === null || completeMs >= op.invokeMs, `operation #${id} completed before it was invoked`);
    this.#ops.set(id, { ...op, completeMs, outcome, output: { ...output } });
  }
}

export function historyToJson(operations: readonly Operation[]): HistoryJson {
  return { format: HISTORY_FORMAT, version: HISTORY_VERSION, operations };
}

const OperationSchema = z.object({
  id: z.number().int().nonnegative(),
  client: z.number().int(),
  key: z.string(),
  kind: z.enum(OP_KINDS),
  input: z.object({ value: z.string().optional(), ifMatch: z.number().int().optional() }),
  invokeMs: z.number(),
  completeMs: z.number().nullable(),
  outcome: z.enum(OUTCOMES),
  output: z.object({
    value: z.string().nullable().optional(),
    modRevision: z.number().int().optional(),
    createRevision: z.number().int().optional(),
    version: z.number().int().optional(),
    deleted: z.number().int().optional(),
    revision: z.number().int().optional(),
    preconditionFailed: z.boolean().optional(),
    status: z.number().int().optional(),
    error: z.string().optional(),
  }),
});

const HistorySchema = z.object({
  format: z.literal(HISTORY_FORMAT),
  version: z.literal(HISTORY_VERSION),
  operations: z.array(OperationSchema),
});

/** Parses and checks a saved history (an object or its JSON text). Throws on anything malformed. */
export function parseHistory(json: unknown): Operation[] {
  const parsed = HistorySchema.parse(typeof json === 'string' ? JSON.parse(json) : json);
  for (const op of parsed.operations) checkOperation(op);
  return parsed.operations;
}

/** The shape rules every checker relies on; a violation is a workload or recorder bug. */
export function checkOperation(op: Operation): void {
  checkInput(op.kind, op.input, op.id);
  assert((op.completeMs === null) === (op.outcome === 'unknown'),
    `#${op.id}: completeMs must be null exactly when the outcome is unknown`);
  assert(op.completeMs === null || op.completeMs >= op.invokeMs, `#${op.id} completed before it was invoked`);
  assert(!op.output.preconditionFailed || op.kind === 'cas' || op.kind === 'create',
    `#${op.id}: only cas and create can fail their precondition, not ${op.kind}`);
  assert(!(op.kind === 'get' && op.outcome === 'ok' && op.output.value === undefined),
    `#${op.id}: an ok get needs output.value (null for a 404)`);
}

function checkInput(kind: OpKind, input: OpInput, id?: number): void {
  const what = id === undefined ? kind : `#${id} ${kind}`;
  const writesValue = kind === 'put' || kind === 'cas' || kind === 'create';
  assert(writesValue === (typeof input.value === 'string'), `${what}: input.value is for put, cas and create only, and they need it`);
  assert((kind === 'cas') === Number.isInteger(input.ifMatch), `${what}: input.ifMatch is for cas only, and cas needs it`);
}

const DESCRIBE_VALUE_MAX_CHARS = 32;

/** One line for reports, e.g. `#12 c3 cas if-match 17 "v9" → rev 20`. */
export function describeOperation(op: Operation): string {
  return `#${op.id} c${op.client} ${describeCall(op)} → ${describeResult(op)}`;
}

export function describeValue(value: string): string {
  const shown = value.length > DESCRIBE_VALUE_MAX_CHARS ? `${value.slice(0, DESCRIBE_VALUE_MAX_CHARS)}…` : value;
  return JSON.stringify(shown);
}

function describeCall(op: Operation): string {
  const value = op.input.value === undefined ? '' : ` ${describeValue(op.input.value)}`;
  if (op.kind === 'cas') return `cas if-match ${op.input.ifMatch}${value}`;
  return `${op.kind}${value}`;
}

function describeResult(op: Operation): string {
  const out = op.output;
  if (op.outcome !== 'ok') {
    const why = out.error ?? (out.status === undefined ? '' : String(out.status));
    return why === '' ? op.outcome : `${op.outcome} (${why})`;
  }
  if (out.preconditionFailed) return '412';
  if (op.kind === 'delete') return out.deleted === undefined ? 'ok' : `deleted ${out.deleted}`;
  if (op.kind === 'get') {
    if (out.value === null || out.value === undefined) return '404';
    return out.modRevision === undefined ? describeValue(out.value) : `${describeValue(out.value)} rev ${out.modRevision}`;
  }
  return out.modRevision === undefined ? 'ok' : `rev ${out.modRevision}`;
}
