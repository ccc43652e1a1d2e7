import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KvService } from './kv-service.js';

/**
 * `GET /v1/kv/KEY?consistency=stale`, the cheapest read there is, answered straight from Node's
 * request event, before Fastify. Fastify's per-request work (request and reply objects, a child
 * logger, hooks, header bookkeeping) was most of the CPU such a read cost, and the member's answer
 * is synchronous. Only the plain, successful case is taken here: a request this does not fully
 * recognize, a key that is absent, or any error goes on to Fastify, whose route answers it exactly
 * as before. The 200 written here is byte for byte the one the Fastify route writes (same status
 * line, headers in the same order and case, same body); test/unit/api-stale-read.test.ts compares
 * the two over a real socket.
 */

const PREFIX = '/v1/kv/';
const QUERY = '?consistency=stale';
/** The route whose latency this read is counted under, as Fastify's onResponse hook names it. */
export const KV_ROUTE = '/v1/kv/*';

/**
 * Key characters taken here: those that need no percent-decoding and that neither Node's URL
 * handling nor Fastify's router (find-my-way) treats specially. No '%' (decoding), '?' and '#'
 * (delimiters), ';' (a delimiter when the router is told so). Such a key is its own raw path.
 */
const PLAIN_KEY = /^[A-Za-z0-9\-._~!$&'()*+,=:@/]+$/;

/** Answers the request and returns true if it is a stale GET of a key that exists; else false. */
export function answerStaleRead(service: KvService, maxKeyBytes: number, req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method !== 'GET') return false;
  const url = req.url;
  if (url === undefined || !url.startsWith(PREFIX) || !url.endsWith(QUERY)) return false;
  // A GET with a body is Fastify's to handle (and to drain).
  if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) return false;
  const key = url.slice(PREFIX.length, url.length - QUERY.length);
  if (key.length === 0 || key.length > maxKeyBytes || !PLAIN_KEY.test(key)) return false;
  const started = performance.now();
  let found;
  try {
    found = service.get(key, 'stale');
  } catch {
    return false; // Fastify asks again and answers the error in the contract's shape
  }
  if (found instanceof Promise) {
    // Not a plain stale read (a member shutting down answers with a rejection): Fastify's turn.
    found.catch(() => undefined);
    return false;
  }
  if (found === null) return false; // the 404 and its JSON body come from the route
  const v = found.value;
  const body = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  // The Fastify route's headers, in its order and case (Fastify adds content-length last).
  res.writeHead(200, {
    etag: `"${found.modRevision}"`,
    'x-flotilla-create-revision': String(found.createRevision),
    'x-flotilla-version': String(found.version),
    'content-type': 'application/octet-stream',
    'content-length': String(body.byteLength),
  });
  res.end(body);
  service.observeHttp('GET', KV_ROUTE, 200, (performance.now() - started) / 1000);
  return true;
}
