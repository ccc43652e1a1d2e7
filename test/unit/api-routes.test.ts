import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { buildApi } from '../../src/api/build-api.js';
import type { KvService, MemberStatusView, PutOptions, TxnOutcome, WriteOptions } from '../../src/api/kv-service.js';
import { PreconditionFailedError } from '../../src/kv/errors.js';
import type { KvRecord } from '../../src/kv/kv-record.js';
import type { DeleteResult, PutResult } from '../../src/kv/kv-state.js';
import type { ListOptions, ListPage } from '../../src/storage/level-storage.js';
import { NoLeaderError, NotLeaderError, OutcomeUnknownError, OverloadedError } from '../../src/member/errors.js';

const MAX_KEY_BYTES = 64;
const MAX_VALUE_BYTES = 1024;
const LEADER_URL = 'http://127.0.0.1:22379';

interface Stored {
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
}

/** An in-memory KvService: revisions, If-Match / If-None-Match, and switchable failures. */
class FakeKv implements KvService {
  readonly name = 'n1';
  revision = 0;
  store = new Map<string, Stored>();
  /** When set, every data operation throws it. */
  failure: Error | null = null;
  calls: Array<{ op: 'put' | 'delete' | 'get' | 'list'; key: string; consistency?: string; options?: PutOptions }> = [];
  healthy = true;
  statusView: MemberStatusView = {
    name: 'n1', role: 'follower', term: 7, leader: 'n2', leaderClientUrl: LEADER_URL, commitIndex: 41, appliedIndex: 40,
  };
  metricsBody = { contentType: 'text/plain; version=0.0.4; charset=utf-8', body: '# HELP flotilla_up 1\nflotilla_up 1\n' };
  observed: Array<{ method: string; route: string; status: number }> = [];

  reset(): void {
    this.revision = 0;
    this.store.clear();
    this.failure = null;
    this.calls = [];
    this.healthy = true;
    this.observed = [];
  }

  #check(key: string, options: WriteOptions): void {
    const current = this.store.get(key);
    if (options.ifMatch !== undefined && current?.modRevision !== options.ifMatch) {
      throw new PreconditionFailedError(key, current?.modRevision ?? 0, `modRevision is ${current?.modRevision ?? 0}, If-Match wanted ${options.ifMatch}`);
    }
    if (options.ifNoneMatch && current !== undefined) {
      throw new PreconditionFailedError(key, current.modRevision, `${JSON.stringify(key)} exists, If-None-Match: * wanted it absent`);
    }
  }

  async put(key: string, value: Uint8Array, options: PutOptions): Promise<PutResult> {
    this.calls.push({ op: 'put', key, options });
    if (this.failure) throw this.failure;
    this.#check(key, options);
    const previous = this.store.get(key);
    const revision = ++this.revision;
    const stored: Stored = {
      value: Uint8Array.from(value), // a copy: the request body is not ours to keep
      createRevision: previous?.createRevision ?? revision,
      modRevision: revision,
      version: (previous?.version ?? 0) + 1,
    };
    this.store.set(key, stored);
    return { kind: 'put', index: revision + 10, requestId: `r${revision}`, key, revision, modRevision: revision, createRevision: stored.createRevision, version: stored.version, events: [] };
  }

  async delete(key: string, options: WriteOptions): Promise<DeleteResult> {
    this.calls.push({ op: 'delete', key, options });
    if (this.failure) throw this.failure;
    this.#check(key, options);
    if (!this.store.has(key)) return { kind: 'delete', index: 0, requestId: 'd', key, deleted: 0, revision: this.revision, events: [] };
    this.store.delete(key);
    return { kind: 'delete', index: 0, requestId: 'd', key, deleted: 1, revision: ++this.revision, events: [] };
  }

  async get(key: string, consistency: 'linearizable' | 'stale'): Promise<KvRecord | null> {
    this.calls.push({ op: 'get', key, consistency });
    if (this.failure) throw this.failure;
    const s = this.store.get(key);
    return s === undefined ? null : { key, value: s.value, createRevision: s.createRevision, modRevision: s.modRevision, version: s.version, lease: 0 };
  }

  /** Listing is not under test here; a faithful minimum so the fake is a whole KvService. */
  async list(options: ListOptions, consistency: 'linearizable' | 'stale'): Promise<ListPage> {
    this.calls.push({ op: 'list', key: options.prefix, consistency });
    if (this.failure) throw this.failure;
    const prefix = Buffer.from(options.prefix);
    const after = options.after === undefined ? undefined : Buffer.from(options.after);
    const keys = [...this.store.keys()]
      .map((k) => Buffer.from(k))
      .filter((k) => k.subarray(0, prefix.length).equals(prefix) && (after === undefined || Buffer.compare(k, after) > 0))
      .sort(Buffer.compare)
      .map((k) => k.toString());
    const page = keys.slice(0, options.limit);
    const items = page.map((key) => {
      const s = this.store.get(key)!;
      return { key, value: s.value, createRevision: s.createRevision, modRevision: s.modRevision, version: s.version, lease: 0 };
    });
    return { revision: this.revision, items, more: keys.length > page.length };
  }

  // The coordination and cluster endpoints are exercised against real members (test/client,
  // test/cluster); here they only need to exist so the fake is a whole KvService.
  async txn(): Promise<TxnOutcome> {
    throw new Error('not used by these tests');
  }
  async grantLease(): Promise<{ id: number; ttl: number }> {
    throw new Error('not used by these tests');
  }
  async keepAliveLease(): Promise<{ id: number; ttl: number }> {
    throw new Error('not used by these tests');
  }
  async revokeLease(): Promise<{ deletedKeys: number; revision: number }> {
    throw new Error('not used by these tests');
  }
  async openWatch(): Promise<() => void> {
    throw new Error('not used by these tests');
  }
  members(): ReturnType<KvService['members']> {
    return { members: [] };
  }
  async addMember(): Promise<ReturnType<KvService['members']>> {
    throw new Error('not used by these tests');
  }
  async removeMember(): Promise<void> {
    throw new Error('not used by these tests');
  }
  async transferLeader(): Promise<void> {
    throw new Error('not used by these tests');
  }
  async backup(): Promise<{ file: string; meta: { index: number; term: number }; revision: number; release: () => Promise<void> }> {
    throw new Error('not used by these tests');
  }

  status(): MemberStatusView {
    return this.statusView;
  }

  health(): { healthy: boolean; reason: string } {
    return this.healthy ? { healthy: true, reason: '' } : { healthy: false, reason: 'no leader known' };
  }

  leaderClientUrl(): string | null {
    return LEADER_URL;
  }

  isLeader(): boolean {
    return false;
  }

  async metrics(): Promise<{ contentType: string; body: string }> {
    return this.metricsBody;
  }

  observeHttp(method: string, route: string, status: number): void {
    this.observed.push({ method, route, status });
  }
}

