import Fastify, { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Message, NodeId } from '../raft/types.js';
import { CodecError, decodeBatch } from './codec.js';
import { PEER_HEADERS, PEER_MESSAGES_PATH } from './peer-client.js';

export interface PeerHandler {
  readonly self: NodeId;
  /** Hand decoded messages to the member (synchronous: the core steps them at once). */
  receive(from: NodeId, clientUrl: string | undefined, messages: Message[]): void;
  /** Counted, not logged per message. */
  rejected(reason: string): void;
}

/** Peer bodies carry batches of entries: allow far more than a client request. */
const PEER_BODY_LIMIT = 256 * 1024 * 1024;

/** The Fastify app on the peer URL: one route that takes batches of Raft messages. Never listens. */
export function buildPeerApp(handler: PeerHandler, logger: FastifyBaseLogger): FastifyInstance {
  const app = Fastify({ loggerInstance: logger, bodyLimit: PEER_BODY_LIMIT, logController: new LogController({ disableRequestLogging: true }) });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
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
    const mine = messages.filter((m) => m.to === handler.self && m.from === from);
    if (mine.length !== messages.length) handler.rejected('message for another member or from an impostor');
    handler.receive(from, typeof clientUrl === 'string' ? clientUrl : undefined, mine);
    return reply.code(204).send();
  });
  return app;
}
