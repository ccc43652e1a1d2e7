import type { FastifyReply, FastifyRequest } from 'fastify';
import { request as undiciRequest } from 'undici';
import { NotLeaderError } from '../member/errors.js';
import type { ApiOptions } from './build-api.js';
import { ApiError, toFlotillaError } from './http-errors.js';

/** Marks a request one member forwarded to another, so forwarding never loops. */
const FORWARDED_HEADER = 'x-flotilla-forwarded';

/**
 * Run a write here; if this member is not the leader, either let the error handler answer 307
 * (the default) or, with --forward-to-leader, proxy the request to the leader once.
 */
export async function writeOrForward(
  request: FastifyRequest,
  reply: FastifyReply,
  options: Pick<ApiOptions, 'forwardToLeader' | 'requestTimeoutMs'>,
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
      method: request.method as 'PUT' | 'DELETE' | 'POST',
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