const ERROR_CODE = /^[A-Z]+(_[A-Z0-9]+)*$/;

/** The contract's error shape, exactly: {"error":{"code":"SNAKE_CASE","message":"..."}} and nothing more. */
function expectErrorShape(body: string, contentType: string | undefined, code?: string): { code: string; message: string } {
  expect(contentType ?? '').toMatch(/^application\/json/);
  const parsed = JSON.parse(body) as Record<string, unknown>;
  expect(Object.keys(parsed)).toEqual(['error']);
  const error = parsed['error'] as Record<string, unknown>;
  expect(Object.keys(error).sort()).toEqual(['code', 'message']);
  expect(error['code']).toMatch(ERROR_CODE);
  expect(typeof error['message']).toBe('string');
  expect((error['message'] as string).length).toBeGreaterThan(0);
  if (code !== undefined) expect(error['code']).toBe(code);
  return error as { code: string; message: string };
}

function expectError(res: LightMyRequestResponse, status: number, code?: string): { code: string; message: string } {
  expect(res.statusCode, res.body).toBe(status);
  return expectErrorShape(res.body, res.headers['content-type'] as string | undefined, code);
}

const fake = new FakeKv();
let app: FastifyInstance;

beforeAll(async () => {
  app = buildApi(fake, {
    logger: pino({ level: 'silent' }),
    maxKeyBytes: MAX_KEY_BYTES,
    maxValueBytes: MAX_VALUE_BYTES,
    forwardToLeader: false,
    requestTimeoutMs: 1000,
  });
  await app.ready();
});

afterAll(async () => {
  await app.close();
});

beforeEach(() => fake.reset());

function put(url: string, payload: string | Buffer, headers: Record<string, string> = {}) {
  return app.inject({ method: 'PUT', url, payload, headers });
}

