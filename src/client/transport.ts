/**
 * Getting one request answered by the cluster: pick a member, follow and remember the leader's
 * 307s, rotate past members that refuse connections, back off and retry what is safe to retry,
 * and stop at an overall deadline. The one rule that never bends: a write that may have reached
 * a member is never sent again; the caller gets OutcomeUnknownError instead.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { ClientClosedError, OutcomeUnknownError, UnavailableError } from './errors.js';

/**
 * How a request may be retried.
 * - `read`: changes nothing; retried after any failure.
 * - `write`: retried only when it definitely was not applied (connection refused, 503 NO_LEADER, ...).
 * - `idempotent`: a write that is harmless to apply twice (lease keep-alive, revoke); retried like a read.
 */
export type RetryClass = 'read' | 'write' | 'idempotent';

export interface CallSpec {
  readonly method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  /** Path and query, already encoded. */
  readonly path: string;
  readonly body?: Buffer | string;
  readonly headers?: Record<string, string>;
  readonly retry: RetryClass;
  /** Overrides the client's overall deadline for this call. */
  readonly deadlineMs?: number;
  readonly signal?: AbortSignal;
  /** For `open`: give up on a stream that is silent this long (default: the request timeout). */
  readonly idleTimeoutMs?: number;
}

export interface Answer {
  readonly streaming?: false;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** The member that answered. */
  readonly origin: string;
}

export interface StreamAnswer {
  readonly streaming: true;
  readonly status: 200;
  readonly headers: IncomingHttpHeaders;
  readonly body: Dispatcher.ResponseData['body'];
  readonly origin: string;
}

export interface TransportOptions {
  readonly endpoints: readonly string[];
  /** One attempt's limit for the answer's headers (and for gaps in its body). */
  readonly requestTimeoutMs: number;
  /** A call's limit across every attempt. */
  readonly deadlineMs: number;
  readonly connectTimeoutMs: number;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
}

/** Error codes that a member sends only for a request it did not apply. */
const NOT_APPLIED_CODES = new Set(['NO_LEADER', 'LEADER_CHANGED', 'OVERLOADED', 'SHUTTING_DOWN']);
/** Network failures that happen before a request can have left this process. */
const NOT_SENT_ERRORS = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT',
]);
/** A retried write is not sent with less time than this left before the deadline. */
const MIN_WRITE_ATTEMPT_MS = 100;
/** Consecutive redirects before we suspect a loop (members disagreeing about the leader) and back off. */
const MAX_FREE_REDIRECTS = 3;

/** A non-2xx answer's `{"error":{"code"}}`, if it has one. */
export function errorCodeOf(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { error?: { code?: unknown } };
    return typeof parsed.error?.code === 'string' ? parsed.error.code : undefined;
  } catch {
    return undefined;
  }
}

export function errorMessageOf(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { error?: { message?: unknown } };
    return typeof parsed.error?.message === 'string' ? parsed.error.message : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a network error means the request cannot have been sent (so even a write may go again). */
export function wasNotSent(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NOT_SENT_ERRORS.has(code)) return true;
    // Node's connect with several addresses fails with an AggregateError of per-address errors.
    if (e instanceof AggregateError && e.errors.length > 0 && e.errors.every((x) => wasNotSent(x))) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * A 503 that says the request was not applied: one of our codes, or Fastify's own answer while
 * the member is closing (sent before any route runs).
 */
function isNotAppliedAnswer(status: number, body: Buffer): boolean {
  if (status !== 503) return false;
  const code = errorCodeOf(body);
  if (code !== undefined) return NOT_APPLIED_CODES.has(code);
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { statusCode?: unknown; error?: unknown };
    return parsed.statusCode === 503 && typeof parsed.error === 'string';
  } catch {
    return false;
  }
}

function originOf(url: string): string {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`endpoint ${url} is not http(s)`);
  return u.origin;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Why an attempt did not produce a final answer, kept for the error a caller finally sees. */
interface Failure {
  readonly reason: string;
  readonly cause?: unknown;
  readonly status?: number;
  readonly serverCode?: string;
}

export class Transport {
  readonly #options: TransportOptions;
  readonly #endpoints: string[];
  readonly #pools = new Map<string, Pool>();
  #cursor = 0;
  #leader: string | null = null;
  #closed = false;

  constructor(options: TransportOptions) {
    if (options.endpoints.length === 0) throw new TypeError('connect: at least one endpoint is needed');
    this.#options = options;
    this.#endpoints = [...new Set(options.endpoints.map(originOf))];
  }

  /** The leader's client URL as last learned from a redirect, or null. */
  get leaderUrl(): string | null {
    return this.#leader;
  }

  get endpoints(): readonly string[] {
    return this.#endpoints;
  }

