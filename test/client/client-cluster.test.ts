import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connect } from '../../src/client/client.js';
import type { Client } from '../../src/client/client.js';
import { OutcomeUnknownError, PreconditionFailedError, UnavailableError } from '../../src/client/errors.js';
import { ProcessCluster, REPO, sleep } from '../support/process-cluster.js';
import { spawnNode } from './cli-process.js';

const ELECTION_MS = 500;

/** The client against three real members: redirects, retries, a leader SIGKILL, a dying lease holder. */
describe('client against a real cluster', () => {
  let cluster: ProcessCluster;
  const clients: Client[] = [];
  const client = (endpoints: string[], options: { deadlineMs?: number } = {}) => {
    const c = connect({ endpoints, ...options });
    clients.push(c);
    return c;
  };
  const urls = (names?: string[]) => (names ?? cluster.members.map((m) => m.name)).map((n) => cluster.member(n).clientUrl);

  beforeAll(async () => {
    cluster = await ProcessCluster.create({ size: 3, electionMs: ELECTION_MS });
    await cluster.startAll();
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await cluster?.destroy();
  });

  test('put, get, list and txn through a follower and through the leader', async () => {
    const leader = await cluster.waitForLeader();
    const follower = cluster.members.find((m) => m.name !== leader)!.name;
    const viaFollower = client(urls([follower]));
    const viaLeader = client(urls([leader]));

    const put = await viaFollower.put('cfg/a b/ü', 'one');
    expect(viaFollower.leaderUrl).toBe(cluster.member(leader).clientUrl); // learned from the 307
    expect(put).toMatchObject({ key: 'cfg/a b/ü', version: 1, createRevision: put.modRevision });
    const got = await viaFollower.get('cfg/a b/ü');
    expect(got).toEqual({ key: 'cfg/a b/ü', value: Buffer.from('one'), modRevision: put.modRevision, createRevision: put.modRevision, version: 1 });
    expect(await viaLeader.get('cfg/a b/ü', { consistency: 'stale' })).not.toBeNull();
    expect(await viaLeader.get('cfg/absent')).toBeNull();

    await expect(viaLeader.put('cfg/a b/ü', 'two', { ifMatch: put.modRevision + 100 })).rejects.toBeInstanceOf(PreconditionFailedError);
    const second = await viaLeader.put('cfg/a b/ü', Buffer.from([0, 1, 255]), { ifMatch: put.modRevision });
    expect(second.version).toBe(2);
    await viaFollower.put('cfg/b', 'B');
    await viaFollower.put('cfg/c', 'C');

    const page = await viaFollower.list('cfg/', { limit: 2 });
    expect(page.items.map((i) => i.key)).toEqual(['cfg/a b/ü', 'cfg/b']);
    expect(page.items[0].value).toEqual(Buffer.from([0, 1, 255]));
    expect(page.more).toBe(true);
    const all = [];
    for await (const kv of viaFollower.listAll('cfg/', { pageSize: 1 })) all.push(kv.key);
    expect(all).toEqual(['cfg/a b/ü', 'cfg/b', 'cfg/c']);

    const txn = await viaFollower.txn({
      compare: [{ key: 'cfg/b', target: 'value', op: '=', value: 'B' }, { key: 'cfg/c', target: 'modRevision', op: '>', value: 0 }],
      success: [{ op: 'put', key: 'cfg/d', value: 'D' }, { op: 'delete', key: 'cfg/c' }, { op: 'get', key: 'cfg/b' }, { op: 'get', key: 'cfg/none' }],
      failure: [{ op: 'put', key: 'cfg/failed', value: 'x' }],
    });
    expect(txn.succeeded).toBe(true);
    expect(txn.results[2]).toMatchObject({ key: 'cfg/b', value: Buffer.from('B') });
    expect(txn.results[3]).toBeNull();
    const failed = await viaLeader.txn({ compare: [{ key: 'cfg/c', target: 'version', op: '>', value: 0 }], success: [], failure: [{ op: 'get', key: 'cfg/d' }] });
    expect(failed.succeeded).toBe(false);
    expect(failed.results[0]).toMatchObject({ key: 'cfg/d', value: Buffer.from('D') });
    expect(await viaLeader.delete('cfg/d')).toMatchObject({ deleted: 1 });
    expect(await viaLeader.delete('cfg/d')).toMatchObject({ deleted: 0 });
  });

  test('survives a leader SIGKILL: reads keep working; a write in flight is applied or OutcomeUnknown, never retried', async () => {
    const leader = await cluster.waitForLeader();
    // The leader first, so the client is talking to it when it dies.
    const c = client([cluster.member(leader).clientUrl, ...urls().filter((u) => u !== cluster.member(leader).clientUrl)]);
    const reader = client(urls(), { deadlineMs: 20_000 });
    let stop = false;
    let reads = 0;
    const readErrors: unknown[] = [];
    const readLoop = (async () => {
      while (!stop) {
        try {
          await reader.get('kill/counter');
          reads++;
        } catch (err) {
          readErrors.push(err);
        }
      }
    })();

    // A compare-and-set counter: each step is put(i) If-Match the last modRevision.
    let modRevision = (await c.put('kill/counter', '0')).modRevision;
    let unknown = 0;
    let unavailable = 0;
    let killedAt = 0;
    const N = 60;
    for (let i = 1; i <= N; i++) {
      if (i === 15) {
        killedAt = Date.now();
        void cluster.kill(leader);
      }
      for (;;) {
        try {
          modRevision = (await c.put('kill/counter', String(i), { ifMatch: modRevision })).modRevision;
          break;
        } catch (err) {
          // A silent resend of an applied write would come back as 412 here: it must never happen.
          expect(err).not.toBeInstanceOf(PreconditionFailedError);
          if (err instanceof UnavailableError) {
            unavailable++;
            continue; // definitely not applied: sending again is safe
          }
          expect(err).toBeInstanceOf(OutcomeUnknownError);
          unknown++;
          const now = await c.get('kill/counter');
          expect(now).not.toBeNull();
          modRevision = now!.modRevision;
          if (now!.value.toString() === String(i)) break; // it was applied
          expect(now!.value.toString()).toBe(String(i - 1)); // it was not: try again, still guarded
        }
      }
    }
    stop = true;
    await readLoop;
    const final = await reader.get('kill/counter');
    expect(final?.value.toString()).toBe(String(N));
    expect(readErrors).toEqual([]);
    expect(reads).toBeGreaterThan(10);
    expect(killedAt).toBeGreaterThan(0);
    expect(c.leaderUrl).not.toBe(cluster.member(leader).clientUrl);
    console.log(`leader kill: ${unknown} OutcomeUnknown, ${unavailable} Unavailable, ${reads} reads`);
    cluster.start(leader);
    await cluster.waitForLeader();
  });

  test('a lease holder that is SIGKILLed loses its keys after its TTL, within TTL + one election timeout', async () => {
    const TTL = 3;
    const all = urls();
    const holder = spawnNode([join(REPO, 'test/client/fixtures/lease-holder.mjs'), 'held/', String(TTL)], all);
    const ready = JSON.parse((await holder.waitForLine((l) => l.includes('"ready"'), 20_000)).text) as { lease: number; ttl: number; keepAliveSentAt: number };
    expect(ready.ttl).toBe(TTL);
    const killedAt = Date.now();
    holder.kill('SIGKILL');
    await holder.exited;

    const c = client(all);
    expect((await c.list('held/')).items).toHaveLength(3);
    let goneAt = 0;
    for (;;) {
      const page = await c.list('held/');
      if (page.items.length === 0) {
        goneAt = Date.now();
        break;
      }
      expect(page.items).toHaveLength(3); // all three go at once, in one revision
      if (Date.now() - killedAt > TTL * 1000 + 10_000) throw new Error('the keys outlived their lease');
      await sleep(25);
    }
    console.log(`lease keys gone ${goneAt - killedAt} ms after the kill, ${goneAt - ready.keepAliveSentAt} ms after the last keep-alive`);
    expect(goneAt - ready.keepAliveSentAt).toBeGreaterThanOrEqual(TTL * 1000);
    // TTL + one election timeout, plus what a loaded 2-core machine adds to a proposal and a poll.
    expect(goneAt - killedAt).toBeLessThanOrEqual(TTL * 1000 + ELECTION_MS + 1_000);
  });
});