describe('PUT, GET, DELETE', () => {
  test('PUT answers 200 with exactly {key,revision,modRevision,createRevision,version} and ETag "MODREV"', async () => {
    const res = await put('/v1/kv/greeting', 'hello', { 'content-type': 'application/octet-stream' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json()).toEqual({ key: 'greeting', revision: 1, modRevision: 1, createRevision: 1, version: 1 });
    expect(Object.keys(res.json()).sort()).toEqual(['createRevision', 'key', 'modRevision', 'revision', 'version']);
    expect(res.headers['etag']).toBe('"1"');
  });

  test('a second PUT bumps modRevision and version, keeps createRevision', async () => {
    await put('/v1/kv/other', 'x');
    await put('/v1/kv/k', 'one');
    const res = await put('/v1/kv/k', 'two');
    expect(res.json()).toEqual({ key: 'k', revision: 3, modRevision: 3, createRevision: 2, version: 2 });
    expect(res.headers['etag']).toBe('"3"');
  });

  test('GET answers the raw value bytes with ETag "MODREV"', async () => {
    await put('/v1/kv/k', 'v1');
    await put('/v1/kv/k', 'value two');
    const res = await app.inject({ method: 'GET', url: '/v1/kv/k' });
    expect(res.statusCode).toBe(200);
    expect(res.rawPayload.toString('utf8')).toBe('value two');
    expect(res.headers['etag']).toBe('"2"');
  });

  test('GET of an absent key is 404 in the error shape', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/kv/missing' });
    expectError(res, 404, 'KEY_NOT_FOUND');
  });

  test('GET of an empty value is 200 with an empty body', async () => {
    await put('/v1/kv/empty', Buffer.alloc(0));
    const res = await app.inject({ method: 'GET', url: '/v1/kv/empty' });
    expect(res.statusCode).toBe(200);
    expect(res.rawPayload.byteLength).toBe(0);
    expect(res.headers['etag']).toBe('"1"');
  });

  test('DELETE answers {deleted: 1, revision} and the key is gone', async () => {
    await put('/v1/kv/k', 'v');
    const res = await app.inject({ method: 'DELETE', url: '/v1/kv/k' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ deleted: 1, revision: 2 });
    expectError(await app.inject({ method: 'GET', url: '/v1/kv/k' }), 404, 'KEY_NOT_FOUND');
  });

  test('DELETE of an absent key answers {deleted: 0, revision}', async () => {
    await put('/v1/kv/k', 'v');
    const res = await app.inject({ method: 'DELETE', url: '/v1/kv/nope' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ deleted: 0, revision: 1 });
  });
});

describe('conditional writes', () => {
  test('If-Match "N" applies when modRevision is N', async () => {
    await put('/v1/kv/k', 'a');
    const res = await put('/v1/kv/k', 'b', { 'if-match': '"1"' });
    expect(res.statusCode).toBe(200);
    expect(fake.calls.at(-1)?.options).toEqual({ ifMatch: 1 });
    expect(res.json()).toMatchObject({ modRevision: 2, version: 2 });
  });

  test('If-Match "N" with the wrong N is 412 and nothing changes', async () => {
    await put('/v1/kv/k', 'a');
    await put('/v1/kv/k', 'b');
    expectError(await put('/v1/kv/k', 'c', { 'if-match': '"1"' }), 412, 'PRECONDITION_FAILED');
    expect((await app.inject({ method: 'GET', url: '/v1/kv/k' })).body).toBe('b');
  });

  test('If-Match on an absent key is 412', async () => {
    expectError(await put('/v1/kv/absent', 'c', { 'if-match': '"1"' }), 412, 'PRECONDITION_FAILED');
    expect(fake.store.has('absent')).toBe(false);
  });

  test('If-Match on DELETE: ok when it matches, 412 when not', async () => {
    await put('/v1/kv/k', 'a');
    expectError(await app.inject({ method: 'DELETE', url: '/v1/kv/k', headers: { 'if-match': '"9"' } }), 412, 'PRECONDITION_FAILED');
    const ok = await app.inject({ method: 'DELETE', url: '/v1/kv/k', headers: { 'if-match': '"1"' } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ deleted: 1, revision: 2 });
  });

  test('If-None-Match * applies when the key is absent', async () => {
    const res = await put('/v1/kv/new', 'v', { 'if-none-match': '*' });
    expect(res.statusCode).toBe(200);
    expect(fake.calls.at(-1)?.options).toEqual({ ifNoneMatch: true });
  });

  test('If-None-Match * on an existing key is 412 and nothing changes', async () => {
    await put('/v1/kv/k', 'a');
    expectError(await put('/v1/kv/k', 'b', { 'if-none-match': '*' }), 412, 'PRECONDITION_FAILED');
    expect(Buffer.from(fake.store.get('k')!.value).toString()).toBe('a');
  });

  test('both If-Match and If-None-Match is 400, and the service is not called', async () => {
    expectError(await put('/v1/kv/k', 'b', { 'if-match': '"1"', 'if-none-match': '*' }), 400, 'INVALID_ARGUMENT');
    expectError(
      await app.inject({ method: 'DELETE', url: '/v1/kv/k', headers: { 'if-match': '"1"', 'if-none-match': '*' } }),
      400,
      'INVALID_ARGUMENT',
    );
    expect(fake.calls).toEqual([]);
  });

  test.each(['abc', '"abc"', '"0"', '"-1"', '"1.5"', 'W/"1"', '""', '"1" "2"', '"99999999999999999999"', '"1e3"'])(
    'malformed If-Match %s is 400',
    async (value) => {
      expectError(await put('/v1/kv/k', 'b', { 'if-match': value }), 400, 'INVALID_ARGUMENT');
      expect(fake.calls).toEqual([]);
    },
  );

  test.each(['"1"', 'abc', '**'])('If-None-Match other than * (%s) is 400', async (value) => {
    expectError(await put('/v1/kv/k', 'b', { 'if-none-match': value }), 400, 'INVALID_ARGUMENT');
    expect(fake.calls).toEqual([]);
  });
});

