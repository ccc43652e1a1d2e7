import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { request as undiciRequest } from 'undici';
import { NotLeaderError } from '../../member/errors.js';
import type { ApiOptions } from '../build-api.js';
import { ApiError, toFlotillaError } from '../http-errors.js';
import type { KvService, PutOptions } from '../kv-service.js';

const KV_PREFIX = '/v1/kv/';
/** Marks a request one member forwarded to another, so forwarding never loops. */
const FORWARDED_HEADER = 'x-flotilla-forwarded';
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The key is the raw path after /v1/kv/, percent-decoded byte by byte and then read as UTF-8.
 * Taken literally: no dot-segment resolution, no normalization; %2F and / name the same key.
 */
export function parseKey(rawUrl: string, maxKeyBytes: number): string {
  const q = rawUrl.indexOf('?');
  const path = q >= 0 ? rawUrl.slice(0, q) : rawUrl;
  const encoded = path.slice(KV_PREFIX.length);
  if (encoded.length === 0) throw new ApiError('INVALID_ARGUMENT', 'The key is empty: use /v1/kv/KEY');
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
  if (n > maxKeyBytes) throw new ApiError('KEY_TOO_LARGE', `Key is ${n} bytes; the limit is ${maxKeyBytes} (--max-key-bytes)`);
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

export function registerKvRoutes(app: FastifyInstance, service: KvService, options: ApiOptions): void {
  const keyOf = (request: FastifyRequest) => parseKey(request.raw.url ?? '', options.maxKeyBytes);

  app.get('/v1/kv/*', async (request, reply) => {
    const key = keyOf(request);
    const record = await service.get(key, parseConsistency(request.query));
    if (record === null) throw new ApiError('KEY_NOT_FOUND', `Key ${JSON.stringify(key)} not found`);
    return reply
      .header('etag', `"${record.modRevision}"`)
      .header('x-flotilla-create-revision', String(record.createRevision))
      .header('x-flotilla-version', String(record.version))
      .header('content-type', 'application/octet-stream')
      .send(Buffer.from(record.value.buffer, record.value.byteOffset, record.value.byteLength));
  });

  app.put('/v1/kv/*', async (request, reply) => {
    const key = keyOf(request);
    const conditions = parseConditions(request.headers);
    const lease = parseLease(request.query);
    const value = bodyBytes(request.body);
    return writeOrForward(request, reply, service, options, async () => {
      const r = await service.put(key, value, lease === undefined ? conditions : { ...conditions, lease });
      return reply
        .header('etag', `"${r.modRevision}"`)
        .send({ key: r.key, revision: r.revision, modRevision: r.modRevision, createRevision: r.createRevision, version: r.version });
    });
  });

  app.delete('/v1/kv/*', async (request, reply) => {
    const key = keyOf(request);
    const conditions = parseConditions(request.headers);
    return writeOrForward(request, reply, service, options, async () => {
      const r = await service.delete(key, conditions);
      return reply.send({ deleted: r.deleted, revision: r.revision });
    });
  });
}

/**
 * Run a write here; if this member is not the leader, either let the error handler answer 307
 * (the default) or, with --forward-to-leader, proxy the request to the leader once.
 */
async function writeOrForward(
  request: FastifyRequest,
  reply: FastifyReply,
  service: KvService,
  options: ApiOptions,
  write: () => Promise<FastifyReply>,
): Promise<FastifyReply> {
  try {
    return await write();
  } catch (err) {
    const e = toFlotillaError(err);
    if (!(e instanceof NotLeaderError) || !options.forwardToLeader) throw err;
    if (request.headers[FORWARDED_HEADER] !== undefined) {
      throw new ApiError('NO_LEADER', 'Forwarded to a member that is not the leader; retry');
    }
    return forward(request, reply, e.leaderClientUrl, options.requestTimeoutMs);
  }
}

const RELAYED_HEADERS = ['content-type', 'etag', 'retry-after', 'location', 'x-flotilla-create-revision', 'x-flotilla-version'];

async function forward(request: FastifyRequest, reply: FastifyReply, leaderUrl: string, timeoutMs: number): Promise<FastifyReply> {
  const headers: Record<string, string> = { [FORWARDED_HEADER]: '1' };
  for (const h of ['content-type', 'if-match', 'if-none-match']) {
    const v = request.headers[h];
    if (typeof v === 'string') headers[h] = v;
  }
  let res;
  try {
    res = await undiciRequest(leaderUrl + (request.raw.url ?? ''), {
      method: request.method as 'PUT' | 'DELETE',
      headers,
      body: Buffer.isBuffer(request.body) ? request.body : undefined,
      headersTimeout: timeoutMs + 1000,
      bodyTimeout: timeoutMs + 1000,
    });
  } catch {
    // The request may have reached the leader before the connection failed.
    throw new ApiError('OUTCOME_UNKNOWN', 'Lost the connection to the leader while forwarding; the write may or may not have been applied');
  }
  const body = Buffer.from(await res.body.arrayBuffer());
  reply.code(res.statusCode);
  for (const h of RELAYED_HEADERS) {
    const v = res.headers[h];
    if (typeof v === 'string') reply.header(h, v);
  }
  return reply.send(body);
}
