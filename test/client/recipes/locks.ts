// Recipe: a critical section across processes, with fencing (docs/recipes/locks.md).
// In an application, import these from 'flotilla' instead of the repository's sources.
import type { Client } from '../../../src/client/client.js';
import { LockLostError } from '../../../src/client/errors.js';
import { Lock } from '../../../src/client/lock.js';

/**
 * Add `amount` to the number stored at `counterKey`, under lock `lockName`. The write is fenced
 * inside flotilla: the txn applies only if our lock key still exists with our createRevision,
 * so a holder that lost its lock while paused cannot overwrite its successor's work.
 */
export async function addUnderLock(client: Client, counterKey: string, options: { lockName: string; amount: number }): Promise<number> {
  return new Lock(client, options.lockName).run(async (lock) => {
    const current = await client.get(counterKey);
    const next = Number(current?.value.toString('utf8') ?? '0') + options.amount;
    const r = await client.txn({ compare: [lock.isOwnerCompare()], success: [{ op: 'put', key: counterKey, value: String(next) }] });
    if (!r.succeeded) throw new LockLostError(`lost ${options.lockName} before writing ${counterKey}`);
    return next;
  });
}

/**
 * A resource outside flotilla that protects itself with fencing tokens: it remembers the highest
 * token it has accepted and refuses older ones. The lock's `fencingToken` grows with each holder.
 */
export class FencedStore {
  #highestToken = 0;
  readonly writes: string[] = [];

  write(fencingToken: number, data: string): void {
    if (fencingToken < this.#highestToken) {
      throw new Error(`refused: fencing token ${fencingToken} is older than ${this.#highestToken}`);
    }
    this.#highestToken = fencingToken;
    this.writes.push(data);
  }
}