describe('values are bytes, whatever the Content-Type', () => {
  const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

  const cases: Array<{ name: string; contentType: string | undefined; body: Buffer; extra?: Record<string, string> }> = [
    { name: 'application/octet-stream', contentType: 'application/octet-stream', body: Buffer.from('plain bytes') },
    { name: 'text/plain', contentType: 'text/plain', body: Buffer.from('some text ✓') },
    { name: 'text/plain with a charset', contentType: 'text/plain; charset=iso-8859-1', body: Buffer.from([0xe9, 0x74, 0xe9]) },
    { name: 'application/json with INVALID json', contentType: 'application/json', body: Buffer.from('{"not": json,,') },
    { name: 'application/json with valid json (kept verbatim)', contentType: 'application/json', body: Buffer.from('{ "a" : 1 }') },
    { name: 'application/json with an unknown charset', contentType: 'application/json; charset=nope', body: Buffer.from('{') },
    { name: 'content-encoding gzip is not decoded', contentType: 'text/plain', body: Buffer.from('not really gzip'), extra: { 'content-encoding': 'gzip' } },
    { name: 'application/x-www-form-urlencoded', contentType: 'application/x-www-form-urlencoded', body: Buffer.from('a=1&b=%zz') },
    { name: 'multipart/form-data without a boundary', contentType: 'multipart/form-data', body: Buffer.from('--x\r\n') },
    { name: 'image/png', contentType: 'image/png', body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d]) },
    { name: 'no content-type', contentType: undefined, body: Buffer.from('no type at all') },
    { name: 'binary bytes 0x00-0xFF as octet-stream', contentType: 'application/octet-stream', body: ALL_BYTES },
    { name: 'binary bytes 0x00-0xFF with no content-type', contentType: undefined, body: ALL_BYTES },
    { name: 'binary bytes 0x00-0xFF as application/json', contentType: 'application/json', body: ALL_BYTES },
    { name: 'a Content-Type that is not a valid media type', contentType: 'garbage', body: Buffer.from('v') },
    { name: 'an empty Content-Type', contentType: '', body: Buffer.from('v') },
  ];

  test.each(cases)('$name: stored and returned as the exact bytes sent, never 415', async ({ contentType, body, extra }) => {
    const headers: Record<string, string> = { ...(contentType === undefined ? {} : { 'content-type': contentType }), ...extra };
    const res = await put('/v1/kv/v', body, headers);
    expect(res.statusCode, res.body).toBe(200);
    expect(Buffer.compare(Buffer.from(fake.store.get('v')!.value), body)).toBe(0);
    const got = await app.inject({ method: 'GET', url: '/v1/kv/v' });
    expect(got.statusCode).toBe(200);
    expect(Buffer.compare(got.rawPayload, body)).toBe(0);
  });

  test('a PUT with no body stores the empty value', async () => {
    const res = await app.inject({ method: 'PUT', url: '/v1/kv/v' });
    expect(res.statusCode).toBe(200);
    expect(fake.store.get('v')!.value.byteLength).toBe(0);
  });

  test('a value of exactly maxValueBytes is accepted', async () => {
    const res = await put('/v1/kv/v', Buffer.alloc(MAX_VALUE_BYTES, 7), { 'content-type': 'application/octet-stream' });
    expect(res.statusCode).toBe(200);
    expect(fake.store.get('v')!.value.byteLength).toBe(MAX_VALUE_BYTES);
  });

  test.each([undefined, 'application/octet-stream', 'application/json', 'text/plain'])(
    'a value larger than maxValueBytes is 413 in the error shape (content-type %s)',
    async (contentType) => {
      const res = await put('/v1/kv/v', Buffer.alloc(MAX_VALUE_BYTES + 1, 7), contentType === undefined ? {} : { 'content-type': contentType });
      expectError(res, 413);
      expect(fake.calls).toEqual([]);
    },
  );
});

