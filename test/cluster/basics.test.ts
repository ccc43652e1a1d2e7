import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { http, httpFollow, ProcessCluster } from '../support/process-cluster.js';

/** Three real `flotilla serve` processes: the redirect, reads everywhere, ETags and revisions. */
describe('a 3-member cluster of real processes', () => {
  let cluster: ProcessCluster;
  let leader: string;
  let follower: string;

  beforeAll(async () => {
    cluster = await ProcessCluster.create({ size: 3 });
    await cluster.startAll();
    leader = await cluster.waitForLeader();
    follower = cluster.members.find((m) => m.name !== leader)!.name;
  });

  afterAll(async () => {
    await cluster?.destroy();
  });

  test('a write to a follower answers 307 to the leader, with path and query kept', async () => {
    const r = await http('PUT', `${cluster.member(follower).clientUrl}/v1/kv/a%2Fb?x=1`, { body: 'v1' });
    expect(r.status).toBe(307);
    expect(r.headers['location']).toBe(`${cluster.member(leader).clientUrl}/v1/kv/a%2Fb?x=1`);
    expect(r.json()).toMatchObject({ error: { code: 'NOT_LEADER' } });
  });

  test('a write sent to a follower with redirects followed lands, and every member reads it', async () => {
    const put = await httpFollow('PUT', `${cluster.member(follower).clientUrl}/v1/kv/config/app`, { body: 'hello' });
    expect(put.status).toBe(200);
    const body = put.json<{ key: string; revision: number; modRevision: number; createRevision: number; version: number }>();
    expect(body).toEqual({ key: 'config/app', revision: body.modRevision, modRevision: body.modRevision, createRevision: body.modRevision, version: 1 });
    expect(put.headers['etag']).toBe(`"${body.modRevision}"`);
    for (const m of cluster.members) {
      // Linearizable by default, on followers too (ReadIndex through the leader).
      const get = await http('GET', `${m.clientUrl}/v1/kv/config/app`);
      expect(get.status, m.name).toBe(200);
      expect(get.body.toString()).toBe('hello');
      expect(get.headers['etag']).toBe(`"${body.modRevision}"`);
    }
  });

  test('revisions: strictly increasing, per-key version and createRevision, ETag preconditions', async () => {
    const url = `${cluster.member(leader).clientUrl}/v1/kv/rev-test`;
    const first = (await http('PUT', url, { body: 'a' })).json<{ modRevision: number; createRevision: number; version: number }>();
    const second = (await http('PUT', url, { body: 'b' })).json<{ modRevision: number; createRevision: number; version: number; revision: number }>();
    expect(second.modRevision).toBeGreaterThan(first.modRevision);
    expect(second.createRevision).toBe(first.modRevision);
    expect(second.version).toBe(2);

    const stale = await http('PUT', url, { body: 'c', headers: { 'if-match': `"${first.modRevision}"` } });
    expect(stale.status).toBe(412);
    expect(stale.json()).toMatchObject({ error: { code: 'PRECONDITION_FAILED' } });
    const cas = await http('PUT', url, { body: 'c', headers: { 'if-match': `"${second.modRevision}"` } });
    expect(cas.status).toBe(200);

    expect((await http('PUT', url, { body: 'x', headers: { 'if-none-match': '*' } })).status).toBe(412);
    const del = await http('DELETE', url);
    expect(del.json()).toMatchObject({ deleted: 1 });
    expect((await http('DELETE', url)).json()).toMatchObject({ deleted: 0 });
    const created = await http('PUT', url, { body: 'again', headers: { 'if-none-match': '*' } });
    expect(created.status).toBe(200);
    const c = created.json<{ version: number; createRevision: number; modRevision: number }>();
    expect(c.version).toBe(1);
    expect(c.createRevision).toBe(c.modRevision);
    expect((await http('GET', url)).status).toBe(200);
  });

  test('?consistency=stale answers from the member itself', async () => {
    await http('PUT', `${cluster.member(leader).clientUrl}/v1/kv/stale-ok`, { body: 's' });
    const applied = (await cluster.status(leader))!.appliedIndex;
    await cluster.waitForApplied(applied);
    for (const m of cluster.members) {
      const r = await http('GET', `${m.clientUrl}/v1/kv/stale-ok?consistency=stale`);
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('s');
    }
  });

  test('every bad-input row answers its status and the JSON error shape; the member stays healthy', async () => {
    const url = cluster.member(leader).clientUrl;
    const big = Buffer.alloc(1536 * 1024 + 1, 1);
    const rows: Array<[string, string, Record<string, string>, string | Buffer | undefined, number]> = [
      ['PUT', '/v1/kv/', {}, 'x', 400], // empty key
      ['GET', '/v1/kv/%zz', {}, undefined, 400], // bad percent-encoding
      ['GET', '/v1/kv/%FF', {}, undefined, 400], // not UTF-8
      ['PUT', `/v1/kv/${'k'.repeat(5000)}`, {}, 'x', 413], // key over --max-key-bytes
      ['PUT', '/v1/kv/too-big', {}, big, 413], // value over --max-value-bytes
      ['PUT', '/v1/kv/a', { 'if-match': 'nope' }, 'x', 400],
      ['PUT', '/v1/kv/a', { 'if-match': '"1"', 'if-none-match': '*' }, 'x', 400],
      ['PUT', '/v1/kv/a', { 'if-none-match': '"3"' }, 'x', 400],
      ['PUT', '/v1/kv/never-written', { 'if-match': '"999999"' }, 'x', 412],
      ['GET', '/v1/kv/never-written', {}, undefined, 404],
      ['GET', '/v1/kv/a?consistency=bogus', {}, undefined, 400],
      ['GET', '/no/such/route', {}, undefined, 404],
      ['POST', '/v1/txn', { 'content-type': 'application/json' }, '{not json', 400],
      ['POST', '/v1/leases', { 'content-type': 'application/json' }, '{"ttl":-1}', 400],
    ];
    for (const [method, path, headers, body, status] of rows) {
      const r = await http(method, `${url}${path}`, { headers, ...(body === undefined ? {} : { body }) });
      expect(r.status, `${method} ${path.slice(0, 40)}`).toBe(status);
      expect(r.json(), `${method} ${path.slice(0, 40)}`).toEqual({ error: { code: expect.stringMatching(/^[A-Z_]+$/), message: expect.any(String) } });
    }
    // Values of any type are bytes, never 415.
    const odd = await http('PUT', `${url}/v1/kv/typed`, { headers: { 'content-type': 'image/png' }, body: Buffer.from([0, 255, 1]) });
    expect(odd.status).toBe(200);
    expect((await http('GET', `${url}/v1/kv/typed`)).body).toEqual(Buffer.from([0, 255, 1]));
    for (const m of cluster.members) expect((await http('GET', `${m.clientUrl}/health`)).status, m.name).toBe(200);
  });

  test('status, health and metrics on every member', async () => {
    for (const m of cluster.members) {
      const s = (await http('GET', `${m.clientUrl}/v1/status`)).json<Record<string, unknown>>();
      expect(Object.keys(s).sort()).toEqual(['appliedIndex', 'commitIndex', 'leader', 'leaderClientUrl', 'name', 'role', 'term'].sort());
      expect(s['leader']).toBe(leader);
      expect(s['leaderClientUrl']).toBe(cluster.member(leader).clientUrl);
      expect(s['role']).toBe(m.name === leader ? 'leader' : 'follower');
      expect((await http('GET', `${m.clientUrl}/health`)).status).toBe(200);
      const metrics = (await http('GET', `${m.clientUrl}/metrics`)).body.toString();
      expect(metrics).toMatch(/^# TYPE flotilla_raft_term gauge$/m);
      expect(metrics).toMatch(/^flotilla_raft_role\{role="(leader|follower)"\} 1$/m);
      expect(metrics).toMatch(/^# TYPE flotilla_fsync_seconds histogram$/m);
    }
  });
});
