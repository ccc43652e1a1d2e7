import Fastify, { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Readable } from 'node:stream';
import type { Message, NodeId } from '../raft/types.js';
import { CodecError, decodeBatch } from './codec.js';
import { PEER_HEADERS, PEER_MESSAGES_PATH } from './peer-client.js';
import { acceptPeerStreams, deliverBatch } from './peer-stream.js';
import { SNAPSHOT_CONTENT_TYPE, SNAPSHOT_HEADERS, SNAPSHOT_OFFSET_PATH, SNAPSHOT_PATH } from './snapshot-transfer.js';

/** Where an incoming snapshot stands, named by the leader's term and the image's boundary. */
export interface IncomingSnapshot {
  readonly from: NodeId;
  readonly term: number;
  readonly index: number;
  readonly snapTerm: number;
}

export interface PeerHandler {
  readonly self: NodeId;
  /** Hand decoded messages to the member (synchronous: the core steps them at once). */
  receive(from: NodeId, clientUrl: string | undefined, messages: Message[]): void;
  /** Counted, not logged per message. */
  rejected(reason: string): void;
  /** Bytes of this image already received (0 if none). */
  snapshotOffset(snapshot: IncomingSnapshot): Promise<number>;
  /** Append the body at `offset`; when the image is whole, install it. */
  receiveSnapshot(
    snapshot: IncomingSnapshot & { readonly offset: number; readonly size: number; readonly clientUrl: string | undefined },
    body: Readable,
  ): Promise<{ status: 204 | 409 | 400; offset?: number; message?: string }>;
}

function num(v: unknown): number | null {
  return typeof v === 'string' && /^[0-9]{1,16}$/.test(v) ? Number(v) : null;
}

function incoming(headers: Record<string, unknown>): IncomingSnapshot | null {
  const from = headers[PEER_HEADERS.from];
  const term = num(headers[SNAPSHOT_HEADERS.term]);
  const index = num(headers[SNAPSHOT_HEADERS.index]);
  const snapTerm = num(headers[SNAPSHOT_HEADERS.snapTerm]);
  if (typeof from !== 'string' || term === null || index === null || snapTerm === null) return null;
  return { from, term, index, snapTerm };
}

/** Peer bodies carry batches of entries: allow far more than a client request. */
const PEER_BODY_LIMIT = 256 * 1024 * 1024;

/** The Fastify app on the peer URL: peer streams, batches of Raft messages, snapshot uploads. Never listens. */
export function buildPeerApp(handler: PeerHandler, logger: FastifyBaseLogger): FastifyInstance {
  const app = Fastify({ loggerInstance: logger, bodyLimit: PEER_BODY_LIMIT, logController: new LogController({ disableRequestLogging: true }) });
  app.removeAllContentTypeParsers();
  // A snapshot image streams to disk as it arrives: hand the raw stream to the handler.
  app.addContentTypeParser(SNAPSHOT_CONTENT_TYPE, (_req, payload, done) => done(null, payload));
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  // The hot path: long-lived streams of framed batches (peer-stream.ts). POST PEER_MESSAGES_PATH
  // below takes the same batches one request each, for tools and older members.
  const closeStreams = acceptPeerStreams(app.server, handler, PEER_HEADERS, logger);
  app.addHook('preClose', (done) => {
    closeStreams();
    done();
  });
  const bad = (message: string) => ({ error: { code: 'BAD_PEER_MESSAGE', message } });
  app.get(SNAPSHOT_OFFSET_PATH, async (request, reply) => {
    const snap = incoming(request.headers);
    if (!snap) return reply.code(400).send(bad('missing snapshot headers'));
    return { offset: await handler.snapshotOffset(snap) };
  });
  app.put(SNAPSHOT_PATH, async (request, reply) => {
    const snap = incoming(request.headers);
    const offset = num(request.headers[SNAPSHOT_HEADERS.offset]);
    const size = num(request.headers[SNAPSHOT_HEADERS.size]);
    const body = request.body as Readable | undefined;
    if (!snap || offset === null || size === null || !body || typeof body.pipe !== 'function') {
      return reply.code(400).send(bad('missing snapshot headers or body'));
    }
    const clientUrl = request.headers[PEER_HEADERS.clientUrl];
    const r = await handler.receiveSnapshot({ ...snap, offset, size, clientUrl: typeof clientUrl === 'string' ? clientUrl : undefined }, body);
    if (r.status === 204) return reply.code(204).send();
    return reply.code(r.status).send({ ...bad(r.message ?? 'snapshot refused'), offset: r.offset });
  });
  app.post(PEER_MESSAGES_PATH, async (request, reply) => {
    const from = request.headers[PEER_HEADERS.from];
    const clientUrl = request.headers[PEER_HEADERS.clientUrl];
    if (typeof from !== 'string' || !Buffer.isBuffer(request.body)) {
      handler.rejected('missing sender or body');
      return reply.code(400).send({ error: { code: 'BAD_PEER_MESSAGE', message: 'missing sender or body' } });
    }
    let messages: Message[];
    try {
      messages = decodeBatch(request.body);
    } catch (err) {
      const message = err instanceof CodecError ? err.message : 'undecodable batch';
      handler.rejected(message);
      return reply.code(400).send({ error: { code: 'BAD_PEER_MESSAGE', message } });
    }
    deliverBatch(handler, from, typeof clientUrl === 'string' ? clientUrl : undefined, messages);
    return reply.code(204).send();
  });
  return app;
}
