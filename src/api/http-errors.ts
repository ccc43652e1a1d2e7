import type { FastifyReply, FastifyRequest } from 'fastify';
import { NotLeaderError } from '../member/errors.js';
import type { ErrorCode } from '../util/errors.js';
import { FlotillaError } from '../util/errors.js';

/** The one place an error becomes an HTTP status. */
const STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  KEY_NOT_FOUND: 404,
  LEASE_NOT_FOUND: 404,
  COMPACTED: 410,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PRECONDITION_FAILED: 412,
  VALUE_TOO_LARGE: 413,
  KEY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NOT_LEADER: 307,
  NO_LEADER: 503,
  LEADER_CHANGED: 503,
  OVERLOADED: 503,
  SHUTTING_DOWN: 503,
  OUTCOME_UNKNOWN: 504,
  TIMEOUT: 504,
  CORRUPT_DATA: 500,
  INTERNAL: 500,
};

/** Retry-After (seconds) for the statuses that invite a retry. */
const RETRY_AFTER_S: Partial<Record<ErrorCode, string>> = { NO_LEADER: '1', LEADER_CHANGED: '1', OVERLOADED: '1', SHUTTING_DOWN: '1' };

export class ApiError extends FlotillaError {
  override name = 'ApiError';
}

/** Fastify's own errors (FST_ERR_*) carry a statusCode; map them onto our codes. */
function fromFastify(err: { code?: string; statusCode?: number; message: string }): FlotillaError {
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new ApiError('VALUE_TOO_LARGE', 'Request body is larger than --max-value-bytes allows');
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new ApiError('UNSUPPORTED_MEDIA_TYPE', err.message);
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return new ApiError('INVALID_ARGUMENT', err.message);
  }
  return new ApiError('INTERNAL', 'Internal error');
}

export function toFlotillaError(err: unknown): FlotillaError {
  if (err instanceof FlotillaError) return err;
  if (err instanceof Error) return fromFastify(err as Error & { code?: string; statusCode?: number });
  return new ApiError('INTERNAL', 'Internal error');
}

export function statusOf(code: ErrorCode): number {
  return STATUS[code];
}

export function replyWithError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const e = toFlotillaError(err);
  if (e instanceof NotLeaderError) {
    return reply.code(307).header('location', e.leaderClientUrl + request.raw.url).send({ error: { code: e.code, message: e.message } });
  }
  const status = STATUS[e.code];
  if (status >= 500 && (e.code === 'INTERNAL' || e.code === 'CORRUPT_DATA')) request.log.error({ err }, 'request failed');
  const retry = RETRY_AFTER_S[e.code];
  if (retry) reply.header('retry-after', retry);
  return reply.code(status).send({ error: { code: e.code, message: e.message } });
}

/** Raw HTTP error bodies for sockets Fastify never turned into requests (malformed framing). */
export function rawErrorResponse(status: number, reason: string, code: ErrorCode, message: string): string {
  const body = JSON.stringify({ error: { code, message } });
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}
