/**
 * A distributed lock, fair (FIFO) and released when its holder dies: the etcd recipe over
 * flotilla's API (see queue.ts). `lock()` puts `<name>/<leaseId>` with `If-None-Match: *` on a
 * lease and waits until that key has the lowest createRevision under `<name>/`.
 *
 * A lock alone does not protect an external resource: a holder can pause (GC, swap, a stopped
 * VM) past its lease, lose the lock, and go on writing while the next holder writes too. Pass
 * `fencingToken` (the key's createRevision; it only grows between holders) to whatever you
 * protect and have it refuse tokens older than one it has seen; inside flotilla, guard writes
 * with `isOwnerCompare()` in a txn. See docs/recipes/locks.md.
 */
import type { Client } from './client.js';
import { LockLostError, OutcomeUnknownError } from './errors.js';
import type { Lease } from './lease.js';
import { contenderKey, enqueue, queuePrefix, waitForTurn } from './queue.js';
import type { TxnCompare } from './types.js';

export interface LockOptions {
  /** Hold the lock on this lease (not revoked by unlock). Default: a lease of its own. */
  readonly lease?: Lease;
  /** TTL of the lock's own lease, in seconds: how long a dead holder blocks others. Default 10. */
  readonly ttlSeconds?: number;
}

export interface AcquireOptions {
  /** Give up waiting (the queued key is deleted). */
  readonly signal?: AbortSignal;
}

interface Held {
  readonly key: string;
  readonly createRevision: number;
  readonly lease: Lease;
  readonly ownsLease: boolean;
}

export class Lock {
  readonly #client: Client;
  readonly #prefix: string;
  readonly #options: LockOptions;
  #held: Held | null = null;

  constructor(client: Client, name: string, options: LockOptions = {}) {
    this.#client = client;
    this.#prefix = queuePrefix(name);
    this.#options = options;
  }

  /** The prefix under which contenders queue (`name/`). */
  get prefix(): string {
    return this.#prefix;
  }

  get held(): boolean {
    return this.#held !== null && !this.#held.lease.lost;
  }

  /** The holder's key, `<name>/<leaseId hex>`. */
  get key(): string {
    return this.#need().key;
  }

  /** The fencing token: the key's createRevision. Larger for every later holder. */
  get fencingToken(): number {
    return this.#need().createRevision;
  }

  /** Aborted when the lock's lease is lost: stop touching the protected resource. */
  get signal(): AbortSignal {
    return this.#need().lease.signal;
  }

  get lease(): Lease {
    return this.#need().lease;
  }

  /** A txn compare that holds only while this lock is held (the key still has our createRevision). */
  isOwnerCompare(): TxnCompare {
    const held = this.#need();
    return { key: held.key, target: 'createRevision', op: '=', value: held.createRevision };
  }

  /** Wait for the lock. Resolves when held; on abort or failure nothing is left queued. */
  async lock(options: AcquireOptions = {}): Promise<void> {
    if (this.#held) throw new TypeError(`lock ${this.#prefix} is already held by this Lock`);
    const ownsLease = this.#options.lease === undefined;
    const lease = this.#options.lease ?? (await this.#client.lease(this.#options.ttlSeconds ?? 10, { signal: options.signal }));
    const key = contenderKey(this.#prefix, lease);
    const signal = options.signal ? AbortSignal.any([options.signal, lease.signal]) : lease.signal;
    try {
      const mine = await enqueue(this.#client, key, { value: '', lease, signal });
      const me = await waitForTurn(this.#client, mine, { prefix: this.#prefix, signal });
      this.#held = { key, createRevision: me.createRevision, lease, ownsLease };
    } catch (err) {
      await this.#cleanUp(key, lease, ownsLease);
      if (lease.lost && !options.signal?.aborted) throw new LockLostError(`lost the lease while waiting for ${this.#prefix}`, { cause: err });
      throw err;
    }
  }

  /** Run `fn` while holding the lock; always unlocks after. `fn` gets this Lock (fencing token, signal). */
  async run<T>(fn: (lock: Lock) => Promise<T>, options: AcquireOptions = {}): Promise<T> {
    await this.lock(options);
    try {
      return await fn(this);
    } finally {
      await this.unlock();
    }
  }

  /** Release: delete our key (the next waiter is woken) and revoke the lock's own lease. */
  async unlock(): Promise<void> {
    const held = this.#held;
    if (!held) return;
    this.#held = null;
    await this.#cleanUp(held.key, held.lease, held.ownsLease, true);
  }

  async #cleanUp(key: string, lease: Lease, ownsLease: boolean, strict = false): Promise<void> {
    try {
      // Deleting our own key twice is harmless, so an unknown outcome is simply tried again.
      for (let attempt = 1; ; attempt++) {
        try {
          await this.#client.delete(key);
          break;
        } catch (err) {
          if (!(err instanceof OutcomeUnknownError) || attempt >= 3) throw err;
        }
      }
      if (ownsLease) await lease.revoke();
    } catch (err) {
      if (ownsLease) lease.stop(); // the key then goes when the lease expires
      if (strict) throw err;
    }
  }

  #need(): Held {
    if (!this.#held) throw new TypeError(`lock ${this.#prefix} is not held`);
    return this.#held;
  }
}
