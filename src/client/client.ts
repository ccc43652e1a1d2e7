/**
 * The flotilla client: `connect({ endpoints })` gives a Client that speaks the REST and
 * Coordination APIs over undici (one keep-alive Pool per member). See transport.ts for how a
 * request finds the leader and what is retried; in short, reads and definitely-refused writes are
 * retried until a deadline, and a write that may have been applied throws OutcomeUnknownError.
 */
import { errorFromAnswer } from './answer-errors.js';
import { ClientClosedError, InvalidArgumentError } from './errors.js';
import { Lease, parseLeaseGrant } from './lease.js';
import { Transport } from './transport.js';
import type { Answer } from './transport.js';
import type {
  Consistency,
  DeleteResult,
  KeyValue,
  ListPage,
  PutResult,
  TxnCompare,
  TxnOp,
  TxnOpResult,
  TxnRequest,
  TxnResult,
  WatchEvent,
} from './types.js';
import { watch } from './watch.js';
import type { WatchOptions } from './watch.js';
import { encodeKeyPath, isRecord, jsonValueFields, parseKeyValue, queryString, toBytes, wireNumber, wireString } from './wire.js';

export interface ConnectOptions {
  /** Client URLs of some or all members, e.g. `http://127.0.0.1:2379`. */
  readonly endpoints: readonly string[];
  /** One attempt's limit (headers and body gaps). Default 10,000 ms: above the server's 5 s write timeout. */
  readonly requestTimeoutMs?: number;
  /** One call's limit across every retry. Default 20,000 ms. */
  readonly deadlineMs?: number;
  /** TCP connect limit per attempt. Default 1,000 ms. */
  readonly connectTimeoutMs?: number;
  /** Retry back-off: first delay and cap (doubling, with jitter). Defaults 25 ms and 1,000 ms. */
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  /** A watch stream silent this long is reopened (the server sends progress about every 5 s). Default 15,000 ms. */
  readonly watchIdleTimeoutMs?: number;
}

export interface CallOptions {
  readonly signal?: AbortSignal;
  /** Overrides the client's deadlineMs for this call. */
  readonly deadlineMs?: number;
}

export interface GetOptions extends CallOptions {
  readonly consistency?: Consistency;
}

export interface PutOptions extends CallOptions {
  /** Apply only if the key exists with this modRevision (412 → PreconditionFailedError). */
  readonly ifMatch?: number;
  /** Apply only if the key is absent. */
  readonly ifNoneMatch?: boolean;
  /** Attach the key to this lease (a Lease or its id). */
  readonly lease?: Lease | number;
}

export interface DeleteOptions extends CallOptions {
  readonly ifMatch?: number;
}

export interface ListOptions extends CallOptions {
  /** At most this many items in the page (the server caps it too). */
  readonly limit?: number;
  /** Only keys strictly after this one (byte order). */
  readonly after?: string;
  readonly consistency?: Consistency;
}

export interface ListAllOptions extends CallOptions {
  /** Items per request. Default 500. */
  readonly pageSize?: number;
  readonly after?: string;
  readonly consistency?: Consistency;
}

export interface LeaseOptions extends CallOptions {
  /** Called once if the lease is lost (keep-alive 404, or no keep-alive success for a TTL). */
  readonly onLost?: (err: Error) => void;
}

export type { WatchOptions };

/** Open a client. No request is made until the first call; the leader is found on the way. */
export function connect(options: ConnectOptions): Client {
  return new Client(options);
}

export class Client {
  readonly #transport: Transport;
  readonly #options: Required<Omit<ConnectOptions, 'endpoints'>>;
  readonly #leases = new Set<Lease>();
  readonly #closing = new AbortController();

