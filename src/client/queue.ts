/**
 * The waiting line under a prefix that Lock and Election share (the scheme of etcd's
 * concurrency package): each contender holds one key `<prefix><leaseId>` attached to its lease,
 * and the contender whose key has the lowest createRevision is at the front. A contender waits
 * for only the key just ahead of it to be deleted (unlock, resign or lease expiry), then looks
 * again, so a release wakes one waiter, in FIFO order.
 */
import type { Client } from './client.js';
import { CompactedError, LockLostError, OutcomeUnknownError, PreconditionFailedError } from './errors.js';
import type { Lease } from './lease.js';
import type { KeyValue } from './types.js';

/** `name` as a key prefix ending in `/`. */
export function queuePrefix(name: string): string {
  if (name.length === 0) throw new TypeError('a lock or election name must not be empty');
  return name.endsWith('/') ? name : `${name}/`;
}

/** The contender key for a lease: its id in hex, like etcd. */
export function contenderKey(prefix: string, lease: Lease): string {
  return `${prefix}${lease.id.toString(16)}`;
}

export interface Queue {
  /** The revision the first page was read at: nothing is missed by watching from revision + 1. */
  readonly revision: number;
  /** Live contenders, oldest (lowest createRevision) first. */
  readonly entries: readonly KeyValue[];
}

export async function readQueue(client: Client, prefix: string, signal?: AbortSignal): Promise<Queue> {
  let revision = Number.POSITIVE_INFINITY;
  const entries: KeyValue[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await client.list(prefix, { limit: 500, after, signal });
    revision = Math.min(revision, page.revision);
    entries.push(...page.items);
    if (!page.more || page.items.length === 0) break;
    after = page.items[page.items.length - 1].key;
  }
  entries.sort((a, b) => a.createRevision - b.createRevision);
  return { revision, entries };
}

/** Attempts at creating our key when the answer keeps getting lost. */
const MAX_ENQUEUE_ATTEMPTS = 5;

/**
 * Create our key with `If-None-Match: *` on the lease. Safe to repeat after an unknown outcome:
 * the key is ours alone (named by our lease), so 412 means an earlier attempt made it.
 */
export async function enqueue(
  client: Client,
  key: string,
  options: { value: string | Uint8Array; lease: Lease; signal?: AbortSignal },
): Promise<KeyValue> {
  const { value, lease, signal } = options;
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await client.put(key, value, { ifNoneMatch: true, lease, signal });
      return { key, value: Buffer.from(value), modRevision: r.modRevision, createRevision: r.createRevision, version: r.version };
    } catch (err) {
      if (err instanceof PreconditionFailedError) {
        const existing = await client.get(key, { signal });
        if (existing) return existing;
        continue; // it expired in between: make it again
      }
      if (err instanceof OutcomeUnknownError && attempt < MAX_ENQUEUE_ATTEMPTS) continue;
      throw err;
    }
  }
}

/**
 * Wait until no contender created before us remains. Returns our key as it stands when we are
 * first. Throws LockLostError if our key disappears (our lease expired) while waiting.
 */
export async function waitForTurn(client: Client, mine: KeyValue, options: { prefix: string; signal?: AbortSignal }): Promise<KeyValue> {
  const { prefix, signal } = options;
  for (;;) {
    signal?.throwIfAborted();
    const queue = await readQueue(client, prefix, signal);
    const me = queue.entries.find((e) => e.key === mine.key);
    if (!me || me.createRevision !== mine.createRevision) {
      throw new LockLostError(`${mine.key} is gone (its lease expired or it was deleted) while waiting in ${prefix}`);
    }
    let ahead: KeyValue | undefined;
    for (const e of queue.entries) if (e.createRevision < me.createRevision) ahead = e;
    if (!ahead) return me;
    await waitDeleted(client, ahead.key, { fromRevision: queue.revision + 1, signal });
  }
}

/** Resolve once `key` is deleted at or after `fromRevision` (or when history is gone: look again). */
export async function waitDeleted(client: Client, key: string, options: { fromRevision: number; signal?: AbortSignal }): Promise<void> {
  const { signal } = options;
  try {
    for await (const event of client.watch(key, options)) {
      if (event.type === 'delete') return;
    }
  } catch (err) {
    if (err instanceof CompactedError) return;
    throw err;
  }
  // The watch ends quietly only when aborted.
  signal?.throwIfAborted();
}
