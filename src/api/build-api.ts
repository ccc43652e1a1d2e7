import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { ApiError, rawErrorResponse, replyWithError } from './http-errors.js';
import type { KvService } from './kv-service.js';
import { registerClusterRoutes } from './routes/cluster.js';
import { registerKvRoutes } from './routes/kv.js';
import { registerLeaseRoutes } from './routes/leases.js';
import { registerListRoutes } from './routes/list.js';
import { registerSnapshotRoutes } from './routes/snapshot.js';
import { registerTxnRoutes } from './routes/txn.js';
import { registerWatchRoutes } from './routes/watch.js';
import { registerStatusRoutes } from './routes/status.js';
import { installFrontDoor } from './front-door.js';
import { answerStaleRead, staleReadRoute } from './stale-read.js';

export interface ApiOptions {
  readonly logger: FastifyBaseLogger;
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
  /** Proxy writes to the leader instead of answering 307 (`--forward-to-leader`). */
  readonly forwardToLeader: boolean;
  readonly requestTimeoutMs: number;
}

/** Headers beyond this are answered 431 by Node before they reach us. */
const MAX_HEADER_BYTES = 16 * 1024;

/** Builds the client REST API. Never listens: the caller does, and tests use `inject()`. */
export function buildApi(service: KvService, options: ApiOptions): FastifyInstance {
  // Once the app is closing, every request goes to Fastify (which answers 503 from then on).
  let closing = false;
  const app = Fastify({
    // Stale GETs of existing keys are answered before Fastify (stale-read.ts); the rest reach it.
    // Before that, a front door takes them straight from each new connection's socket (front-door.ts).
    serverFactory: (handler, serverOptions) => {
      const server = createHttpServer(serverOptions, (req, res) => {
        if (closing || !answerStaleRead(service, options.maxKeyBytes, req, res)) handler(req, res);
      });
      installFrontDoor(server, { route: staleReadRoute(service, options.maxKeyBytes), maxHeadBytes: MAX_HEADER_BYTES, passAll: () => closing });
      return server;
    },
    loggerInstance: options.logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.maxValueBytes,
    routerOptions: { maxParamLength: options.maxKeyBytes * 3 + 16 },
    // A request that is not done in time is cut off; writes in flight answer before this.
    requestTimeout: options.requestTimeoutMs * 2 + 10_000,
    http: { maxHeaderSize: MAX_HEADER_BYTES },
    clientErrorHandler: answerClientError,
    return503OnClosing: true,
    // Fastify's router rejects bad percent-encoding before any handler: answer in our shape.
    frameworkErrors: (err, request, reply) => replyWithError(request, reply, err),
  });
  // Fastify refuses a Content-Type that is not a valid media type (415) before any parser runs;
  // values are bytes whatever the client calls them, so every body is read as octet-stream.
  // Hooks on every request are callback-style: an async hook costs a promise and a microtask turn.
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.headers['content-type'] !== undefined) request.raw.headers['content-type'] = 'application/octet-stream';
    done();
  });
  // Values are bytes with any Content-Type (or none): never parse, never refuse a media type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.setErrorHandler((err, request, reply) => replyWithError(request, reply, err));
  app.setNotFoundHandler((request, reply) =>
    replyWithError(request, reply, new ApiError('NOT_FOUND', `No route for ${request.method} ${request.url.split('?')[0]}`)),
  );
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    service.observeHttp(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
  registerKvRoutes(app, service, options);
  registerListRoutes(app, service);
  registerWatchRoutes(app, service, options.maxKeyBytes);
  registerLeaseRoutes(app, service, options);
  registerTxnRoutes(app, service, options);
  registerClusterRoutes(app, service, options);
  registerSnapshotRoutes(app, service);
  registerStatusRoutes(app, service);
  return app;
}

/**
 * The HTTP/1 server exactly as Fastify builds its own when given no serverFactory (fastify's
 * lib/server.js): its `http` options, keep-alive, request and connection timeouts.
 */
interface HttpServerSettings {
  readonly http?: ServerOptions;
  readonly keepAliveTimeout?: number;
  readonly requestTimeout?: number;
  readonly connectionTimeout?: number;
  readonly maxRequestsPerSocket?: number;
}

function createHttpServer(o: HttpServerSettings, handler: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const server = createServer(o.http ?? {}, handler);
  if (o.keepAliveTimeout !== undefined) server.keepAliveTimeout = o.keepAliveTimeout;
  if (o.requestTimeout !== undefined) server.requestTimeout = o.requestTimeout;
  server.setTimeout(o.connectionTimeout ?? 0);
  if (o.maxRequestsPerSocket !== undefined && o.maxRequestsPerSocket > 0) server.maxRequestsPerSocket = o.maxRequestsPerSocket;
  return server;
}

/**
 * Malformed HTTP (bad framing, oversized headers) never becomes a request. Answer with the
 * contract's JSON error shape, unless a response to an earlier request on this socket is still
 * pending: then writing would answer out of order, so just close the connection.
 */
function answerClientError(err: Error & { code?: string }, socket: Socket): void {
  const pending = (socket as Socket & { _httpMessage?: unknown })._httpMessage;
  if (!socket.writable || pending) {
    socket.destroy(err);
    return;
  }
  const response =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? rawErrorResponse(431, 'Request Header Fields Too Large', 'INVALID_ARGUMENT', 'Request headers are too large')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? rawErrorResponse(408, 'Request Timeout', 'INVALID_ARGUMENT', 'The request took too long to arrive')
        : rawErrorResponse(400, 'Bad Request', 'INVALID_ARGUMENT', `Malformed HTTP request (${err.code ?? 'parse error'})`);
  socket.end(response);
}