  constructor(options: ConnectOptions) {
    this.#options = {
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      deadlineMs: options.deadlineMs ?? 20_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 1_000,
      backoffInitialMs: options.backoffInitialMs ?? 25,
      backoffMaxMs: options.backoffMaxMs ?? 1_000,
      watchIdleTimeoutMs: options.watchIdleTimeoutMs ?? 15_000,
    };
    this.#transport = new Transport({ endpoints: options.endpoints, ...this.#options });
  }

  get endpoints(): readonly string[] {
    return this.#transport.endpoints;
  }

  /** The leader's client URL as last learned from a redirect (null until a write needed one). */
  get leaderUrl(): string | null {
    return this.#transport.leaderUrl;
  }

  /** The key's value and revisions, or null if it is absent. Linearizable unless `consistency: 'stale'`. */
  async get(key: string, options: GetOptions = {}): Promise<KeyValue | null> {
    const path = `/v1/kv/${encodeKeyPath(key)}${queryString({ consistency: options.consistency === 'stale' ? 'stale' : undefined })}`;
    const answer = await this.#request({ method: 'GET', path, retry: 'read' }, options);
    if (answer.status === 404) return null;
    if (answer.status !== 200) throw errorFromAnswer(answer, `get ${JSON.stringify(key)}`, { notFound: 'key' });
    return {
      key,
      value: answer.body,
      modRevision: headerNumber(answer, 'etag'),
      createRevision: headerNumber(answer, 'x-flotilla-create-revision'),
      version: headerNumber(answer, 'x-flotilla-version'),
    };
  }

  async put(key: string, value: string | Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    const lease = typeof options.lease === 'object' ? options.lease.id : options.lease;
    const path = `/v1/kv/${encodeKeyPath(key)}${queryString({ lease })}`;
    const headers = conditionHeaders(options);
    headers['content-type'] = 'application/octet-stream';
    const answer = await this.#request({ method: 'PUT', path, body: toBytes(value), headers, retry: 'write' }, options);
    if (answer.status !== 200) throw errorFromAnswer(answer, `put ${JSON.stringify(key)}`, { notFound: 'lease' });
    const o = json(answer);
    return {
      key: wireString(o['key'], 'key'),
      revision: wireNumber(o['revision'], 'revision'),
      modRevision: wireNumber(o['modRevision'], 'modRevision'),
      createRevision: wireNumber(o['createRevision'], 'createRevision'),
      version: wireNumber(o['version'], 'version'),
    };
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<DeleteResult> {
    const path = `/v1/kv/${encodeKeyPath(key)}`;
    const answer = await this.#request({ method: 'DELETE', path, headers: conditionHeaders(options), retry: 'write' }, options);
    if (answer.status !== 200) throw errorFromAnswer(answer, `delete ${JSON.stringify(key)}`, { notFound: 'key' });
    const o = json(answer);
    const deleted = wireNumber(o['deleted'], 'deleted');
    return { deleted: deleted === 1 ? 1 : 0, revision: wireNumber(o['revision'], 'revision') };
  }

  /** One page of the keys starting with `prefix`, in byte order. */
  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    const path = `/v1/kv${queryString({
      prefix,
      limit: options.limit,
      after: options.after,
      consistency: options.consistency === 'stale' ? 'stale' : undefined,
    })}`;
    const answer = await this.#request({ method: 'GET', path, retry: 'read' }, options);
    if (answer.status !== 200) throw errorFromAnswer(answer, `list ${JSON.stringify(prefix)}`);
    const o = json(answer);
    const items = o['items'];
    if (!Array.isArray(items)) throw new TypeError('server sent a listing without "items"');
    return { revision: wireNumber(o['revision'], 'revision'), items: items.map(parseKeyValue), more: o['more'] === true };
  }

  /**
   * Every key under `prefix`, page by page. Each page is its own linearizable read, so a listing
   * that spans pages is not one snapshot: compare revisions if that matters.
   */
  async *listAll(prefix: string, options: ListAllOptions = {}): AsyncGenerator<KeyValue, void, undefined> {
    let after = options.after;
    for (;;) {
      const page = await this.list(prefix, { ...options, limit: options.pageSize ?? 500, after });
      yield* page.items;
      if (!page.more || page.items.length === 0) return;
      after = page.items[page.items.length - 1].key;
    }
  }

  /** All-or-nothing: if every compare holds, run `success`, else `failure`. */
  async txn(request: TxnRequest, options: CallOptions = {}): Promise<TxnResult> {
    const body = JSON.stringify({
      compare: (request.compare ?? []).map(compareToWire),
      success: (request.success ?? []).map(opToWire),
      failure: (request.failure ?? []).map(opToWire),
    });
    const answer = await this.#request(
      { method: 'POST', path: '/v1/txn', body, headers: { 'content-type': 'application/json' }, retry: 'write' },
      options,
    );
    if (answer.status !== 200) throw errorFromAnswer(answer, 'txn');
    const o = json(answer);
    const branch = o['succeeded'] === true ? request.success ?? [] : request.failure ?? [];
    const results = Array.isArray(o['results']) ? o['results'] : [];
    return {
      succeeded: o['succeeded'] === true,
      revision: wireNumber(o['revision'], 'revision'),
      results: results.map((r: unknown, i): TxnOpResult => {
        if (branch[i]?.op === 'get') return r === null ? null : parseKeyValue(r);
        return isRecord(r) ? r : {};
      }),
    };
  }

  /** Changes to `key` (or every key under it, with `prefix`), resuming by itself after failures. */
  watch(key: string, options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    const signal = options.signal ? AbortSignal.any([options.signal, this.#closing.signal]) : this.#closing.signal;
    return watch(
      {
        transport: this.#transport,
        currentRevision: async (k, s) => (await this.list(k, { limit: 1, signal: s, deadlineMs: Number.POSITIVE_INFINITY })).revision,
        idleTimeoutMs: this.#options.watchIdleTimeoutMs,
        backoffInitialMs: this.#options.backoffInitialMs,
        backoffMaxMs: this.#options.backoffMaxMs,
      },
      key,
      { ...options, signal },
    );
  }

  /**
   * Grant a lease and keep it alive every ttl/3 until revoked, stopped, lost or the client closes.
   * A grant whose answer is lost throws OutcomeUnknownError (that lease, if made, just expires).
   */
  async lease(ttlSeconds: number, options: LeaseOptions = {}): Promise<Lease> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) throw new InvalidArgumentError(`lease TTL must be a positive whole number of seconds, got ${ttlSeconds}`);
    const sentAt = Date.now();
    const answer = await this.#request(
      { method: 'POST', path: '/v1/leases', body: JSON.stringify({ ttl: ttlSeconds }), headers: { 'content-type': 'application/json' }, retry: 'write' },
      options,
    );
    if (answer.status !== 200) throw errorFromAnswer(answer, 'grant lease');
    const lease = new Lease(this.#transport, parseLeaseGrant(answer.body), sentAt);
    if (this.#closing.signal.aborted) {
      lease.stop();
      throw new ClientClosedError();
    }
    for (const old of this.#leases) if (!old.active) this.#leases.delete(old);
    this.#leases.add(lease);
    if (options.onLost) lease.onLost(options.onLost);
    return lease;
  }

  /** Stop keep-alives (leases then expire on their own), end watches, close connections. */
  async close(): Promise<void> {
    this.#closing.abort(new ClientClosedError());
    for (const lease of this.#leases) lease.stop();
    this.#leases.clear();
    await this.#transport.close();
  }

  #request(spec: Parameters<Transport['request']>[0], options: CallOptions): Promise<Answer> {
    const signal = options.signal ? AbortSignal.any([options.signal, this.#closing.signal]) : this.#closing.signal;
    return this.#transport.request({ ...spec, signal, deadlineMs: options.deadlineMs ?? spec.deadlineMs });
  }
}

function conditionHeaders(options: { ifMatch?: number; ifNoneMatch?: boolean }): Record<string, string> {
  const headers: Record<string, string> = {};
  if (options.ifMatch !== undefined && options.ifNoneMatch) throw new InvalidArgumentError('Use ifMatch or ifNoneMatch, not both');
  if (options.ifMatch !== undefined) {
    if (!Number.isSafeInteger(options.ifMatch) || options.ifMatch <= 0) throw new InvalidArgumentError(`ifMatch must be a modRevision, got ${options.ifMatch}`);
    headers['if-match'] = `"${options.ifMatch}"`;
  }
  if (options.ifNoneMatch) headers['if-none-match'] = '*';
  return headers;
}

function headerNumber(answer: Answer, name: string): number {
  const raw = answer.headers[name];
  const text = (Array.isArray(raw) ? raw[0] : raw ?? '').replaceAll('"', '').replace(/^W\//, '');
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : 0;
}

function json(answer: Answer): Record<string, unknown> {
  const parsed: unknown = JSON.parse(answer.body.toString('utf8'));
  if (!isRecord(parsed)) throw new TypeError(`server sent a non-object answer: ${answer.body.toString('utf8').slice(0, 200)}`);
  return parsed;
}

function compareToWire(c: TxnCompare): Record<string, unknown> {
  if (c.target === 'value') {
    return { key: c.key, target: c.target, op: c.op, ...valueFields(typeof c.value === 'number' ? String(c.value) : c.value) };
  }
  if (typeof c.value !== 'number') throw new InvalidArgumentError(`compare on ${c.target} of ${JSON.stringify(c.key)} needs a number`);
  return { key: c.key, target: c.target, op: c.op, value: c.value };
}

function opToWire(op: TxnOp): Record<string, unknown> {
  if (op.op === 'put') {
    const out: Record<string, unknown> = { op: 'put', key: op.key, ...valueFields(op.value) };
    if (op.lease !== undefined) out['lease'] = op.lease;
    return out;
  }
  return { op: op.op, key: op.key };
}

/** JSON text when the bytes are UTF-8 (the contract's `value`), else flotilla's `valueBase64`. */
function valueFields(value: string | Uint8Array): { value: string } | { valueBase64: string } {
  return typeof value === 'string' ? { value } : jsonValueFields(toBytes(value));
}