describe('keys', () => {
  test('the empty key is 400', async () => {
    for (const method of ['GET', 'PUT', 'DELETE'] as const) {
      expectError(await app.inject({ method, url: '/v1/kv/', payload: method === 'PUT' ? 'v' : undefined }), 400, 'INVALID_ARGUMENT');
    }
    expectError(await app.inject({ method: 'GET', url: '/v1/kv/?consistency=stale' }), 400, 'INVALID_ARGUMENT');
    expect(fake.calls).toEqual([]);
  });

  test('%2F and / name the same key', async () => {
    await put('/v1/kv/a%2Fb', 'slash');
    expect(fake.calls[0].key).toBe('a/b');
    const res = await app.inject({ method: 'GET', url: '/v1/kv/a/b' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe('slash');
    await put('/v1/kv/x/y/z', 'deep');
    expect((await app.inject({ method: 'GET', url: '/v1/kv/x%2fy%2Fz' })).body).toBe('deep');
  });

  test('%E2%82%AC is "€"', async () => {
    await put('/v1/kv/%E2%82%AC', 'euro');
    expect(fake.calls[0].key).toBe('€');
    expect((await app.inject({ method: 'GET', url: '/v1/kv/€' })).body).toBe('euro');
  });

  test('other escapes and reserved characters are taken literally', async () => {
    const pairs: Array<[string, string]> = [
      ['/v1/kv/a%20b', 'a b'],
      ['/v1/kv/%25', '%'],
      ['/v1/kv/%2525', '%25'],
      ['/v1/kv/a+b', 'a+b'],
      ['/v1/kv/a;b', 'a;b'],
      ['/v1/kv/a//b', 'a//b'],
      ['/v1/kv/%2F', '/'],
      ['/v1/kv/%00', '\u0000'],
      ['/v1/kv/e%CC%81', 'e\u0301'],
    ];
    for (const [url, key] of pairs) {
      fake.calls = [];
      const res = await app.inject({ method: 'GET', url });
      expectError(res, 404, 'KEY_NOT_FOUND');
      expect(fake.calls, url).toEqual([{ op: 'get', key, consistency: 'linearizable' }]);
    }
  });

  async function expectBadKey(bad: string): Promise<void> {
    for (const method of ['GET', 'PUT', 'DELETE'] as const) {
      const res = await app.inject({ method, url: `/v1/kv/${bad}`, payload: method === 'PUT' ? 'v' : undefined });
      try {
        expectError(res, 400, 'INVALID_ARGUMENT');
      } catch (err) {
        throw new Error(`${method} /v1/kv/${bad} answered ${res.statusCode} ${res.body}: ${(err as Error).message}`);
      }
    }
    expect(fake.calls).toEqual([]);
  }

  test('invalid percent-encoding (%zz, %4, %, a%, a%g0) is 400 in the error shape', async () => {
    for (const bad of ['%zz', '%4', '%', 'a%', 'a%g0']) await expectBadKey(bad);
  });

  test('invalid UTF-8 after decoding (%FF, %C3%28, %E2%82, %ED%A0%80) is 400 in the error shape', async () => {
    for (const bad of ['%FF', '%C3%28', '%E2%82', '%ED%A0%80']) await expectBadKey(bad);
  });

  test('a key of exactly maxKeyBytes is fine; one byte more is 413', async () => {
    expect((await put(`/v1/kv/${'k'.repeat(MAX_KEY_BYTES)}`, 'v')).statusCode).toBe(200);
    expectError(await put(`/v1/kv/${'k'.repeat(MAX_KEY_BYTES + 1)}`, 'v'), 413, 'KEY_TOO_LARGE');
    expectError(await app.inject({ method: 'GET', url: `/v1/kv/${'k'.repeat(MAX_KEY_BYTES + 1)}` }), 413, 'KEY_TOO_LARGE');
  });

  test('the key limit counts decoded bytes, not characters or escapes', async () => {
    // 21 × "€" = 63 bytes (fits), 22 × "€" = 66 bytes (does not); each is 9 characters escaped.
    expect((await put(`/v1/kv/${'%E2%82%AC'.repeat(21)}`, 'v')).statusCode).toBe(200);
    expectError(await put(`/v1/kv/${'%E2%82%AC'.repeat(22)}`, 'v'), 413, 'KEY_TOO_LARGE');
    expectError(await put(`/v1/kv/${'€'.repeat(22)}`, 'v'), 413, 'KEY_TOO_LARGE');
  });

  test('a very long key is 413, not 404 or 414', async () => {
    for (const n of [500, 5_000, 12_000]) {
      expectError(await put(`/v1/kv/${'k'.repeat(n)}`, 'v'), 413, 'KEY_TOO_LARGE');
      expectError(await app.inject({ method: 'GET', url: `/v1/kv/${'%41'.repeat(n / 4)}` }), 413, 'KEY_TOO_LARGE');
    }
  });
});

describe('consistency', () => {
  test('linearizable by default', async () => {
    await app.inject({ method: 'GET', url: '/v1/kv/k' });
    expect(fake.calls).toEqual([{ op: 'get', key: 'k', consistency: 'linearizable' }]);
  });

  test('?consistency=stale passes stale to the service', async () => {
    await put('/v1/kv/k', 'v');
    const res = await app.inject({ method: 'GET', url: '/v1/kv/k?consistency=stale' });
    expect(res.statusCode).toBe(200);
    expect(fake.calls.at(-1)).toEqual({ op: 'get', key: 'k', consistency: 'stale' });
  });

  test('?consistency=linearizable is accepted', async () => {
    await app.inject({ method: 'GET', url: '/v1/kv/k?consistency=linearizable' });
    expect(fake.calls.at(-1)).toEqual({ op: 'get', key: 'k', consistency: 'linearizable' });
  });

  test.each(['bogus', '', 'STALE', 'stale&consistency=stale'])('?consistency=%s is 400', async (value) => {
    expectError(await app.inject({ method: 'GET', url: `/v1/kv/k?consistency=${value}` }), 400, 'INVALID_ARGUMENT');
    expect(fake.calls).toEqual([]);
  });
});

describe('service errors map to the contract statuses', () => {
  test.each([
    { method: 'PUT' as const, url: '/v1/kv/a%2Fb?x=1' },
    { method: 'DELETE' as const, url: '/v1/kv/a%2Fb?x=1' },
    { method: 'GET' as const, url: '/v1/kv/a%2Fb?x=1' },
    { method: 'PUT' as const, url: '/v1/kv/a/../b?consistency=stale&x=%20' },
  ])('NotLeaderError on $method $url → 307 to the same path and query at the leader', async ({ method, url }) => {
    fake.failure = new NotLeaderError('n2', LEADER_URL);
    const res = await app.inject({ method, url, payload: method === 'PUT' ? 'v' : undefined });
    expect(res.statusCode).toBe(307);
    // light-my-request resolves dot segments before the request reaches the server; compare with what was sent.
    const sent = new URL(url, 'http://localhost');
    expect(res.headers['location']).toBe(`${LEADER_URL}${sent.pathname}${sent.search}`);
    expectErrorShape(res.body, res.headers['content-type'] as string, 'NOT_LEADER');
  });

  test('the 307 Location for the brief example is exact', async () => {
    fake.failure = new NotLeaderError('n2', LEADER_URL);
    const res = await put('/v1/kv/a%2Fb?x=1', 'v');
    expect(res.statusCode).toBe(307);
    expect(res.headers['location']).toBe('http://127.0.0.1:22379/v1/kv/a%2Fb?x=1');
  });

  test('NoLeaderError → 503 with Retry-After', async () => {
    fake.failure = new NoLeaderError();
    for (const method of ['PUT', 'DELETE', 'GET'] as const) {
      const res = await app.inject({ method, url: '/v1/kv/k', payload: method === 'PUT' ? 'v' : undefined });
      expectError(res, 503, 'NO_LEADER');
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    }
  });

  test('OutcomeUnknownError → 504 saying the write may or may not have been applied', async () => {
    fake.failure = new OutcomeUnknownError('Timed out waiting for the write to commit');
    for (const method of ['PUT', 'DELETE'] as const) {
      const res = await app.inject({ method, url: '/v1/kv/k', payload: method === 'PUT' ? 'v' : undefined });
      const error = expectError(res, 504, 'OUTCOME_UNKNOWN');
      expect(error.message).toMatch(/may or may not have been applied/);
    }
  });

  test('OverloadedError → 503 with Retry-After', async () => {
    fake.failure = new OverloadedError('writes');
    const res = await put('/v1/kv/k', 'v');
    expectError(res, 503, 'OVERLOADED');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
  });

  test('an unexpected error is 500 in the error shape without leaking its message', async () => {
    fake.failure = new Error('secret internal detail');
    const res = await put('/v1/kv/k', 'v');
    const error = expectError(res, 500, 'INTERNAL');
    expect(error.message).not.toContain('secret');
  });
});

describe('other routes', () => {
  test.each([
    ['GET', '/nope'],
    ['GET', '/v1/kvx'],
    ['PUT', '/v1/kv'],
    ['POST', '/v1/kv/a'],
    ['PATCH', '/v1/kv/a'],
    ['GET', '/v2/kv/a'],
    ['DELETE', '/v1/status'],
  ] as const)('unknown route %s %s → 404 in the error shape', async (method, url) => {
    expectError(await app.inject({ method, url }), 404);
  });

  test('GET /v1/status returns the service status as JSON', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/status' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json()).toEqual(fake.statusView);
    fake.statusView = { name: 'n1', role: 'leader', term: 8, leader: 'n1', leaderClientUrl: 'http://127.0.0.1:2379', commitIndex: 50, appliedIndex: 50 };
    expect((await app.inject({ method: 'GET', url: '/v1/status' })).json()).toEqual(fake.statusView);
    fake.statusView = { name: 'n1', role: 'candidate', term: 9, leader: null, leaderClientUrl: null, commitIndex: 50, appliedIndex: 50 };
    expect((await app.inject({ method: 'GET', url: '/v1/status' })).json()).toEqual(fake.statusView);
  });

  test('/health is 200 when healthy, 503 in the error shape when not', async () => {
    expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    fake.healthy = false;
    expectError(await app.inject({ method: 'GET', url: '/health' }), 503);
  });

  test('/metrics passes the content type and body through', async () => {
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe(fake.metricsBody.contentType);
    expect(res.body).toBe(fake.metricsBody.body);
    fake.metricsBody = { contentType: 'application/openmetrics-text; version=1.0.0; charset=utf-8', body: '# EOF\n' };
    const again = await app.inject({ method: 'GET', url: '/metrics' });
    expect(again.headers['content-type']).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    expect(again.body).toBe('# EOF\n');
  });

  test('each response is observed for metrics with its status', async () => {
    await put('/v1/kv/k', 'v');
    await app.inject({ method: 'GET', url: '/nope' });
    expect(fake.observed.map((o) => [o.method, o.status])).toEqual([['PUT', 200], ['GET', 404]]);
  });
});

describe('no 500 for bad input', () => {
  const bad: Array<{ method: 'GET' | 'PUT' | 'DELETE' | 'POST'; url: string; headers?: Record<string, string>; payload?: string | Buffer }> = [
    { method: 'PUT', url: '/v1/kv/', payload: 'v' },
    { method: 'PUT', url: `/v1/kv/${'x'.repeat(1000)}`, payload: 'v' },
    { method: 'PUT', url: '/v1/kv/k', payload: Buffer.alloc(MAX_VALUE_BYTES * 4) },
    { method: 'PUT', url: '/v1/kv/k', headers: { 'if-match': 'nope' }, payload: 'v' },
    { method: 'PUT', url: '/v1/kv/k', headers: { 'if-none-match': 'nope' }, payload: 'v' },
    { method: 'PUT', url: '/v1/kv/k?lease=abc', payload: 'v' },
    { method: 'PUT', url: '/v1/kv/k?lease=-1', payload: 'v' },
    { method: 'GET', url: '/v1/kv/k?consistency=%zz' },
    { method: 'GET', url: '/v1/kv/k?consistency[]=stale' },
    { method: 'DELETE', url: '/v1/kv/k', headers: { 'if-match': '"0"' } },
    { method: 'POST', url: '/v1/kv/k', payload: 'v' },
  ];

  test.each(bad)('$method $url $headers → 4xx in the error shape', async ({ method, url, headers, payload }) => {
    const res = await app.inject({ method, url, headers, payload });
    expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400);
    expect(res.statusCode, res.body).toBeLessThan(500);
    expectErrorShape(res.body, res.headers['content-type'] as string);
  });
});

