import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { CLI, freePort, http, httpFollow, ProcessCluster, REPO, sleep, waitFor } from '../support/process-cluster.js';

let cluster: ProcessCluster | undefined;
const extra: ChildProcess[] = [];

afterAll(async () => {
  for (const p of extra) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await cluster?.destroy();
});

interface MembersView {
  members: Array<{ name: string; peerUrl: string | null; clientUrl: string | null; voter: boolean }>;
}

/**
 * A fourth member joins with --join, catches up as a learner and is promoted to voter; an
 * original member is removed; leadership is handed over on request; writes go on throughout.
 */
test('join, promote, remove and transfer leadership while writes continue', { timeout: 120_000 }, async () => {
  cluster = await ProcessCluster.create({ size: 3 });
  const c = cluster;
  await c.startAll();
  const leader = await c.waitForLeader();
  const leaderUrl = c.member(leader).clientUrl;
  for (let i = 0; i < 200; i++) expect((await http('PUT', `${leaderUrl}/v1/kv/before/${i}`, { body: `v${i}` })).status).toBe(200);

  let writes = 0;
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop && i < 100_000; i++) {
      const target = c.members.filter((m) => c.isRunning(m.name))[i % 2];
      const r = await httpFollow('PUT', `${target.clientUrl}/v1/kv/during/${i % 50}`, { body: `w${i}`, timeoutMs: 5000 }).catch(() => null);
      if (r?.status === 200) writes++;
      else await sleep(50);
    }
  })();

  // n4 joins through a follower's client URL (the request is redirected to the leader).
  const follower = c.members.find((m) => m.name !== leader)!;
  const n4 = { client: `http://127.0.0.1:${await freePort()}`, peer: `http://127.0.0.1:${await freePort()}` };
  const n4Dir = join(c.members[0].dataDir, '..', 'n4');
  const p4 = spawn(process.execPath, [
    CLI, 'serve', '--name', 'n4', '--data-dir', n4Dir, '--listen-client-url', n4.client, '--listen-peer-url', n4.peer,
    '--join', follower.clientUrl, '--heartbeat-interval', '50', '--election-timeout', '500',
  ], { cwd: REPO, stdio: 'ignore' });
  extra.push(p4);

  const promoted = await waitFor('n4 to become a voter', async () => {
    const m = (await http('GET', `${leaderUrl}/v1/cluster/members`)).json<MembersView>();
    return m.members.find((x) => x.name === 'n4' && x.voter) ? m : null;
  });
  expect(promoted.members.map((m) => m.name).sort()).toEqual(['n1', 'n2', 'n3', 'n4']);
  // n4 holds the data written before it existed.
  const seen = await waitFor('n4 to serve the old keys', async () => {
    const r = await http('GET', `${n4.client}/v1/kv/before/199`);
    return r.status === 200 ? r.body.toString() : null;
  });
  expect(seen).toBe('v199');

  // Remove an original follower; the cluster keeps four → three voters.
  const victim = c.members.find((m) => m.name !== leader && m.name !== follower.name)!.name;
  const removed = await httpFollow('DELETE', `${leaderUrl}/v1/cluster/members/${victim}`);
  expect(removed.status).toBe(200);
  const after = (await http('GET', `${leaderUrl}/v1/cluster/members`)).json<MembersView>();
  expect(after.members.map((m) => m.name).sort()).toEqual(['n1', 'n2', 'n3', 'n4'].filter((n) => n !== victim).sort());
  await c.kill(victim);

  // Hand leadership to n4.
  const moved = await httpFollow('POST', `${leaderUrl}/v1/cluster/leader`, { body: JSON.stringify({ name: 'n4' }) });
  expect(moved.status).toBe(200);
  const status = (await http('GET', `${n4.client}/v1/status`)).json<{ role: string }>();
  expect(status.role).toBe('leader');

  const before = writes;
  await sleep(1000);
  stop = true;
  await writer;
  expect(writes).toBeGreaterThan(before);
  expect((await http('PUT', `${n4.client}/v1/kv/final`, { body: 'done' })).status).toBe(200);

  // The leader removes itself: the change commits (with the followers' acknowledgements), the
  // answer is 200 well inside the request timeout, and the leader steps down for the others.
  const t0 = Date.now();
  const selfRemoved = await http('DELETE', `${n4.client}/v1/cluster/members/n4`);
  expect(selfRemoved.status, selfRemoved.body.toString('utf8')).toBe(200);
  expect(Date.now() - t0).toBeLessThan(3000);
  const rest = ['n1', 'n2', 'n3'].filter((n) => n !== victim);
  const next = await c.waitForLeader(15_000);
  expect(rest).toContain(next);
  const remaining = (await http('GET', `${c.member(next).clientUrl}/v1/cluster/members`)).json<{ members: Array<{ name: string }> }>();
  expect(remaining.members.map((m) => m.name).sort()).toEqual(rest.sort());
  expect((await http('PUT', `${c.member(next).clientUrl}/v1/kv/after-self-removal`, { body: 'ok' })).status).toBe(200);
  expect((await http('GET', `${n4.client}/v1/status`)).json<{ role: string }>().role).not.toBe('leader');
});
