// Recipe: run a job on exactly one instance at a time (docs/recipes/leader-election.md).
// In an application, import these from 'flotilla' instead of the repository's sources.
import type { Client } from '../../../src/client/client.js';
import { Election } from '../../../src/client/election.js';

export interface RunAsLeaderOptions {
  /** This instance's name, stored as the leader's value. */
  readonly id: string;
  /** The job. Its signal aborts when leadership is lost or on shutdown: stop then. */
  readonly work: (election: Election, signal: AbortSignal) => Promise<void>;
  /** Shutdown: stop campaigning, or stop working and resign. */
  readonly signal: AbortSignal;
}

/**
 * Campaign in election `name`; once leading, run `work` and resign when it returns. Leadership is
 * lost when our lease expires (we were cut off, or paused too long). Writes `work` makes to
 * flotilla should be fenced (putAsLeader), so a deposed leader's late write is refused.
 */
export async function runAsLeader(client: Client, name: string, options: RunAsLeaderOptions): Promise<void> {
  const election = new Election(client, name, { ttlSeconds: 5 });
  await election.campaign(options.id, { signal: options.signal });
  try {
    await options.work(election, AbortSignal.any([election.signal, options.signal]));
  } finally {
    await election.resign().catch(() => undefined); // if this fails, the lease expires anyway
  }
}

/** A fenced write: applied only while `election` still leads. Returns false if it no longer does. */
export async function putAsLeader(client: Client, election: Election, entry: { key: string; value: string }): Promise<boolean> {
  const r = await client.txn({ compare: [election.isLeaderCompare()], success: [{ op: 'put', key: entry.key, value: entry.value }] });
  return r.succeeded;
}

/** Report who leads election `name` now and after every change, until `signal` aborts. */
export async function followLeader(client: Client, name: string, options: { onLeader: (id: string) => void; signal: AbortSignal }): Promise<void> {
  for await (const leader of new Election(client, name).observe({ signal: options.signal })) options.onLeader(leader.value.toString('utf8'));
}
