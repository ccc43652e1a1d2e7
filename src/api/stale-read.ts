import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KvRecord } from '../kv/kv-record.js';
import type { FastAnswer, FastRoute } from './front-door.js';
import type { KvService } from './kv-service.js';

/**
 * `GET /v1/kv/KEY?consistency=stale`, the cheapest read there is, answered before Fastify: by the
 * client port's front door straight from the socket (`staleReadRoute`, see front-door.ts), or,
 * on a connection the door has handed to Node's HTTP server, from its request event
 * (`answerStaleRead`). Fastify's per-request work (request and reply objects, a child
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

/** The key of a stale GET of a plain key (`/v1/kv/KEY?consistency=stale`), or null. */
function plainKeyOf(url: string, maxKeyBytes: number): string | null {
  if (!url.startsWith(PREFIX) || !url.endsWith(QUERY)) return null;
  const key = url.slice(PREFIX.length, url.length - QUERY.length);
  if (key.length === 0 || key.length > maxKeyBytes || !PLAIN_KEY.test(key)) return null;
  return key;
}

/** The record a stale read finds, or null for anything the Fastify route must answer instead. */
function readStale(service: KvService, key: string): KvRecord | null {
  let found;
  try {
    found = service.get(key, 'stale');
  } catch {
    return null; // Fastify asks again and answers the error in the contract's shape
  }
  if (found instanceof Promise) {
    // Not a plain stale read (a member shutting down answers with a rejection): Fastify's turn.
    found.catch(() => undefined);
    return null;
  }
  return found; // null: the 404 and its JSON body come from the route
}

function bodyOf(record: KvRecord): Buffer {
  const v = record.value;
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * The same read for the client port's front door (front-door.ts), which answers it straight from
 * the socket, before Node's HTTP server: the route's header lines, in its order and case. A
 * record never changes (a write makes a new one), so its answer is made once and kept beside it
 * for as long as the record lives (in the read cache, mostly): a repeated read of a key finds its
 * header lines and body view ready, with no number formatting or buffer view made per read.
 */
export function staleReadRoute(service: KvService, maxKeyBytes: number): FastRoute {
  const answers = new WeakMap<KvRecord, FastAnswer>();
  return (target) => {
    const key = plainKeyOf(target, maxKeyBytes);
    if (key === null) return null;
    const started = performance.now();
    const found = readStale(service, key);
    if (found === null) return null;
    let answer = answers.get(found);
    if (answer === undefined) {
      const body = bodyOf(found);
      const headerLines =
        `etag: "${found.modRevision}"\r\nx-flotilla-create-revision: ${found.createRevision}\r\n` +
        `x-flotilla-version: ${found.version}\r\ncontent-type: application/octet-stream\r\ncontent-length: ${body.byteLength}\r\n`;
      answer = { headerLines, body };
      answers.set(found, answer);
    }
    service.observeHttp('GET', KV_ROUTE, 200, (performance.now() - started) / 1000);
    return answer;
  };
}

/** Answers the request and returns true if it is a stale GET of a key that exists; else false. */
export function answerStaleRead(service: KvService, maxKeyBytes: number, req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method !== 'GET' || req.url === undefined) return false;
  // A GET with a body is Fastify's to handle (and to drain).
  if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) return false;
  const key = plainKeyOf(req.url, maxKeyBytes);
  if (key === null) return false;
  const started = performance.now();
  const found = readStale(service, key);
  if (found === null) return false;
  const body = bodyOf(found);
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
