import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connect } from '../../src/client/client.js';
import type { Client } from '../../src/client/client.js';
import { Election } from '../../src/client/election.js';
import type { LeaderInfo } from '../../src/client/election.js';
import { NotElectionLeaderError } from '../../src/client/errors.js';
import { ProcessCluster, sleep } from '../support/process-cluster.js';
import { spawnCli } from './cli-process.js';
import type { Proc } from './cli-process.js';

const TTL = 2;

interface Elected {
  event: 'elected';
  key: string;
  createRevision: number;
  value: string;
}

const elected = (p: Proc): Elected[] => p.stdout.filter((l) => l.text.includes('"elected"')).map((l) => JSON.parse(l.text) as Elected);

/** `flotilla elect NAME VALUE` from three processes: one leader at a time, FIFO succession. */
describe('election', () => {
  let cluster: ProcessCluster;
  let client: Client;
  let endpoints: string[];
  const procs: Proc[] = [];

  beforeAll(async () => {
    cluster = await ProcessCluster.create({ size: 3, electionMs: 500 });
    await cluster.startAll();
    endpoints = cluster.members.map((m) => m.clientUrl);
    client = connect({ endpoints });
  });

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await client?.close();
    await cluster?.destroy();
  });

  test('three campaigners: exactly one leads; SIGKILL it and the next in line leads within TTL + margin; SIGTERM resigns', async () => {
    const observer = new Election(client, 'elections/svc');
    const observed: LeaderInfo[] = [];
    const stopObserving = new AbortController();
    const observing = (async () => {
      for await (const l of observer.observe({ signal: stopObserving.signal })) observed.push(l);
    })();

    for (const v of ['a', 'b', 'c']) procs.push(spawnCli(['elect', 'elections/svc', v, '--ttl', String(TTL)], endpoints));
    const first = await Promise.any(procs.map((p) => p.waitForLine((l) => l.includes('"elected"'), 30_000)));
    const firstLeader = procs.find((p) => p.stdout.includes(first))!;
    // Wait until all three have queued, then make sure nobody else claims to lead.
    for (;;) {
      if ((await client.list('elections/svc/')).items.length === 3) break;
      await sleep(50);
    }
    await sleep(1_000);
    expect(procs.map((p) => elected(p).length).sort()).toEqual([0, 0, 1]);
    const leaderNow = await observer.leader();
    expect(leaderNow?.key).toBe(elected(firstLeader)[0].key);

    // The queue decides who is next: the oldest remaining campaigner.
    const queue = (await client.list('elections/svc/')).items.slice().sort((x, y) => x.createRevision - y.createRevision);
    const nextKey = queue[1].key;
    const killedAt = Date.now();
    firstLeader.kill('SIGKILL');
    const second = await Promise.any(procs.filter((p) => p !== firstLeader).map((p) => p.waitForLine((l) => l.includes('"elected"'), TTL * 1000 + 10_000)));
    const took = second.at - killedAt;
    console.log(`new leader ${took} ms after the SIGKILL (TTL ${TTL} s)`);
    expect(took).toBeLessThanOrEqual(TTL * 1000 + 2_000);
    const secondLeader = procs.find((p) => p.stdout.includes(second))!;
    expect(elected(secondLeader)[0].key).toBe(nextKey);
    expect(procs.filter((p) => p.running && elected(p).length > 0)).toEqual([secondLeader]);

    // SIGTERM: the leader resigns at once and exits 0; the last campaigner takes over.
    const third = procs.find((p) => p !== firstLeader && p !== secondLeader)!;
    const resignedAt = Date.now();
    secondLeader.kill('SIGTERM');
    expect((await secondLeader.exited).code).toBe(0);
    const line = await third.waitForLine((l) => l.includes('"elected"'), 10_000);
    expect(line.at - resignedAt).toBeLessThan(TTL * 1000); // no lease had to expire
    third.kill('SIGTERM');
    expect((await third.exited).code).toBe(0);
    for (;;) {
      if ((await client.list('elections/svc/')).items.length === 0) break;
      await sleep(50);
    }

    await sleep(300);
    stopObserving.abort();
    await observing;
    // The observer saw the three leaders in succession, each once.
    expect(observed.map((l) => l.value.toString())).toEqual([first, second, line].map((l) => (JSON.parse(l.text) as Elected).value));
  });

  test('proclaim changes the value while leading; after resigning it fails', async () => {
    const e = new Election(client, 'elections/proclaim', { ttlSeconds: 5 });
    await e.campaign('v1');
    expect(e.isLeader).toBe(true);
    await e.proclaim('v2');
    expect((await e.leader())?.value.toString()).toBe('v2');
    const waiting = new Election(client, 'elections/proclaim', { ttlSeconds: 5 });
    const waitingCampaign = waiting.campaign('w1');
    await sleep(200);
    expect(waiting.isLeader).toBe(false);
    await e.resign();
    await expect(e.proclaim('v3')).rejects.toBeInstanceOf(NotElectionLeaderError);
    await waitingCampaign;
    expect((await waiting.leader())?.value.toString()).toBe('w1');
    await waiting.resign();
    expect(await waiting.leader()).toBeNull();
  });
});