describe('over a real socket', () => {
  let port: number;

  beforeAll(async () => {
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as AddressInfo).port;
  });

  interface RawResponse {
    status: number;
    headers: Record<string, string>;
    body: Buffer;
  }

  /** Writes raw bytes, reads until the server closes (or a timeout), parses one HTTP/1.1 response. */
  function raw(request: string | Buffer, timeoutMs = 5_000): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => socket.end(), timeoutMs);
      socket.on('data', (c) => chunks.push(c));
      socket.on('error', () => socket.destroy());
      socket.on('close', () => {
        clearTimeout(timer);
        const all = Buffer.concat(chunks);
        const split = all.indexOf('\r\n\r\n');
        if (split < 0) return reject(new Error(`no HTTP response, got ${JSON.stringify(all.toString('latin1'))}`));
        const [statusLine, ...lines] = all.subarray(0, split).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines) {
          const i = l.indexOf(':');
          headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        let body = all.subarray(split + 4);
        if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
        resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
      });
      socket.write(request);
    });
  }

  function request(method: string, path: string, headers: Record<string, string> = {}, body: Buffer = Buffer.alloc(0)): Promise<RawResponse> {
    const head = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
    if (method === 'PUT') head.push(`Content-Length: ${body.byteLength}`);
    for (const [k, v] of Object.entries(headers)) head.push(`${k}: ${v}`);
    return raw(Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n', 'latin1'), body]));
  }

  async function expectStillServing(): Promise<void> {
    const res = await request('PUT', '/v1/kv/alive', {}, Buffer.from('yes'));
    expect(res.status).toBe(200);
    const got = await request('GET', '/v1/kv/alive');
    expect(got.status).toBe(200);
    expect(got.body.toString()).toBe('yes');
  }

  function expectRaw4xx(res: RawResponse): void {
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expectErrorShape(res.body.toString('utf8'), res.headers['content-type']);
  }

  test('a normal request works', async () => {
    await expectStillServing();
  });

  test('a request line of garbage → 4xx JSON error, then the server keeps serving', async () => {
    expectRaw4xx(await raw('THIS IS NOT HTTP AT ALL\r\n\r\n'));
    expectRaw4xx(await raw('GET\r\n\r\n'));
    expectRaw4xx(await raw(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a])));
    await expectStillServing();
  });

  test('a bad Content-Length → 4xx JSON error, then the server keeps serving', async () => {
    expectRaw4xx(await raw('PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nvalue'));
    expectRaw4xx(await raw('PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nvalue'));
    expectRaw4xx(await raw('PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nvalue'));
    expectRaw4xx(await raw('PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nvalue'));
    expect(fake.store.has('k')).toBe(false);
    await expectStillServing();
  });

  test('a header section larger than 16 KiB → 4xx JSON error, then the server keeps serving', async () => {
    const res = await raw(`GET /v1/kv/k HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`);
    expectRaw4xx(res);
    const many = Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'b'.repeat(50)}`).join('\r\n');
    expectRaw4xx(await raw(`GET /v1/kv/k HTTP/1.1\r\nHost: x\r\n${many}\r\n\r\n`));
    await expectStillServing();
  });

  test('a value larger than maxValueBytes → 413 JSON error over the wire', async () => {
    const res = await request('PUT', '/v1/kv/big', { 'Content-Type': 'application/octet-stream' }, Buffer.alloc(MAX_VALUE_BYTES + 1));
    expect(res.status).toBe(413);
    expectErrorShape(res.body.toString(), res.headers['content-type']);
    await expectStillServing();
  });

  test('a/../b is its own key (no dot-segment resolution)', async () => {
    expect((await request('PUT', '/v1/kv/a/../b', {}, Buffer.from('dots'))).status).toBe(200);
    expect(fake.calls.at(-1)?.key).toBe('a/../b');
    expect(fake.store.has('b')).toBe(false);
    expect((await request('GET', '/v1/kv/b')).status).toBe(404);
    const got = await request('GET', '/v1/kv/a/../b');
    expect(got.status).toBe(200);
    expect(got.body.toString()).toBe('dots');
    // (light-my-request resolves these before Fastify sees them, hence the real socket.)
    for (const [path, key] of [['/v1/kv/./x', './x'], ['/v1/kv/.', '.'], ['/v1/kv/..', '..'], ['/v1/kv/%2E%2E', '..'], ['/v1/kv/a/%2e%2e/b', 'a/../b']]) {
      expect((await request('PUT', path, {}, Buffer.from('dot'))).status, path).toBe(200);
      expect(fake.calls.at(-1)?.key, path).toBe(key);
    }
  });

  test('NotLeaderError → 307 Location keeps dot segments and the raw query', async () => {
    fake.failure = new NotLeaderError('n2', LEADER_URL);
    const res = await request('PUT', '/v1/kv/a/../b%2Fc?x=1&y=%20', {}, Buffer.from('v'));
    expect(res.status).toBe(307);
    expect(res.headers['location']).toBe(`${LEADER_URL}/v1/kv/a/../b%2Fc?x=1&y=%20`);
  });

  test('no Content-Type and any Content-Type over the wire store the exact bytes', async () => {
    const body = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
    const variants: Array<Record<string, string>> = [{}, { 'Content-Type': 'application/json' }, { 'Content-Type': 'image/png' }, { 'Content-Type': 'garbage' }];
    for (const headers of variants) {
      fake.reset();
      const res = await request('PUT', '/v1/kv/bin', headers, body);
      expect(res.status, `${JSON.stringify(headers)}: ${res.body.toString()}`).toBe(200);
      const got = await request('GET', '/v1/kv/bin');
      expect(Buffer.compare(got.body, body)).toBe(0);
    }
  });

  test('invalid percent-encoding over the wire is 400 in the error shape', async () => {
    for (const path of ['/v1/kv/%zz', '/v1/kv/%4', '/v1/kv/%FF']) {
      const res = await request('GET', path);
      expect(res.status).toBe(400);
      expectErrorShape(res.body.toString(), res.headers['content-type']);
    }
  });
});
