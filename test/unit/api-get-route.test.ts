import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { buildApi } from '../../src/api/build-api.js';
import type { KvService } from '../../src/api/kv-service.js';
import { InvalidArgumentError } from '../../src/kv/errors.js';
import type { KvRecord } from '../../src/kv/kv-record.js';

// GET /v1/kv/KEY when the service answers synchronously (a member does for stale reads) and when it
// answers with a promise (linearizable reads): the same status, headers and body either way, and
// errors, thrown or rejected, in the contract's JSON shape.

const MAX_KEY_BYTES = 64;

type Answer = 'sync' | 'async';

/** Just what the GET route and the onResponse hook use; the rest of KvService is never called. */
class ReadOnlyKv {
  answer: Answer = 'sync';
  failure: Error | null = null;
  readonly store = new Map<string, KvRecord>();
  readonly keys: string[] = [];
  readonly observed: string[] = [];

  get(key: string): KvRecord | null | Promise<KvRecord | null> {
    this.keys.push(key);
    const found = () => {
      if (this.failure) throw this.failure;
      return this.store.get(key) ?? null;
    };
    return this.answer === 'sync' ? found() : Promise.resolve().then(found);
  }

  observeHttp(method: string, route: string, status: number): void {
    this.observed.push(`${method} ${route} ${status}`);
  }
}

const kv = new ReadOnlyKv();
let app: FastifyInstance;

beforeAll(async () => {
  app = buildApi(kv as unknown as KvService, {
    logger: pino({ level: 'silent' }),
    maxKeyBytes: MAX_KEY_BYTES,
    maxValueBytes: 1024,
    forwardToLeader: false,
    requestTimeoutMs: 1000,
  });
  await app.ready();
});
afterAll(async () => {
  await app.close();
});
beforeEach(() => {
  kv.failure = null;
  kv.store.clear();
  kv.keys.length = 0;
  kv.observed.length = 0;
  kv.store.set('a/b c', { key: 'a/b c', value: Uint8Array.of(0, 1, 0xff, 10), createRevision: 3, modRevision: 7, version: 2, lease: 0 });
});

/** Everything of a response but its Date. */
function shape(res: LightMyRequestResponse) {
  const { date: _date, ...headers } = res.headers;
  return { status: res.statusCode, headers, body: res.rawPayload.toString('hex') };
}

describe.each<Answer>(['sync', 'async'])('GET /v1/kv/KEY answered %s', (answer) => {
  beforeEach(() => {
    kv.answer = answer;
  });

  test('200: the value bytes, ETag "modRevision", createRevision and version', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/kv/a%2Fb%20c?consistency=stale' });
    expect(shape(res)).toEqual({
      status: 200,
      headers: {
        etag: '"7"',
        'x-flotilla-create-revision': '3',
        'x-flotilla-version': '2',
        'content-type': 'application/octet-stream',
        'content-length': '4',
        connection: 'keep-alive',
      },
      body: '0001ff0a',
    });
    expect(kv.observed).toEqual(['GET /v1/kv/* 200']);
  });

  test('404 KEY_NOT_FOUND in the JSON error shape', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/kv/nope' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json()).toEqual({ error: { code: 'KEY_NOT_FOUND', message: 'Key "nope" not found' } });
    expect(kv.observed).toEqual(['GET /v1/kv/* 404']);
  });

  test('a failure from the service is mapped: 400 for a domain error, 500 INTERNAL for anything else', async () => {
    kv.failure = new InvalidArgumentError('The key is not valid Unicode (lone surrogate)');
    const bad = await app.inject({ method: 'GET', url: '/v1/kv/k' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toEqual({ error: { code: 'INVALID_ARGUMENT', message: 'The key is not valid Unicode (lone surrogate)' } });
    kv.failure = new Error('boom');
    const broken = await app.inject({ method: 'GET', url: '/v1/kv/k' });
    expect(broken.statusCode).toBe(500);
    expect(broken.json()).toEqual({ error: { code: 'INTERNAL', message: 'Internal error' } });
  });
});

describe('the key in the path', () => {
  test('plain ASCII is taken as it is; percent-encoded bytes are decoded as UTF-8', async () => {
    await app.inject({ method: 'GET', url: '/v1/kv/plain-key_1.2~x' });
    await app.inject({ method: 'GET', url: '/v1/kv/a/b?consistency=stale' });
    await app.inject({ method: 'GET', url: '/v1/kv/%C3%BC%2Fk' });
    await app.inject({ method: 'GET', url: '/v1/kv/%70lain' });
    expect(kv.keys).toEqual(['plain-key_1.2~x', 'a/b', 'ü/k', 'plain']);
  });

  test('the byte limit reads the same with or without percent-encoding', async () => {
    const plain = await app.inject({ method: 'GET', url: `/v1/kv/${'k'.repeat(MAX_KEY_BYTES + 1)}` });
    const encoded = await app.inject({ method: 'GET', url: `/v1/kv/${'%6B'.repeat(MAX_KEY_BYTES + 1)}` });
    for (const res of [plain, encoded]) {
      expect(res.statusCode).toBe(413);
      expect(res.json()).toEqual({ error: { code: 'KEY_TOO_LARGE', message: `Key is ${MAX_KEY_BYTES + 1} bytes; the limit is ${MAX_KEY_BYTES} (--max-key-bytes)` } });
    }
    const atLimit = await app.inject({ method: 'GET', url: `/v1/kv/${'k'.repeat(MAX_KEY_BYTES)}` });
    expect(atLimit.statusCode).toBe(404);
    expect(kv.keys).toEqual(['k'.repeat(MAX_KEY_BYTES)]);
  });
});
