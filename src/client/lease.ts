/**
 * A lease this client keeps alive: a keep-alive every ttl/3 while it lives. It is lost when a
 * keep-alive answers 404 (the server expired or revoked it) or when no keep-alive has succeeded
 * for a whole TTL, counted from when the last good one was *sent* (the server's clock started no
 * earlier). Losing it aborts `signal` and calls the `onLost` callbacks once.
 */
import { errorFromAnswer } from './answer-errors.js';
import { FlotillaClientError, LeaseLostError, LeaseNotFoundError } from './errors.js';
import type { Transport } from './transport.js';
import { isRecord, wireNumber } from './wire.js';

export interface LeaseGrant {
  readonly id: number;
  readonly ttl: number;
}

export function parseLeaseGrant(body: Buffer): LeaseGrant {
  const parsed: unknown = JSON.parse(body.toString('utf8'));
  if (!isRecord(parsed)) throw new TypeError(`server sent a bad lease: ${body.toString('utf8').slice(0, 200)}`);
  return { id: wireNumber(parsed['id'], 'id'), ttl: wireNumber(parsed['ttl'], 'ttl') };
}

export class Lease {
  readonly id: number;
  /** The TTL the server granted (it may raise what was asked for to its minimum). */
  readonly ttl: number;
  readonly #transport: Transport;
  readonly #lost = new AbortController();
  readonly #callbacks: Array<(err: FlotillaClientError) => void> = [];
  #timer: NodeJS.Timeout | undefined;
  #validUntil: number;
  #stopped = false;
  #inflight: AbortController | null = null;

  /** Use `client.lease(ttl)`; this wraps an already granted lease and starts keeping it alive. */
  constructor(transport: Transport, grant: LeaseGrant, grantSentAt: number) {
    this.#transport = transport;
    this.id = grant.id;
    this.ttl = grant.ttl;
    this.#validUntil = grantSentAt + grant.ttl * 1000;
    this.#schedule();
  }

  /** Aborted (with a LeaseLostError as reason) once the lease is lost. Not aborted by revoke(). */
  get signal(): AbortSignal {
    return this.#lost.signal;
  }

  /** False once revoked, stopped or lost: no keep-alives are being sent. */
  get active(): boolean {
    return !this.#stopped && !this.lost;
  }

  get lost(): boolean {
    return this.#lost.signal.aborted;
  }

  /** The latest instant this client can be sure the lease is still alive. */
  get validUntil(): number {
    return this.#validUntil;
  }

  /** Called once when the lease is lost (at once, if it already is). */
  onLost(callback: (err: FlotillaClientError) => void): void {
    if (this.lost) {
      callback(this.#lost.signal.reason as FlotillaClientError);
      return;
    }
    this.#callbacks.push(callback);
  }

  /** Revoke it now: the server deletes every key attached to it. Stops the keep-alives. */
  async revoke(): Promise<void> {
    this.stop();
    const answer = await this.#transport.request({ method: 'DELETE', path: `/v1/leases/${this.id}`, retry: 'idempotent' });
    if (answer.status === 404) return; // already gone: the keys are too
    if (answer.status !== 200) throw errorFromAnswer(answer, `revoke lease ${this.id}`, { notFound: 'lease' });
  }

  /** Stop keeping it alive without revoking it (it then expires after its TTL). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#inflight?.abort();
  }

  /** One keep-alive now. Throws LeaseNotFoundError (and marks the lease lost) if it is gone. */
  async keepAliveOnce(): Promise<void> {
    const sentAt = Date.now();
    const inflight = new AbortController();
    this.#inflight = inflight;
    try {
      const answer = await this.#transport.request({
        method: 'POST',
        path: `/v1/leases/${this.id}/keepalive`,
        retry: 'idempotent',
        // Past validUntil there is nothing left to save.
        deadlineMs: Math.max(1, this.#validUntil - sentAt),
        signal: inflight.signal,
      });
      if (answer.status === 404) {
        const err = errorFromAnswer(answer, `lease ${this.id} keep-alive`, { notFound: 'lease' });
        this.#markLost(new LeaseLostError(`lease ${this.id} expired or was revoked`, { cause: err }));
        throw err;
      }
      if (answer.status !== 200) throw errorFromAnswer(answer, `lease ${this.id} keep-alive`, { notFound: 'lease' });
      const ttl = parseLeaseGrant(answer.body).ttl;
      this.#validUntil = Math.max(this.#validUntil, sentAt + ttl * 1000);
    } finally {
      if (this.#inflight === inflight) this.#inflight = null;
    }
  }

  #schedule(): void {
    if (this.#stopped || this.lost) return;
    const intervalMs = Math.max(100, (this.ttl * 1000) / 3);
    this.#timer = setTimeout(() => void this.#tick(), intervalMs);
  }

  async #tick(): Promise<void> {
    if (this.#stopped || this.lost) return;
    try {
      await this.keepAliveOnce();
    } catch (err) {
      if (err instanceof LeaseNotFoundError || this.#stopped) return;
      if (Date.now() >= this.#validUntil) {
        this.#markLost(new LeaseLostError(`lease ${this.id}: no keep-alive succeeded within its TTL of ${this.ttl} s`, { cause: err }));
        return;
      }
      // Try again sooner than a full interval: the lease is running out.
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.#tick(), Math.min(500, Math.max(50, this.#validUntil - Date.now())));
      return;
    }
    this.#schedule();
  }

  #markLost(err: LeaseLostError): void {
    if (this.lost) return;
    clearTimeout(this.#timer);
    this.#lost.abort(err);
    for (const cb of this.#callbacks.splice(0)) {
      try {
        cb(err);
      } catch {
        // A callback's failure is the caller's; it must not stop the others.
      }
    }
  }
}

/** Whether an error means "the lease is gone", as opposed to "could not reach the cluster". */
export function isLeaseGone(err: unknown): boolean {
  return err instanceof LeaseNotFoundError || err instanceof LeaseLostError;
}
