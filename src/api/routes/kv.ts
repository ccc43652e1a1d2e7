import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { KvRecord } from '../../kv/kv-record.js';
import type { ApiOptions } from '../build-api.js';
import { writeOrForward } from '../forward.js';
import { ApiError } from '../http-errors.js';
import type { KvService, PutOptions } from '../kv-service.js';

const KV_PREFIX = '/v1/kv/';
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The key is the raw path after /v1/kv/, percent-decoded byte by byte and then read as UTF-8.
 * Taken literally: no dot-segment resolution, no normalization; %2F and / name the same key.
 */
export function parseKey(rawUrl: string, maxKeyBytes: number): string {
  return parseKeyAfter(KV_PREFIX, rawUrl, maxKeyBytes);
}

const PLAIN_ASCII = /^[\x00-\x24\x26-\x7f]+$/;

function keyTooLarge(n: number, maxKeyBytes: number): ApiError {
  return new ApiError('KEY_TOO_LARGE', `Key is ${n} bytes; the limit is ${maxKeyBytes} (--max-key-bytes)`);
}

export function parseKeyAfter(routePrefix: string, rawUrl: string, maxKeyBytes: number): string {
  const q = rawUrl.indexOf('?');
  const path = q >= 0 ? rawUrl.slice(0, q) : rawUrl;
  const encoded = path.slice(routePrefix.length);
  if (encoded.length === 0) throw new ApiError('INVALID_ARGUMENT', `The key is empty: use ${routePrefix}KEY`);
  // The common case, ASCII without '%': nothing to decode, each character is one byte of the key.
  if (PLAIN_ASCII.test(encoded)) {
    if (encoded.length > maxKeyBytes) throw keyTooLarge(encoded.length, maxKeyBytes);
    return encoded;
  }
  const raw = Buffer.from(encoded, 'latin1');
  const out = Buffer.allocUnsafe(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === 0x25 /* % */) {
      const hex = raw.subarray(i + 1, i + 3).toString('latin1');
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new ApiError('INVALID_ARGUMENT', `Bad percent-encoding in key at byte ${i}`);
      out[n++] = parseInt(hex, 16);
      i += 2;
    } else {
      out[n++] = c;
    }
  }
  if (n > maxKeyBytes) throw keyTooLarge(n, maxKeyBytes);
  try {
    return utf8.decode(out.subarray(0, n));
  } catch {
    throw new ApiError('INVALID_ARGUMENT', 'Key is not valid UTF-8 after percent-decoding');
  }
}

/** If-Match: "N" (or N) and If-None-Match: * → the write's conditions. */
export function parseConditions(headers: FastifyRequest['headers']): PutOptions {
  const ifMatch = headers['if-match'];
  const ifNoneMatch = headers['if-none-match'];
  if (ifMatch !== undefined && ifNoneMatch !== undefined) {
    throw new ApiError('INVALID_ARGUMENT', 'Use If-Match or If-None-Match, not both');
  }
  if (typeof ifMatch === 'string') {
    const m = /^\s*"?([1-9][0-9]{0,15})"?\s*$/.exec(ifMatch);
    if (!m || !Number.isSafeInteger(Number(m[1]))) {
      throw new ApiError('INVALID_ARGUMENT', `If-Match must be a quoted modRevision such as "7", got ${JSON.stringify(ifMatch)}`);
    }
    return { ifMatch: Number(m[1]) };
  }
  if (typeof ifNoneMatch === 'string') {
    if (ifNoneMatch.trim() !== '*') throw new ApiError('INVALID_ARGUMENT', 'If-None-Match supports only *');
    return { ifNoneMatch: true };
  }
  return {};
}

function parseConsistency(query: unknown): 'linearizable' | 'stale' {
  const c = (query as Record<string, unknown> | undefined)?.['consistency'];
  if (c === undefined || c === 'linearizable') return 'linearizable';
  if (c === 'stale') return 'stale';
  throw new ApiError('INVALID_ARGUMENT', `consistency must be "linearizable" or "stale", got ${JSON.stringify(c)}`);
}

function parseLease(query: unknown): number | undefined {
  const l = (query as Record<string, unknown> | undefined)?.['lease'];
  if (l === undefined) return undefined;
  if (typeof l !== 'string' || !/^[1-9][0-9]{0,15}$/.test(l)) throw new ApiError('INVALID_ARGUMENT', 'lease must be a lease id');
  return Number(l);
}

function bodyBytes(body: unknown): Uint8Array {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (Buffer.isBuffer(body)) return body;
  throw new ApiError('INVALID_ARGUMENT', 'Could not read the request body');
}

function isPromise<T>(x: T | Promise<T>): x is Promise<T> {
  return x instanceof Promise;
}

/** A key's value as the body; its ETag (modRevision), createRevision and version as headers. */
function sendRecord(reply: FastifyReply, key: string, record: KvRecord | null): void {
  if (record === null) throw new ApiError('KEY_NOT_FOUND', `Key ${JSON.stringify(key)} not found`);
  reply
    .header('etag', `"${record.modRevision}"`)
    .header('x-flotilla-create-revision', String(record.createRevision))
    .header('x-flotilla-version', String(record.version))
    .header('content-type', 'application/octet-stream')
    .send(Buffer.from(record.value.buffer, record.value.byteOffset, record.value.byteLength));
}

export function registerKvRoutes(app: FastifyInstance, service: KvService, options: ApiOptions): void {
  const keyOf = (request: FastifyRequest) => parseKey(request.raw.url ?? '', options.maxKeyBytes);

  // The hottest route, so no async wrapper: a stale read (answered from this member's store at
  // once) is sent without a promise. A thrown or rejected error reaches the error handler.
  app.get('/v1/kv/*', (request, reply) => {
    const key = keyOf(request);
    const found = service.get(key, parseConsistency(request.query));
    if (isPromise(found)) return found.then((record) => sendRecord(reply, key, record));
    sendRecord(reply, key, found);
    return undefined;
  });

  app.put('/v1/kv/*', async (request, reply) => {
    const key = keyOf(request);
    const conditions = parseConditions(request.headers);
    const lease = parseLease(request.query);
    const value = bodyBytes(request.body);
    return writeOrForward(request, reply, options, async () => {
      const r = await service.put(key, value, lease === undefined ? conditions : { ...conditions, lease });
      return reply
        .header('etag', `"${r.modRevision}"`)
        .send({ key: r.key, revision: r.revision, modRevision: r.modRevision, createRevision: r.createRevision, version: r.version });
    });
  });

  app.delete('/v1/kv/*', async (request, reply) => {
    const key = keyOf(request);
    const conditions = parseConditions(request.headers);
    return writeOrForward(request, reply, options, async () => {
      const r = await service.delete(key, conditions);
      return reply.send({ deleted: r.deleted, revision: r.revision });
    });
  });
}
