import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connect } from '../../src/client/client.js';
import type { Client } from '../../src/client/client.js';
import { Election } from '../../src/client/election.js';
import { Lock } from '../../src/client/lock.js';
import { ProcessCluster, REPO, sleep } from '../support/process-cluster.js';
import { followConfiguration } from './recipes/configuration-watch.js';
import type { Configuration } from './recipes/configuration-watch.js';
import { followLeader, putAsLeader, runAsLeader } from './recipes/leader-election.js';
import { addUnderLock, FencedStore } from './recipes/locks.js';

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The programs docs/recipes/*.md show, run against a real cluster. */
describe('recipes', () => {
  let cluster: ProcessCluster;
  let endpoints: string[];
  const clients: Client[] = [];
  const client = () => {
    const c = connect({ endpoints });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    cluster = await ProcessCluster.create({ size: 3, electionMs: 500 });
    await cluster.startAll();
    endpoints = cluster.members.map((m) => m.clientUrl);
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await cluster?.destroy();
  });

  test('each doc shows its recipe file verbatim', () => {
    for (const name of ['configuration-watch', 'leader-election', 'locks']) {
      const doc = readFileSync(join(REPO, `docs/recipes/${name}.md`), 'utf8');
      const code = readFileSync(join(REPO, `test/client/recipes/${name}.ts`), 'utf8');
      expect(doc.includes('```ts\n' + code + '```'), `docs/recipes/${name}.md embeds test/client/recipes/${name}.ts`).toBe(true);
    }
  });

  test('configuration watch: a live copy that follows puts and deletes, across a leader SIGKILL', async () => {
    const writer = client();
    await writer.put('app/config/a', '1');
    await writer.put('app/config/b', '2');
    let latest: Configuration = new Map();
    const controller = new AbortController();
    const following = followConfiguration(client(), 'app/config/', { onChange: (c) => (latest = new Map(c)), signal: controller.signal });
    await until(() => latest.size === 2, 10_000, 'the initial load');
    await writer.put('app/config/a', '10');
    await writer.delete('app/config/b');
    await cluster.kill((await cluster.waitForLeader()));
    await writer.put('app/config/c', '3');
    const expected = new Map([['app/config/a', '10'], ['app/config/c', '3']]);
    await until(() => JSON.stringify([...latest]) === JSON.stringify([...expected]), 15_000, 'the changes');
    controller.abort();
    await following;
    for (const m of cluster.members) if (!cluster.isRunning(m.name)) cluster.start(m.name);
    await cluster.waitForLeader();
  });

  test('leader election: one instance works at a time; a deposed leader cannot write', async () => {
    const leaders: string[] = [];
    const watching = new AbortController();
    const following = followLeader(client(), 'recipes/job', { onLeader: (id) => leaders.push(id), signal: watching.signal });
    const shutdown = new AbortController();
    let working = 0;
    let maxWorking = 0;
    const instance = (id: string) => {
      const c = client();
      return runAsLeader(c, 'recipes/job', {
        id,
        signal: shutdown.signal,
        work: async (election, signal) => {
          working++;
          maxWorking = Math.max(maxWorking, working);
          expect(await putAsLeader(c, election, { key: 'recipes/job-status', value: `run by ${id}` })).toBe(true);
          await sleep(300);
          expect(signal.aborted).toBe(false);
          working--;
        },
      });
    };
    await Promise.all([instance('one'), instance('two'), instance('three')]);
    await until(() => leaders.length === 3, 5_000, 'three leaders observed');
    watching.abort();
    await following;
    expect(maxWorking).toBe(1);
    expect([...leaders].sort()).toEqual(['one', 'three', 'two']);

    // A leader that froze past its lease: its fenced write is refused.
    const c = client();
    const frozen = new Election(c, 'recipes/job', { ttlSeconds: 1 });
    await frozen.campaign('frozen');
    frozen.lease.stop();
    await until(async () => (await frozen.leader()) === null, 5_000, 'the frozen leader to lose its lease');
    expect(await putAsLeader(c, frozen, { key: 'recipes/job-status', value: 'late' })).toBe(false);
    expect((await c.get('recipes/job-status'))?.value.toString()).toMatch(/^run by /);
  });

  test('locks: concurrent increments under a lock all land; a stale holder is fenced off', async () => {
    const results = await Promise.all([1, 2, 3, 4, 5].map((amount) => addUnderLock(client(), 'recipes/counter', { lockName: 'recipes/counter-lock', amount })));
    expect(Math.max(...results)).toBe(15);
    expect((await clients[0].get('recipes/counter'))?.value.toString()).toBe('15');

    // A holder that stalls past its lease loses the lock; the resource refuses its stale token.
    const store = new FencedStore();
    const stalled = new Lock(client(), 'recipes/fenced', { ttlSeconds: 1 });
    await stalled.lock();
    const staleToken = stalled.fencingToken;
    stalled.lease.stop(); // as if the process froze: no more keep-alives
    const next = new Lock(client(), 'recipes/fenced', { ttlSeconds: 5 });
    await next.lock();
    store.write(next.fencingToken, 'from the new holder');
    expect(() => store.write(staleToken, 'from the stalled holder')).toThrow(/refused/);
    expect(store.writes).toEqual(['from the new holder']);
    await next.unlock();
  });
});
