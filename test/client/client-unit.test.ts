import { afterEach, describe, expect, test } from 'vitest';
import { connect } from '../../src/client/client.js';
import type { Client } from '../../src/client/client.js';
import {
  CompactedError,
  InvalidArgumentError,
  LeaseLostError,
  OutcomeUnknownError,
  PreconditionFailedError,
  UnavailableError,
} from '../../src/client/errors.js';
import { SseParser } from '../../src/client/sse.js';
import { wasNotSent } from '../../src/client/transport.js';
import { WatchCursor } from '../../src/client/watch.js';
import { encodeKeyPath } from '../../src/client/wire.js';
import { deadUrl, FakeMember, sendError, sendJson } from './fake-member.js';

const PUT_OK = { key: 'k', revision: 7, modRevision: 7, createRevision: 3, version: 2 };

describe('wire helpers', () => {
  test('keys are encoded per segment; / kept, dot segments escaped', () => {
    expect(encodeKeyPath('a/b c/ü?#%')).toBe('a/b%20c/%C3%BC%3F%23%25');
    expect(encodeKeyPath('a/../b/./c')).toBe('a/%2E%2E/b/%2E/c');
    expect(encodeKeyPath('/x//')).toBe('/x//');
    expect(() => encodeKeyPath('')).toThrow(InvalidArgumentError);
  });

  test('connection refused means not sent; a reset does not', () => {
    expect(wasNotSent(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(wasNotSent(new AggregateError([Object.assign(new Error(), { code: 'ECONNREFUSED' })]))).toBe(true);
    expect(wasNotSent(Object.assign(new Error('x'), { code: 'UND_ERR_SOCKET' }))).toBe(false);
    expect(wasNotSent(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toBe(false);
  });
});

describe('SSE parser', () => {
  test('events split anywhere, CRLF and comments, named events', () => {
    const text = ': hi\r\nid: 5\r\ndata: {"a":1}\r\n\r\nevent: progress\ndata: {"revision":9}\n\ndata: x\ndata: y\n\n';
    for (let cut = 0; cut < text.length; cut++) {
      const p = new SseParser();
      const events = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))];
      expect(events).toEqual([
        { event: 'message', data: '{"a":1}', id: '5' },
        { event: 'progress', data: '{"revision":9}', id: undefined },
        { event: 'message', data: 'x\ny', id: undefined },
      ]);
    }
  });
});

describe('watch cursor', () => {
  const ev = (key: string, modRevision: number) => ({ type: 'put' as const, key, value: Buffer.alloc(0), modRevision });

  test('drops repeats, resumes at a revision it delivered part of', () => {
    const c = new WatchCursor(10);
    expect(c.resumeRevision).toBe(10);
    expect(c.accept(ev('a', 9))).toBe(false);
    expect(c.accept(ev('a', 10))).toBe(true);
    expect(c.resumeRevision).toBe(10); // one event of revision 10 delivered: others may share it
    expect(c.accept(ev('b', 10))).toBe(true);
    expect(c.accept(ev('a', 10))).toBe(false);
    expect(c.accept(ev('a', 12))).toBe(true);
    expect(c.accept(ev('b', 11))).toBe(false);
    c.progress(12);
    expect(c.resumeRevision).toBe(13);
    expect(c.accept(ev('b', 12))).toBe(false);
    c.progress(15);
    expect(c.resumeRevision).toBe(16);
    c.progress(14);
    expect(c.resumeRevision).toBe(16);
  });
});

describe('client against scripted members', () => {
  const members: FakeMember[] = [];
  let client: Client | undefined;
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await Promise.all(members.splice(0).map((m) => m.stop()));
  });
  async function member(): Promise<FakeMember> {
    const m = await FakeMember.start();
    members.push(m);
    return m;
  }

  test('follows a 307 to the leader and caches it for the next write', async () => {
    const follower = await member();
    const leader = await member();
    follower.handler = (req, res) => void res.writeHead(307, { location: `${leader.url}${req.url}` }).end();
    leader.handler = (_req, res) => sendJson(res, 200, PUT_OK);
    client = connect({ endpoints: [follower.url] });
    expect(await client.put('a/b c', 'v1', { ifMatch: 3 })).toEqual(PUT_OK);
    expect(client.leaderUrl).toBe(leader.url);
    await client.put('a/b c', Buffer.from([0, 255]));
    expect(follower.seen).toHaveLength(1);
    expect(leader.seen.map((r) => r.url)).toEqual(['/v1/kv/a/b%20c', '/v1/kv/a/b%20c']);
    expect(leader.seen[0].headers['if-match']).toBe('"3"');
    expect(leader.seen[1].body).toEqual(Buffer.from([0, 255]));
  });

  test('a write refused as not applied (503 NO_LEADER) is retried; a 504 is OutcomeUnknown, never retried', async () => {
    const m = await member();
    let n = 0;
    m.handler = (_req, res) => (++n < 3 ? sendError(res, 503, 'NO_LEADER', { 'retry-after': '1' }) : sendJson(res, 200, PUT_OK));
    client = connect({ endpoints: [m.url], backoffInitialMs: 1 });
    await client.put('k', 'v');
    expect(m.seen).toHaveLength(3);

    m.seen.length = 0;
    m.handler = (_req, res) => sendError(res, 504, 'OUTCOME_UNKNOWN');
    await expect(client.put('k', 'v')).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(m.seen).toHaveLength(1);
  });

  test('a connection that breaks after the write was sent is OutcomeUnknown; a read is retried', async () => {
    const m = await member();
    let n = 0;
    m.handler = (req, res, raw) => {
      if (n++ === 0) return void raw.socket.destroy();
      if (req.method === 'GET') return void res.writeHead(200, { etag: '"4"', 'x-flotilla-create-revision': '2', 'x-flotilla-version': '3' }).end('val');
      sendJson(res, 200, PUT_OK);
    };
    client = connect({ endpoints: [m.url], backoffInitialMs: 1 });
    await expect(client.put('k', 'v')).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(m.seen).toHaveLength(1);
    n = 0;
    m.seen.length = 0;
    expect(await client.get('k')).toEqual({ key: 'k', value: Buffer.from('val'), modRevision: 4, createRevision: 2, version: 3 });
    expect(m.seen).toHaveLength(2);
  });

  test('a refused connection rotates to the next endpoint, even for writes', async () => {
    const m = await member();
    m.handler = (_req, res) => sendJson(res, 200, PUT_OK);
    client = connect({ endpoints: [await deadUrl(), m.url], backoffInitialMs: 1 });
    await client.put('k', 'v');
    expect(m.seen).toHaveLength(1);
  });

  test('errors map to typed classes; get of an absent key is null', async () => {
    const m = await member();
    m.handler = (req, res) => {
      if (req.method === 'GET') return sendError(res, 404, 'KEY_NOT_FOUND');
      if (req.url.startsWith('/v1/kv/bad')) return sendError(res, 400, 'INVALID_ARGUMENT');
      sendError(res, 412, 'PRECONDITION_FAILED');
    };
    client = connect({ endpoints: [m.url] });
    expect(await client.get('nope')).toBeNull();
    const err = await client.put('k', 'v', { ifNoneMatch: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PreconditionFailedError);
    expect(err).toMatchObject({ code: 'PRECONDITION_FAILED', status: 412, serverCode: 'PRECONDITION_FAILED' });
    await expect(client.put('bad', 'v')).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  test('the overall deadline bounds retries: UnavailableError', async () => {
    const m = await member();
    m.handler = (_req, res) => sendError(res, 503, 'NO_LEADER');
    client = connect({ endpoints: [m.url], deadlineMs: 300, backoffInitialMs: 5, backoffMaxMs: 50 });
    const started = Date.now();
    await expect(client.get('k')).rejects.toBeInstanceOf(UnavailableError);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(m.seen.length).toBeGreaterThan(2);
  });

  test('list pages and txn bodies', async () => {
    const m = await member();
    m.handler = (req, res) => {
      if (req.url.startsWith('/v1/kv?')) {
        const after = new URL(req.url, m.url).searchParams.get('after');
        const items = after === null
          ? [{ key: 'p/a', value: 'A', modRevision: 1, createRevision: 1, version: 1 }]
          : [{ key: 'p/b', valueBase64: Buffer.from([255]).toString('base64'), modRevision: 2, createRevision: 2, version: 1 }];
        return sendJson(res, 200, { revision: 9, items, more: after === null });
      }
      sendJson(res, 200, { succeeded: true, revision: 10, results: [{ key: 'x', value: 'X', modRevision: 3, createRevision: 3, version: 1 }, { op: 'put' }] });
    };
    client = connect({ endpoints: [m.url] });
    const all = [];
    for await (const kv of client.listAll('p/', { pageSize: 1 })) all.push(kv);
    expect(all.map((kv) => [kv.key, kv.value])).toEqual([['p/a', Buffer.from('A')], ['p/b', Buffer.from([255])]]);
    expect(m.seen.map((r) => r.url)).toEqual(['/v1/kv?prefix=p%2F&limit=1', '/v1/kv?prefix=p%2F&limit=1&after=p%2Fa']);

    const r = await client.txn({
      compare: [{ key: 'x', target: 'version', op: '>', value: 0 }],
      success: [{ op: 'get', key: 'x' }, { op: 'put', key: 'y', value: Buffer.from([1, 255]), lease: 5 }],
    });
    expect(r.results[0]).toMatchObject({ key: 'x', value: Buffer.from('X') });
    expect(JSON.parse(m.seen.at(-1)!.body.toString())).toEqual({
      compare: [{ key: 'x', target: 'version', op: '>', value: 0 }],
      success: [{ op: 'get', key: 'x' }, { op: 'put', key: 'y', valueBase64: Buffer.from([1, 255]).toString('base64'), lease: 5 }],
      failure: [],
    });
  });

  test('watch resumes after a cut from where it was, on another member, without repeats', async () => {
    const a = await member();
    const b = await member();
    const event = (key: string, rev: number) => `id: ${rev}\ndata: ${JSON.stringify({ type: 'put', key, value: `v${rev}`, modRevision: rev })}\n\n`;
    a.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // A txn wrote p/x and p/y at revision 6; the member dies after sending only p/x.
      res.write(event('p/a', 5) + event('p/x', 6));
      setTimeout(() => res.socket?.destroy(), 20);
    };
    b.handler = (req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (new URL(req.url, b.url).searchParams.get('fromRevision') === '6') {
        res.write(event('p/x', 6) + event('p/y', 6) + 'event: progress\ndata: {"revision":6}\n\n' + event('p/z', 7));
        res.end('event: error\ndata: {"error":{"code":"WATCH_TOO_SLOW","message":"slow"},"resumeRevision":8}\n\n');
      } else {
        res.write(event('p/w', 8));
      }
    };
    client = connect({ endpoints: [a.url, b.url], backoffInitialMs: 1 });
    const seen: string[] = [];
    for await (const e of client.watch('p/', { prefix: true, fromRevision: 5 })) {
      seen.push(`${e.key}@${e.modRevision}`);
      if (seen.length === 5) break;
    }
    expect(seen).toEqual(['p/a@5', 'p/x@6', 'p/y@6', 'p/z@7', 'p/w@8']);
    // p/z@7 may share revision 7 with other keys: resume at 7, not after it.
    expect(b.seen.map((r) => new URL(r.url, b.url).searchParams.get('fromRevision'))).toEqual(['6', '7']);
    expect(a.seen[0].url).toBe('/v1/watch/p/?prefix=true&fromRevision=5');
  });

  test('watch from a compacted revision throws CompactedError', async () => {
    const m = await member();
    m.handler = (_req, res) => sendError(res, 410, 'COMPACTED');
    client = connect({ endpoints: [m.url] });
    const it = client.watch('k', { fromRevision: 1 })[Symbol.asyncIterator]();
    await expect(it.next()).rejects.toBeInstanceOf(CompactedError);
  });

  test('a lease keeps itself alive every ttl/3 and is lost on a 404', async () => {
    const m = await member();
    let keepalives = 0;
    m.handler = (req, res) => {
      if (req.url === '/v1/leases') return sendJson(res, 200, { id: 2 ** 53 - 1, ttl: 1 });
      if (req.url.endsWith('/keepalive')) return ++keepalives < 3 ? sendJson(res, 200, { id: 2 ** 53 - 1, ttl: 1 }) : sendError(res, 404, 'LEASE_NOT_FOUND');
      sendJson(res, 200, {});
    };
    client = connect({ endpoints: [m.url] });
    const lost: Error[] = [];
    const lease = await client.lease(1, { onLost: (e) => lost.push(e) });
    expect(lease.id).toBe(2 ** 53 - 1);
    await new Promise<void>((resolve) => lease.signal.addEventListener('abort', () => resolve()));
    expect(keepalives).toBe(3);
    expect(lost[0]).toBeInstanceOf(LeaseLostError);
    expect(m.seen[1].url).toBe(`/v1/leases/${2 ** 53 - 1}/keepalive`);
  });

  test('a lease whose keep-alives fail for a whole TTL is lost', async () => {
    const m = await member();
    m.handler = (req, res) => (req.url === '/v1/leases' ? sendJson(res, 200, { id: 9, ttl: 1 }) : sendError(res, 503, 'NO_LEADER'));
    client = connect({ endpoints: [m.url], backoffInitialMs: 5, backoffMaxMs: 50 });
    const started = Date.now();
    const lease = await client.lease(1);
    await new Promise<void>((resolve) => lease.signal.addEventListener('abort', () => resolve()));
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(2_500);
    expect(lease.signal.reason).toBeInstanceOf(LeaseLostError);
  });
});
