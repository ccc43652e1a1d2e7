import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connect } from '../../src/client/client.js';
import type { Client } from '../../src/client/client.js';
import { Lock } from '../../src/client/lock.js';
import { ProcessCluster, REPO, sleep } from '../support/process-cluster.js';
import { spawnCli } from './cli-process.js';

const INCREMENT = join(REPO, 'test/client/fixtures/locked-increment.mjs');

/** `flotilla lock NAME -- COMMAND` from three processes around a counter that must never be raced. */
describe('lock', () => {
  let cluster: ProcessCluster;
  let client: Client;
  let endpoints: string[];

  beforeAll(async () => {
    cluster = await ProcessCluster.create({ size: 3, electionMs: 500 });
    await cluster.startAll();
    endpoints = cluster.members.map((m) => m.clientUrl);
    client = connect({ endpoints });
  });

  afterAll(async () => {
    await client?.close();
    await cluster?.destroy();
  });

  test('three contending processes: every increment lands, none overlaps, fencing tokens grow', async () => {
    const ROUNDS = 3;
    const chains = ['a', 'b', 'c'].map(async (who) => {
      const codes: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const p = spawnCli(['lock', 'locks/counter', '--ttl', '5', '--', process.execPath, INCREMENT, 'ctr', `${who}${round}`], endpoints);
        const { code } = await p.exited;
        if (code !== 0) throw new Error(`${who}${round} exited ${code}: ${p.stderr.map((l) => l.text).join(' | ')}`);
        codes.push(code);
      }
      return codes;
    });
    await Promise.all(chains);
    expect((await client.get('ctr/value'))?.value.toString()).toBe(String(3 * ROUNDS));
    expect((await client.list('ctr/overlap/')).items).toEqual([]);
    expect(await client.get('ctr/inside')).toBeNull();
    expect((await client.list('locks/counter/')).items).toEqual([]); // every holder cleaned up
  });

  test('waiters are served in the order they queued (FIFO), and the fencing token grows', async () => {
    const holders = [0, 1, 2, 3].map(() => new Lock(client, 'locks/fifo', { ttlSeconds: 5 }));
    await holders[0].lock();
    const order: number[] = [];
    const waits: Promise<void>[] = [];
    for (let i = 1; i < holders.length; i++) {
      waits.push(holders[i].lock().then(() => void order.push(i)));
      // Let each waiter queue before the next one does.
      for (;;) {
        const queued = (await client.list('locks/fifo/')).items.length;
        if (queued === i + 1) break;
        await sleep(20);
      }
    }
    const tokens = [holders[0].fencingToken];
    for (let i = 0; i < holders.length - 1; i++) {
      await holders[i].unlock();
      await waits[i];
      tokens.push(holders[i + 1].fencingToken);
    }
    await holders.at(-1)!.unlock();
    expect(order).toEqual([1, 2, 3]);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]);
  });

  test('a holder that dies (lease expires) releases the lock; a cancelled waiter leaves the queue', async () => {
    const dying = connect({ endpoints });
    const first = new Lock(dying, 'locks/die', { ttlSeconds: 2 });
    await first.lock();
    const second = new Lock(client, 'locks/die', { ttlSeconds: 5 });
    const cancelled = new AbortController();
    const third = new Lock(client, 'locks/die', { ttlSeconds: 5 });
    const thirdWait = third.lock({ signal: cancelled.signal });
    const secondWait = second.lock();
    await sleep(300);
    cancelled.abort();
    await expect(thirdWait).rejects.toBeDefined();
    // The holder stops keeping its lease alive, as a crashed process would.
    const diedAt = Date.now();
    await dying.close();
    await secondWait;
    const waited = Date.now() - diedAt;
    expect(waited).toBeGreaterThan(1_000);
    expect(waited).toBeLessThan(2_000 + 3_000);
    expect((await client.list('locks/die/')).items.map((i) => i.key)).toEqual([second.key]);
    await second.unlock();
  });
});
