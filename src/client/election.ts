/**
 * Leader election, the etcd recipe over flotilla's API: campaigners queue as in queue.ts (key
 * `<name>/<leaseId>` holding the campaigner's value, on its lease); the oldest key is the leader,
 * and its value is what the leader proclaims. A leader that dies stops its keep-alives, its lease
 * expires, its key is deleted, and the next campaigner in line leads.
 *
 * Being leader is a belief that can be stale (a paused process outlives its lease): fence what a
 * leader does with `createRevision` or `isLeaderCompare()`, as for locks.
 */
import type { Client } from './client.js';
import { CompactedError, LockLostError, NotElectionLeaderError, OutcomeUnknownError, PreconditionFailedError } from './errors.js';
import type { Lease } from './lease.js';
import { contenderKey, enqueue, queuePrefix, readQueue, waitForTurn } from './queue.js';
import type { KeyValue, TxnCompare } from './types.js';

export interface ElectionOptions {
  /** Campaign on this lease (not revoked by resign). Default: a lease of its own. */
  readonly lease?: Lease;
  /** TTL of the campaign's own lease, in seconds: how long a dead leader keeps the post. Default 10. */
  readonly ttlSeconds?: number;
}

/** The leader as stored: its key, value and revisions. */
export type LeaderInfo = KeyValue;

interface Campaign {
  readonly key: string;
  readonly createRevision: number;
  modRevision: number;
  readonly lease: Lease;
  readonly ownsLease: boolean;
}

export class Election {
  readonly #client: Client;
  readonly #prefix: string;
  readonly #options: ElectionOptions;
  #campaign: Campaign | null = null;
  #leading = false;

  constructor(client: Client, name: string, options: ElectionOptions = {}) {
    this.#client = client;
    this.#prefix = queuePrefix(name);
    this.#options = options;
  }

  get prefix(): string {
    return this.#prefix;
  }

  /** True from campaign() resolving until resign() or the lease being lost. */
  get isLeader(): boolean {
    return this.#leading && this.#campaign !== null && !this.#campaign.lease.lost;
  }

  /** Our key (while campaigning or leading). */
  get key(): string {
    return this.#need().key;
  }

  /** Our key's createRevision: a fencing token for what the leader does. */
  get createRevision(): number {
    return this.#need().createRevision;
  }

  /** Aborted when our lease is lost (we are no longer leader, or never will be). */
  get signal(): AbortSignal {
    return this.#need().lease.signal;
  }

  get lease(): Lease {
    return this.#need().lease;
  }

  /** A txn compare that holds only while we still lead. */
  isLeaderCompare(): TxnCompare {
    const c = this.#need();
    return { key: c.key, target: 'createRevision', op: '=', value: c.createRevision };
  }

