import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * A front door on the client port for the one request that is all hot path: a plain GET that a
 * `FastRoute` can answer from memory (a stale read). Node's HTTP server costs about as much CPU
 * per request as everything else such a read does: an IncomingMessage and a ServerResponse,
 * llhttp's callbacks into JS, two streams' bookkeeping and a timer reset per request. On this
 * machine a bare node:http server answered ~50,000 such GETs a second on one core; a bare socket
 * answering them from its own 'data' event, ~84,000.
 *
 * So each new connection starts here. While its requests are complete GET heads (one or more in a
 * chunk) that the route takes, they are answered here, in order, with the bytes Node's server
 * would write. The first thing that is anything else, or that is not whole in the chunk, ends the
 * front door's part for good: the bytes not yet answered and the socket go to Node's HTTP server,
 * exactly as if it had accepted the connection itself (its 'connection' listeners, which set up
 * the parser, timeouts and everything else), and Fastify answers from then on. Anything this
 * does not fully recognize is passed on, never refused: a malformed, oversized or partial head,
 * another method or version, a body, `Expect`, `Upgrade`, an unusual `Connection`, a missing or
 * repeated `Host`. Node and Fastify answer those as they always did.
 *
 * What it keeps from Node's server: the keep-alive timeout (an idle connection closes), half-close
 * (a client's FIN ends the connection, as `allowHalfOpen` servers must), back-pressure (a client
 * that does not read its answers stops being read), and shutdown (close() and closeIdleConnections()
 * close the connections held here, which are idle whenever JS runs, as Node's server does its own).
 */

/** What a route answers: a 200 whose header lines (each ending CRLF) precede Date and Connection. */
export interface FastAnswer {
  readonly headerLines: string;
  readonly body: Uint8Array;
}

/** Answers a GET of the request target (path and query, raw), or returns null to pass it on. */
export type FastRoute = (target: string) => FastAnswer | null;

export interface FrontDoorOptions {
  readonly route: FastRoute;
  /** Heads longer than this go to Node's server (which answers 431 beyond its own limit). */
  readonly maxHeadBytes: number;
  /** While true, every connection goes straight to Node's server. */
  readonly passAll: () => boolean;
}

const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** A read with more header lines than this is unusual: Node's server gets it (and the connection). */
const MAX_HEADER_LINES = 64;
/**
 * At most this many bytes of answers are written at once. A client that pipelines more waits for
 * the rest until the socket has taken these (at once, unless the client is not reading).
 */
const MAX_ANSWER_BYTES_PER_CHUNK = 1024 * 1024;
/** A body at least this large is written after the head rather than copied next to it. */
const COPY_LIMIT_BYTES = 16 * 1024;
const REQUEST_LINE = /^GET (\/[!-~]*) HTTP\/1\.1$/;
/** RFC 9110 field name (token), colon, then a value of visible ASCII, spaces and tabs only. */
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t\x20-\x7e]*)$/;

interface Head {
  readonly target: string;
  readonly close: boolean;
}

/**
 * The request head (without its final CRLF CRLF) if it is a GET this door may answer; else null.
 * Exported for tests.
 */
export function parseHead(text: string): Head | null {
  const lines = text.split('\r\n');
  if (lines.length > MAX_HEADER_LINES + 1) return null;
  const first = REQUEST_LINE.exec(lines[0]!);
  if (first === null) return null;
  let hosts = 0;
  let close = false;
  for (let i = 1; i < lines.length; i++) {
    const field = HEADER_LINE.exec(lines[i]!);
    if (field === null) return null;
    const name = field[1]!.toLowerCase();
    if (name === 'host') {
      hosts++;
    } else if (name === 'connection') {
      const value = field[2]!.trim().toLowerCase();
      if (value === 'close') close = true;
      else if (value !== 'keep-alive') return null;
    } else if (name === 'content-length' || name === 'transfer-encoding' || name === 'expect' || name === 'upgrade') {
      return null;
    }
  }
  if (hosts !== 1) return null;
  return { target: first[1]!, close };
}

/** Node's Date header value, recomputed at most once a second (as Node's server does). */
let dateSecond = -1;
let dateValue = '';
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

/**
 * Puts the front door on `server`, a node:http server that is not listening yet: the server's own
 * 'connection' listeners run only for connections handed over.
 */
