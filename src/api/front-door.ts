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
/** Bytes of the only request line taken: `GET /…` then this, then CRLF. */
const HTTP_1_1 = Buffer.from(' HTTP/1.1', 'latin1');
/** RFC 9110 token characters: what a header field name may hold. */
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TOKEN[c.charCodeAt(0)] = 1;
const CR = 0x0d;
const LF = 0x0a;
const TAB = 0x09;
const SPACE = 0x20;

interface Head {
  readonly target: string;
  readonly close: boolean;
}

/**
 * The request head in `data[start, end)` (without its final CRLF CRLF) if it is a GET this door
 * may answer; else null. It reads the bytes in place, without a string per line: the request line
 * `GET /target HTTP/1.1` (target of visible ASCII), then header lines `name:value`, each name an
 * RFC 9110 token and each value visible ASCII, spaces and tabs, exactly one `Host`, `Connection` at
 * most `keep-alive` or `close`, and none of `Content-Length`, `Transfer-Encoding`, `Expect` or
 * `Upgrade`. Exported for tests.
 */
export function parseHead(b: Buffer, start = 0, end = b.length): Head | null {
  if (end - start < 5 || b[start] !== 0x47 || b[start + 1] !== 0x45 || b[start + 2] !== 0x54 || b[start + 3] !== SPACE || b[start + 4] !== 0x2f) return null;
  let p = start + 5;
  while (p < end && b[p]! > SPACE && b[p]! < 0x7f) p++;
  if (p + HTTP_1_1.length > end) return null;
  for (let k = 0; k < HTTP_1_1.length; k++) if (b[p + k] !== HTTP_1_1[k]) return null;
  const target = b.toString('latin1', start + 4, p);
  p += HTTP_1_1.length;
  let lines = 0;
  let hosts = 0;
  let close = false;
  while (p < end) {
    if (b[p] !== CR || b[p + 1] !== LF || ++lines > MAX_HEADER_LINES) return null;
    p += 2;
    const name = p;
    while (p < end && TOKEN[b[p]!] === 1) p++;
    const nameLength = p - name;
    if (nameLength === 0 || p === end || b[p] !== 0x3a) return null;
    const value = ++p;
    for (; p < end && b[p] !== CR; p++) {
      const c = b[p]!;
      if ((c < SPACE && c !== TAB) || c > 0x7e) return null;
    }
    if (spells(b, name, nameLength, 'host')) {
      hosts++;
    } else if (spells(b, name, nameLength, 'connection')) {
      if (valueIs(b, value, p, 'close')) close = true;
      else if (!valueIs(b, value, p, 'keep-alive')) return null;
    } else if (
      spells(b, name, nameLength, 'content-length') ||
      spells(b, name, nameLength, 'transfer-encoding') ||
      spells(b, name, nameLength, 'expect') ||
      spells(b, name, nameLength, 'upgrade')
    ) {
      return null;
    }
  }
  return hosts === 1 ? { target, close } : null;
}

/**
 * Whether `length` bytes at `at` spell `lower` (lower case letters and '-'), in any case: a header
 * field's name, or its value.
 */
function spells(b: Uint8Array, at: number, length: number, lower: string): boolean {
  if (length !== lower.length) return false;
  // Or-ing 0x20 lower-cases A-Z, and only A-Z become a-z that way. It also turns CR into '-', but
  // a name or value never holds a CR (the line ends there).
  for (let k = 0; k < length; k++) if ((b[at + k]! | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

/** Whether the value in `b[at, end)`, without its leading and trailing blanks, is `lower`, in any case. */
function valueIs(b: Uint8Array, at: number, end: number, lower: string): boolean {
  while (at < end && (b[at] === SPACE || b[at] === TAB)) at++;
  while (end > at && (b[end - 1] === SPACE || b[end - 1] === TAB)) end--;
  return spells(b, at, end - at, lower);
}

/** What follows a route's header lines: Date and Connection, as Node's server writes them. */
interface Tails {
  readonly second: number;
  readonly keepAliveS: number;
  readonly keepAlive: string;
  readonly close: string;
}

/** Node's Date header value changes once a second (as Node's server recomputes it). */
function tailsFor(previous: Tails | null, keepAliveS: number): Tails {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (previous !== null && previous.second === second && previous.keepAliveS === keepAliveS) return previous;
  const date = `Date: ${new Date(now).toUTCString()}\r\n`;
  return {
    second,
    keepAliveS,
    keepAlive: `${date}Connection: keep-alive\r\nKeep-Alive: timeout=${keepAliveS}\r\n\r\n`,
    close: `${date}Connection: close\r\n\r\n`,
  };
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

  let tails: Tails | null = null;

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
      const head = end < 0 || end - at > options.maxHeadBytes ? null : parseHead(data, at, end);
      const found = head === null ? null : options.route(head.target);
      if (found === null) {
        stop = 'other';
        break;
      }
      tails = tailsFor(tails, Math.floor(server.keepAliveTimeout / 1000));
      const answered = { headerLines: found.headerLines, tail: head!.close ? tails.close : tails.keepAlive, body: found.body };
      out.push(answered);
      answerBytes += answerLength(answered);
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
      // Nothing is left over in the usual case: one whole request a read.
      const rest = at === data.length ? null : data.subarray(at);
      if (socket.writableNeedDrain) {
        // A client that does not read its answers is not read (nor answered) either until it
        // has caught up; the requests already read wait here, unanswered.
        socket.pause();
        socket.once('drain', () => {
          if (!held.has(socket)) return;
          socket.resume();
          if (rest !== null) serve(socket, rest);
        });
        return;
      }
      if (rest === null) return;
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

/** One answer: a 200 with the route's header lines, then Date and Connection (`tail`), then the body. */
interface Answer {
  readonly headerLines: string;
  readonly tail: string;
  readonly body: Uint8Array;
}

const STATUS_LINE = 'HTTP/1.1 200 OK\r\n';

/** Its bytes on the wire: every string in it is ASCII, one byte a character. */
function answerLength(a: Answer): number {
  return STATUS_LINE.length + a.headerLines.length + a.tail.length + a.body.byteLength;
}

/** Writes answers: as one buffer when their bodies are small, else each head and body apart. */
function write(socket: Socket, out: readonly Answer[]): void {
  if (out.length === 0) return;
  if (out.every((a) => a.body.byteLength < COPY_LIMIT_BYTES)) {
    const buffer = Buffer.allocUnsafe(out.reduce((n, a) => n + answerLength(a), 0));
    let at = 0;
    for (const a of out) {
      at += buffer.write(STATUS_LINE, at, 'latin1');
      at += buffer.write(a.headerLines, at, 'latin1');
      at += buffer.write(a.tail, at, 'latin1');
      buffer.set(a.body, at);
      at += a.body.byteLength;
    }
    socket.write(buffer);
    return;
  }
  socket.cork();
  for (const a of out) {
    socket.write(STATUS_LINE + a.headerLines + a.tail, 'latin1');
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