  /** Send a request and read the whole answer. Returns any answer that is final (2xx, 4xx, ...). */
  async request(spec: CallSpec): Promise<Answer> {
    return (await this.#run(spec, false)) as Answer;
  }

  /**
   * Open a streaming GET: a 200's body is handed back unread; any other final answer is read
   * whole and returned as an Answer.
   */
  async open(spec: CallSpec): Promise<StreamAnswer | Answer> {
    return this.#run(spec, true);
  }

  /** Note that a member failed outside `request` (a broken watch stream): move on from it. */
  reportFailure(origin: string): void {
    if (this.#leader === origin) this.#leader = null;
    if (this.#endpoints[this.#cursor % this.#endpoints.length] === origin) this.#cursor++;
  }

  /** Prefer another member next time (a watch resuming elsewhere). */
  rotate(): void {
    this.#leader = null;
    this.#cursor++;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#pools.values()].map((p) => p.destroy().catch(() => undefined)));
    this.#pools.clear();
  }

  #pool(origin: string): Pool {
    let pool = this.#pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        connect: { timeout: this.#options.connectTimeoutMs },
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: 30_000,
      });
      this.#pools.set(origin, pool);
    }
    return pool;
  }

  /**
   * Writes go to the leader once known. Reads and watches go to the endpoints in the order given
   * (every member answers them linearizably), which spreads readers instead of piling them on
   * the leader; a redirect within a call is followed whatever the kind.
   */
  #target(retry: RetryClass, redirectedTo: string | null): string {
    const endpoint = this.#endpoints[this.#cursor % this.#endpoints.length];
    return redirectedTo ?? (retry === 'read' ? endpoint : this.#leader ?? endpoint);
  }

  #backoffMs(attempt: number): number {
    const { backoffInitialMs, backoffMaxMs } = this.#options;
    const base = Math.min(backoffMaxMs, backoffInitialMs * 2 ** Math.min(attempt, 20));
    return base / 2 + Math.random() * (base / 2);
  }

  async #run(spec: CallSpec, stream: boolean): Promise<Answer | StreamAnswer> {
    const deadline = Date.now() + (spec.deadlineMs ?? this.#options.deadlineMs);
    let failures = 0;
    let redirects = 0;
    let last: Failure = { reason: 'no attempt was made' };
    let redirectedTo: string | null = null;
    for (;;) {
      if (this.#closed) throw new ClientClosedError();
      spec.signal?.throwIfAborted();
      const remaining = deadline - Date.now();
      // A write sent with almost no time left would likely end as OutcomeUnknown; not sending it is definite.
      if (remaining <= 0 || (spec.retry === 'write' && failures > 0 && remaining < MIN_WRITE_ATTEMPT_MS)) {
        throw new UnavailableError(`${spec.method} ${spec.path}: no member answered before the deadline (last: ${last.reason})`, {
          cause: last.cause,
          status: last.status,
          serverCode: last.serverCode,
        });
      }
      const origin = this.#target(spec.retry, redirectedTo);
      redirectedTo = null;
      const timeoutMs = Math.max(1, Math.min(this.#options.requestTimeoutMs, remaining));
      let res: Dispatcher.ResponseData;
      try {
        res = await this.#pool(origin).request({
          method: spec.method,
          path: spec.path,
          headers: spec.headers,
          body: spec.body,
          headersTimeout: timeoutMs,
          bodyTimeout: stream ? (spec.idleTimeoutMs ?? this.#options.requestTimeoutMs) : timeoutMs,
          signal: spec.signal,
        });
      } catch (err) {
        if (spec.signal?.aborted) throw spec.signal.reason;
        if (this.#closed) throw new ClientClosedError();
        this.reportFailure(origin);
        if (spec.retry === 'write' && !wasNotSent(err)) {
          throw new OutcomeUnknownError(`${spec.method} ${spec.path}: the connection to ${origin} failed after sending; the write may or may not have been applied`, { cause: err });
        }
        last = { reason: `${origin}: ${(err as Error).message ?? String(err)}`, cause: err };
        await this.#pause(failures++, deadline, spec.signal);
        continue;
      }

      if (stream && res.statusCode === 200) {
        return { streaming: true, status: 200, headers: res.headers, body: res.body, origin };
      }
      let body: Buffer;
      try {
        body = Buffer.from(await res.body.arrayBuffer());
      } catch (err) {
        if (spec.signal?.aborted) throw spec.signal.reason;
        this.reportFailure(origin);
        if (spec.retry === 'write') {
          throw new OutcomeUnknownError(`${spec.method} ${spec.path}: the answer from ${origin} broke off (status ${res.statusCode}); the write may or may not have been applied`, { cause: err, status: res.statusCode });
        }
        last = { reason: `${origin}: answer broke off: ${(err as Error).message}`, cause: err };
        await this.#pause(failures++, deadline, spec.signal);
        continue;
      }

      const status = res.statusCode;
      if (status === 307 || status === 308) {
        const location = res.headers['location'];
        if (typeof location === 'string') {
          try {
            this.#leader = redirectedTo = new URL(location, origin).origin;
          } catch {
            this.#leader = null;
          }
        }
        last = { reason: `${origin} redirected to ${String(location)}`, status };
        if (++redirects > MAX_FREE_REDIRECTS) await this.#pause(failures++, deadline, spec.signal);
        continue;
      }
      redirects = 0;
      if (status < 500) return { status, headers: res.headers, body, origin };

      const serverCode = errorCodeOf(body);
      const notApplied = isNotAppliedAnswer(status, body);
      if (spec.retry === 'write' && !notApplied) {
        throw new OutcomeUnknownError(`${spec.method} ${spec.path}: ${origin} answered ${status} ${serverCode ?? ''}: ${errorMessageOf(body) ?? 'no detail'}; the write may or may not have been applied`.replace('  ', ' '), { status, serverCode });
      }
      // NO_LEADER / SHUTTING_DOWN from this member: another member may know a leader.
      if (serverCode !== 'OVERLOADED') this.reportFailure(origin);
      last = { reason: `${origin} answered ${status} ${serverCode ?? ''}`.trim(), status, serverCode };
      await this.#pause(failures++, deadline, spec.signal);
    }
  }

  async #pause(attempt: number, deadline: number, signal: AbortSignal | undefined): Promise<void> {
    const ms = Math.min(this.#backoffMs(attempt), Math.max(0, deadline - Date.now()));
    if (ms > 0) await sleep(ms, signal);
  }
}