export function installFrontDoor(server: Server, options: FrontDoorOptions): void {
  const nodeListeners = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  /** Connections the front door holds, each with the listeners it added (removed at hand-over). */
  const held = new Map<Socket, readonly (readonly [event: string, listener: (arg: Buffer) => void])[]>();

  const release = (socket: Socket): void => {
    const listeners = held.get(socket);
    if (listeners === undefined) return;
    held.delete(socket);
    for (const [event, listener] of listeners) socket.removeListener(event, listener);
  };

  const handOver = (socket: Socket, unanswered: Buffer | null): void => {
    release(socket);
    socket.setTimeout(0);
    for (const listener of nodeListeners) listener.call(server, socket);
    // Node's server now reads the socket itself; the bytes already read go to it first, in order.
    if (unanswered !== null && unanswered.length > 0) socket.emit('data', unanswered);
  };

  const keepAliveLine = (): string => `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(server.keepAliveTimeout / 1000)}\r\n\r\n`;

  /** What one pass over read bytes did: answered up to `at`, and why it stopped there. */
  type Stop = 'all' | 'bound' | 'close' | 'other';

  /** Answers the door's requests at the start of `data` (at most a bound's worth) and writes them. */
  const answer = (socket: Socket, data: Buffer): { at: number; stop: Stop } => {
    const out: Answer[] = [];
    let at = 0;
    let stop: Stop = 'all';
    let answerBytes = 0;
    while (at < data.length) {
      if (answerBytes >= MAX_ANSWER_BYTES_PER_CHUNK) {
        stop = 'bound';
        break;
      }
      const end = data.indexOf(HEAD_END, at);
      const head = end < 0 || end - at > options.maxHeadBytes ? null : parseHead(data.toString('latin1', at, end));
      const found = head === null ? null : options.route(head.target);
      if (found === null) {
        stop = 'other';
        break;
      }
      const status = `HTTP/1.1 200 OK\r\n${found.headerLines}Date: ${httpDate()}\r\n${head!.close ? 'Connection: close\r\n\r\n' : keepAliveLine()}`;
      out.push({ status, body: found.body });
      answerBytes += status.length + found.body.byteLength;
      at = end + HEAD_END.length;
      if (head!.close) {
        stop = 'close';
        break;
      }
    }
    write(socket, out);
    return { at, stop };
  };

  /** Serves read bytes: answers what the door takes, waits for a slow reader, hands over the rest. */
  const serve = (socket: Socket, read: Buffer): void => {
    let data = read;
    for (;;) {
      if (options.passAll()) {
        handOver(socket, data);
        return;
      }
      const { at, stop } = answer(socket, data);
      if (stop === 'close') {
        // As Node's server does after a `Connection: close` request: nothing more is read.
        release(socket);
        endAfterAnswers(socket);
        return;
      }
      if (stop === 'other') {
        handOver(socket, at === 0 ? data : data.subarray(at));
        return;
      }
      const rest = data.subarray(at);
      if (socket.writableNeedDrain) {
        // A client that does not read its answers is not read (nor answered) either until it
        // has caught up; the requests already read wait here, unanswered.
        socket.pause();
        socket.once('drain', () => {
          if (!held.has(socket)) return;
          socket.resume();
          if (rest.length > 0) serve(socket, rest);
        });
        return;
      }
      if (rest.length === 0) return;
      data = rest;
    }
  };

  const accept = (socket: Socket): void => {
    if (options.passAll()) {
      handOver(socket, null);
      return;
    }
    const onData = (chunk: Buffer): void => {
      serve(socket, chunk);
    };
    const onError = (): void => {
      socket.destroy();
    };
    // allowHalfOpen (as Node's server sets it): a client that is done sending ends the connection.
    const onEnd = (): void => {
      socket.end();
    };
    const onTimeout = (): void => {
      socket.destroy();
    };
    const onClose = (): void => {
      held.delete(socket);
    };
    const listeners: readonly (readonly [string, (arg: Buffer) => void])[] = [
      ['data', onData],
      ['error', onError],
      ['end', onEnd],
      ['timeout', onTimeout],
      ['close', onClose],
    ];
    held.set(socket, listeners);
    for (const [event, listener] of listeners) socket.on(event, listener);
    if (server.keepAliveTimeout > 0) socket.setTimeout(server.keepAliveTimeout);
  };
  server.on('connection', accept);

  // Node's server closes the idle connections it knows when it closes (and on request); those
  // held here are idle too, between requests, whenever JS runs. One whose answers are still
  // being written gets its end after them (the keep-alive timer cuts off a client that never
  // reads); the others close at once. closeAllConnections() closes them all at once.
  const closeHeld = (force: boolean): void => {
    for (const socket of [...held.keys()]) {
      release(socket);
      if (force || socket.writableLength === 0) socket.destroy();
      else endAfterAnswers(socket);
    }
  };
  for (const method of ['close', 'closeIdleConnections', 'closeAllConnections'] as const) {
    const original = server[method] as (...args: unknown[]) => unknown;
    Object.defineProperty(server, method, {
      configurable: true,
      writable: true,
      value(this: Server, ...args: unknown[]) {
        closeHeld(method === 'closeAllConnections');
        return original.apply(this, args);
      },
    });
  }
}

function ignore(): void {}

/** One answer: its status line and headers (latin1), and its body. */
interface Answer {
  readonly status: string;
  readonly body: Uint8Array;
}

/** Writes answers: as one buffer when their bodies are small, else each head and body apart. */
function write(socket: Socket, out: readonly Answer[]): void {
  if (out.length === 0) return;
  if (out.every((a) => a.body.byteLength < COPY_LIMIT_BYTES)) {
    const buffer = Buffer.allocUnsafe(out.reduce((n, a) => n + a.status.length + a.body.byteLength, 0));
    let at = 0;
    for (const a of out) {
      at += buffer.write(a.status, at, 'latin1');
      buffer.set(a.body, at);
      at += a.body.byteLength;
    }
    socket.write(buffer);
    return;
  }
  socket.cork();
  for (const a of out) {
    socket.write(a.status, 'latin1');
    if (a.body.byteLength > 0) socket.write(a.body);
  }
  socket.uncork();
}

/**
 * Ends a connection the door has let go of once its answers are written; a reader that never
 * takes them is cut off by the keep-alive timer, which keeps running.
 */
function endAfterAnswers(socket: Socket): void {
  socket.on('error', ignore);
  socket.on('timeout', () => socket.destroy());
  socket.end();
}