  /** Join the election with `value`; resolves once we lead. On abort or failure we leave the line. */
  async campaign(value: string | Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#campaign) throw new TypeError(`already campaigning in ${this.#prefix}`);
    const ownsLease = this.#options.lease === undefined;
    const lease = this.#options.lease ?? (await this.#client.lease(this.#options.ttlSeconds ?? 10, { signal: options.signal }));
    const key = contenderKey(this.#prefix, lease);
    const signal = options.signal ? AbortSignal.any([options.signal, lease.signal]) : lease.signal;
    try {
      const mine = await enqueue(this.#client, key, { value, lease, signal });
      this.#campaign = { key, createRevision: mine.createRevision, modRevision: mine.modRevision, lease, ownsLease };
      // Our key may predate this call (a retried campaign): make it say what we say now.
      if (!mine.value.equals(Buffer.from(value))) await this.#write(value);
      await waitForTurn(this.#client, mine, { prefix: this.#prefix, signal });
      this.#leading = true;
    } catch (err) {
      this.#campaign = null;
      await this.#leave(key, lease, ownsLease).catch(() => undefined);
      if (err instanceof LockLostError) throw new NotElectionLeaderError(`our campaign key vanished from ${this.#prefix} (the lease expired)`, { cause: err });
      throw err;
    }
  }

  /** Change the leader's value without a new election. Throws NotElectionLeaderError if we no longer lead. */
  async proclaim(value: string | Uint8Array): Promise<void> {
    if (!this.isLeader) throw new NotElectionLeaderError(`not the leader of ${this.#prefix}`);
    try {
      await this.#write(value);
    } catch (err) {
      if (err instanceof NotElectionLeaderError) this.#leading = false;
      throw err;
    }
  }

  /** Step down (or stop campaigning): delete our key so the next in line leads. */
  async resign(): Promise<void> {
    const c = this.#campaign;
    if (!c) return;
    this.#campaign = null;
    this.#leading = false;
    await this.#leave(c.key, c.lease, c.ownsLease);
  }

  /** The current leader, or null when nobody campaigns. */
  async leader(options: { signal?: AbortSignal } = {}): Promise<LeaderInfo | null> {
    const queue = await readQueue(this.#client, this.#prefix, options.signal);
    return queue.entries[0] ?? null;
  }

  /**
   * The leader now (if any), then each change: a new leader, or a new value it proclaimed. Not
   * every intermediate leader is guaranteed to appear, but the latest one always does.
   */
  observe(options: { signal?: AbortSignal } = {}): AsyncIterable<LeaderInfo> {
    return { [Symbol.asyncIterator]: () => observeLeaders(this.#client, this.#prefix, options.signal) };
  }

  /** If-Match on our key's modRevision: it fails once our key is gone or was replaced. */
  async #write(value: string | Uint8Array): Promise<void> {
    const c = this.#need();
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.#client.put(c.key, value, { ifMatch: c.modRevision, lease: c.lease });
        c.modRevision = r.modRevision;
        return;
      } catch (err) {
        // An earlier write of ours whose answer was lost moves modRevision; look before giving up.
        const retryable = err instanceof PreconditionFailedError || err instanceof OutcomeUnknownError;
        if (!retryable || attempt >= 3) throw err;
        const now = await this.#client.get(c.key);
        if (!now || now.createRevision !== c.createRevision) {
          throw new NotElectionLeaderError(`${c.key} is gone: no longer campaigning in ${this.#prefix}`, { cause: err });
        }
        c.modRevision = now.modRevision;
        if (now.value.equals(Buffer.from(value))) return;
      }
    }
  }

  async #leave(key: string, lease: Lease, ownsLease: boolean): Promise<void> {
    try {
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
      if (ownsLease) lease.stop();
      throw err;
    }
  }

  #need(): Campaign {
    if (!this.#campaign) throw new TypeError(`not campaigning in ${this.#prefix}`);
    return this.#campaign;
  }
}

async function* observeLeaders(client: Client, prefix: string, signal: AbortSignal | undefined): AsyncGenerator<LeaderInfo, void, undefined> {
  let last: LeaderInfo | null = null;
  const isNew = (l: LeaderInfo) => last === null || l.key !== last.key || l.modRevision > last.modRevision;
  try {
    for (;;) {
      if (signal?.aborted) return;
      const queue = await readQueue(client, prefix, signal);
      let leader: LeaderInfo | null = queue.entries[0] ?? null;
      let from = queue.revision + 1;
      if (!leader) {
        // Nobody leads: the first key put under the prefix from here on is the next leader.
        for await (const e of client.watch(prefix, { prefix: true, fromRevision: from, signal })) {
          if (e.type === 'put') {
            leader = { key: e.key, value: e.value, modRevision: e.modRevision, createRevision: e.modRevision, version: 1 };
            break;
          }
        }
        if (!leader) return; // aborted
        from = leader.modRevision + 1;
      }
      if (isNew(leader)) {
        last = leader;
        yield leader;
      }
      // Follow the leader's key: each put is a proclamation, a delete ends its term.
      for await (const e of client.watch(leader.key, { fromRevision: from, signal })) {
        if (e.type === 'delete') break;
        const next: LeaderInfo = { ...leader, value: e.value, modRevision: e.modRevision, version: leader.version + 1 };
        leader = next;
        if (isNew(next)) {
          last = next;
          yield next;
        }
      }
    }
  } catch (err) {
    if (signal?.aborted) return;
    if (err instanceof CompactedError) {
      yield* observeLeaders(client, prefix, signal); // history is gone: start over from a fresh read
      return;
    }
    throw err;
  }
}
