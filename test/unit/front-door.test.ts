import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { installFrontDoor, parseHead } from '../../src/api/front-door.js';
import type { FastAnswer } from '../../src/api/front-door.js';

// The client port's front door (src/api/front-door.ts) answers plain GETs a route takes straight
// from the socket and hands everything else, with the connection, to Node's HTTP server. These
// tests put it on a bare node:http server over real sockets: what the door answers, what Node
// answers after a hand-over, and that nothing is lost, reordered or left open on the way.

describe('parseHead', () => {
  const head = (lines: string[]) => Buffer.from(lines.join('\r\n'), 'latin1');

  test('takes a GET with one Host and ordinary headers', () => {
    expect(parseHead(head(['GET /v1/kv/a?consistency=stale HTTP/1.1', 'Host: x']))).toEqual({ target: '/v1/kv/a?consistency=stale', close: false });
    expect(parseHead(head(['GET /a HTTP/1.1', 'host:x', 'User-Agent: curl/8.0', 'Accept: */*', 'Connection: Keep-Alive']))).toEqual({ target: '/a', close: false });
    expect(parseHead(head(['GET /a HTTP/1.1', 'Host: x', 'Connection:  close \t']))).toEqual({ target: '/a', close: true });
    // Names are whole tokens: these only start like ones the door refuses.
    expect(parseHead(head(['GET / HTTP/1.1', 'HOST: x', 'Content-Lengthy: 1', 'Upgraded: no']))).toEqual({ target: '/', close: false });
  });

  test.each([
    ['another method', ['HEAD /a HTTP/1.1', 'Host: x']],
    ['HTTP/1.0', ['GET /a HTTP/1.0', 'Host: x']],
    ['an absolute target', ['GET http://x/a HTTP/1.1', 'Host: x']],
    ['a space in the target', ['GET /a b HTTP/1.1', 'Host: x']],
    ['no Host', ['GET /a HTTP/1.1', 'Accept: */*']],
    ['two Hosts', ['GET /a HTTP/1.1', 'Host: x', 'Host: y']],
    ['a body (Content-Length)', ['GET /a HTTP/1.1', 'Host: x', 'Content-Length: 0']],
    ['a body (Transfer-Encoding)', ['GET /a HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked']],
    ['Expect', ['GET /a HTTP/1.1', 'Host: x', 'Expect: 100-continue']],
    ['Upgrade', ['GET /a HTTP/1.1', 'Host: x', 'Upgrade: websocket']],
    ['an unusual Connection', ['GET /a HTTP/1.1', 'Host: x', 'Connection: Upgrade']],
    ['a folded header line', ['GET /a HTTP/1.1', 'Host: x', 'X-A: 1', ' 2']],
    ['a space before the colon', ['GET /a HTTP/1.1', 'Host : x']],
    ['a bare LF inside a line', ['GET /a HTTP/1.1', 'Host: x\nX-B: 1']],
    ['a control character', ['GET /a HTTP/1.1', 'Host: x\x01']],
    ['a byte above ASCII', ['GET /a HTTP/1.1', 'Host: x\xe9']],
    ['an empty header line', ['GET /a HTTP/1.1', '', 'Host: x']],
    ['too many header lines', ['GET /a HTTP/1.1', 'Host: x', ...Array.from({ length: 64 }, (_, i) => `X-${i}: 1`)]],
    ['a DEL character', ['GET /a HTTP/1.1', 'Host: x\x7f']],
    ['a bare CR ending a line', ['GET /a HTTP/1.1', 'Host: x\r']],
    ['a name that only starts like Host', ['GET /a HTTP/1.1', 'Hostx: x']],
    ['no header lines at all', ['GET /a HTTP/1.1']],
    ['two spaces before the version', ['GET /a  HTTP/1.1', 'Host: x']],
    ['bytes after the version', ['GET /a HTTP/1.1x', 'Host: x']],
  ])('passes on %s', (_what, lines) => {
    expect(parseHead(head(lines))).toBeNull();
  });

  test('reads the head where it lies in a larger buffer', () => {
    const data = Buffer.from('GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nhOST: b\r\nCONNECTION: Close\r\n\r\n', 'latin1');
    const second = data.indexOf('GET /y');
    expect(parseHead(data, 0, data.indexOf('\r\n\r\n'))).toEqual({ target: '/x', close: false });
    expect(parseHead(data, second, data.indexOf('\r\n\r\n', second))).toEqual({ target: '/y', close: true });
  });

  test('agrees with the same rules applied line by line to text, on random heads', () => {
    // The rules as plain string work: split the head into lines and match each.
    const reference = (text: string): { target: string; close: boolean } | null => {
      const lines = text.split('\r\n');
      if (lines.length > 65) return null;
      const first = /^GET (\/[!-~]*) HTTP\/1\.1$/.exec(lines[0]!);
      if (first === null) return null;
      let hosts = 0;
      let close = false;
      for (const line of lines.slice(1)) {
        const field = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t\x20-\x7e]*)$/.exec(line);
        if (field === null) return null;
        const name = field[1]!.toLowerCase();
        const value = field[2]!.replace(/^[ \t]+|[ \t]+$/g, '').toLowerCase();
        if (name === 'host') hosts++;
        else if (name === 'connection' && value === 'close') close = true;
        else if (name === 'connection' && value !== 'keep-alive') return null;
        else if (['content-length', 'transfer-encoding', 'expect', 'upgrade'].includes(name)) return null;
      }
      return hosts === 1 ? { target: first[1]!, close } : null;
    };
    const parts = ['GET', ' ', '/', 'a', '?', 'HTTP/1.1', '\r\n', ':', ': ', 'Host', 'host', 'HOST', 'Connection', 'close', 'Keep-Alive', '\t', '\r', '\n', '\x00', '\x7f', '\xe9', 'Upgrade', 'Expect', '-', 'Content-Length', 'Transfer-Encoding'];
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return Math.floor((seed / 2147483648) * n);
    };
    let compared = 0;
    let taken = 0;
    for (let i = 0; i < 20_000; i++) {
      let text = random(2) === 0 ? 'GET /a HTTP/1.1\r\nHost: x' : '';
      for (let n = 1 + random(10); n > 0; n--) text += parts[random(parts.length)];
      if (text.includes('\r\n\r\n') || text.endsWith('\r') || text.startsWith('\n')) continue; // not one whole head
      compared++;
      const expected = reference(text);
      if (expected !== null) taken++;
      expect(parseHead(head([text])), JSON.stringify(text)).toEqual(expected);
    }
    expect(compared).toBeGreaterThan(10_000);
    expect(taken).toBeGreaterThan(100); // the comparison covers heads the door takes, not only refusals
  });
});

/** A node:http server with the door in front: `/fast/N` is the door's; Node answers the rest. */
class DoorServer {
  readonly server: Server;
  readonly routed: string[] = [];
  readonly nodeSaw: string[] = [];
  fastBody: Buffer = Buffer.from('fast');
  passAll = false;

  constructor() {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        this.nodeSaw.push(`${req.method} ${req.url} ${body.length}`);
        const text = `node ${req.method} ${req.url} ${body.length} ${body.subarray(0, 16).toString('latin1')}`;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(text)) });
        res.end(text);
      });
    });
    installFrontDoor(this.server, {
      route: (target): FastAnswer | null => {
        if (!target.startsWith('/fast/')) return null;
        this.routed.push(target);
        return { headerLines: `x-target: ${target}\r\ncontent-length: ${this.fastBody.length}\r\n`, body: this.fastBody };
      },
      maxHeadBytes: 1024,
      passAll: () => this.passAll,
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }
}

let door: DoorServer;
let port = 0;
const sockets: Socket[] = [];

async function start(setup?: (d: DoorServer) => void): Promise<void> {
  door = new DoorServer();
  setup?.(door);
  port = await door.listen();
}

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  if (door === undefined || !door.server.listening) return;
  door.server.closeAllConnections();
  await new Promise((resolve) => door.server.close(resolve));
});

function open(): Socket {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  socket.on('error', () => undefined);
  return socket;
}

const get = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

interface Response {
  readonly head: string;
  readonly body: Buffer;
}

/** Reads `count` responses (each with a content-length) off the socket, in order. */
function responses(socket: Socket, count: number, timeoutMs = 5000): Promise<Response[]> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const found: Response[] = [];
    const timer = setTimeout(() => reject(new Error(`only ${found.length} of ${count} responses in ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) break;
        const head = buffered.toString('latin1', 0, end);
        const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) break;
        found.push({ head, body: buffered.subarray(end + 4, end + 4 + length) });
        buffered = buffered.subarray(end + 4 + length);
      }
      if (found.length >= count) {
        clearTimeout(timer);
        socket.removeListener('data', onData);
        resolve(found);
      }
    };
    socket.on('data', onData);
  });
}

function ended(socket: Socket, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not end the connection in ${timeoutMs} ms`)), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.resume();
  });
}

const bodies = (rs: Response[]) => rs.map((r) => r.body.toString('latin1'));

describe('the front door over real sockets', () => {
  test('answers its GETs with the status line and headers Node would write, keep-alive', async () => {
    await start();
    const socket = open();
    socket.write(get('/fast/1'));
    const [r] = await responses(socket, 1);
    expect(r!.head).toMatch(/^HTTP\/1\.1 200 OK\r\nx-target: \/fast\/1\r\ncontent-length: 4\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5$/);
    expect(r!.body.toString()).toBe('fast');
    // The same connection keeps being answered by the door.
    socket.write(get('/fast/2'));
    expect(bodies(await responses(socket, 1))).toEqual(['fast']);
    expect(door.routed).toEqual(['/fast/1', '/fast/2']);
    expect(door.nodeSaw).toEqual([]);
  });

  test('pipelined requests: the door answers its run, Node the rest, in order, bodies intact', async () => {
    await start();
    const socket = open();
    const put = 'PUT /v/k HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789';
    socket.write(get('/fast/1') + get('/fast/2') + get('/fast/3') + put + get('/fast/4') + get('/other'));
    const rs = await responses(socket, 6);
    expect(bodies(rs)).toEqual(['fast', 'fast', 'fast', 'node PUT /v/k 10 0123456789', 'node GET /fast/4 0 ', 'node GET /other 0 ']);
    // Once Node has the connection it keeps it: a later door-shaped GET is Node's too.
    socket.write(get('/fast/5'));
    expect(bodies(await responses(socket, 1))).toEqual(['node GET /fast/5 0 ']);
    expect(door.routed).toEqual(['/fast/1', '/fast/2', '/fast/3']);
  });

  test('a body that continues in later chunks reaches Node whole', async () => {
    await start();
    const socket = open();
    socket.write(`${get('/fast/1')}PUT /v/k HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\nAAAAAAAAAA`);
    const first = await responses(socket, 1);
    expect(bodies(first)).toEqual(['fast']);
    socket.write('BBBBBBBBBB');
    expect(bodies(await responses(socket, 1))).toEqual(['node PUT /v/k 20 AAAAAAAAAABBBBBB']);
  });

  test('a head split across chunks goes to Node, which answers it', async () => {
    await start();
    const socket = open();
    const request = get('/fast/1');
    socket.write(request.slice(0, 20));
    await new Promise((r) => setTimeout(r, 50));
    socket.write(request.slice(20));
    expect(bodies(await responses(socket, 1))).toEqual(['node GET /fast/1 0 ']);
    expect(door.routed).toEqual([]);
  });

  test('what the door does not recognize is answered by Node (malformed, HTTP/1.0, too long)', async () => {
    await start();
    const malformed = open();
    malformed.write(`${get('/fast/1')}BLAH\r\n\r\n`);
    const rs = await responses(malformed, 2);
    expect(rs[0]!.body.toString()).toBe('fast');
    expect(rs[1]!.head).toMatch(/^HTTP\/1\.1 400 Bad Request/);
    await ended(malformed);

    const old = open();
    old.write('GET /fast/2 HTTP/1.0\r\nHost: x\r\n\r\n');
    expect(bodies(await responses(old, 1))).toEqual(['node GET /fast/2 0 ']);

    const long = open();
    long.write(get('/fast/3', `X-Long: ${'a'.repeat(2000)}\r\n`));
    expect(bodies(await responses(long, 1))).toEqual(['node GET /fast/3 0 ']);
    expect(door.routed).toEqual(['/fast/1']);
  });

  test('Connection: close is answered with Connection: close, and the door ends the connection', async () => {
    await start();
    const socket = open();
    socket.write(get('/fast/1', 'Connection: close\r\n') + get('/fast/2'));
    const [r] = await responses(socket, 1);
    expect(r!.head).toMatch(/\r\nConnection: close$/);
    await ended(socket);
    expect(door.routed).toEqual(['/fast/1']);
  });

  test('a client that half-closes gets its answer and the end of the connection', async () => {
    await start();
    const socket = open();
    socket.end(get('/fast/1'));
    expect(bodies(await responses(socket, 1))).toEqual(['fast']);
    await ended(socket);
  });

  test('an idle connection is closed after the server keep-alive timeout', async () => {
    await start((d) => {
      d.server.keepAliveTimeout = 200;
    });
    const socket = open();
    socket.write(get('/fast/1'));
    const [r] = await responses(socket, 1);
    expect(r!.head).toMatch(/\r\nKeep-Alive: timeout=0$/);
    await ended(socket, 5000);
  });

  test('close() ends the idle connections the door holds instead of waiting for them', async () => {
    await start();
    const socket = open();
    socket.write(get('/fast/1'));
    await responses(socket, 1);
    const closed = new Promise((resolve) => door.server.close(resolve));
    await ended(socket);
    await closed;
  });

  test('while passAll() holds, new data and new connections go to Node', async () => {
    await start();
    const held = open();
    held.write(get('/fast/1'));
    expect(bodies(await responses(held, 1))).toEqual(['fast']);
    door.passAll = true;
    held.write(get('/fast/2'));
    expect(bodies(await responses(held, 1))).toEqual(['node GET /fast/2 0 ']);
    const fresh = open();
    fresh.write(get('/fast/3'));
    expect(bodies(await responses(fresh, 1))).toEqual(['node GET /fast/3 0 ']);
    expect(door.routed).toEqual(['/fast/1']);
  });

  test('a pipelined burst past the per-write bound is answered whole and in order', async () => {
    await start((d) => {
      d.fastBody = Buffer.alloc(64 * 1024, 0x66);
    });
    const socket = open();
    const count = 48; // 3 MiB of answers to one write
    socket.write(Array.from({ length: count }, (_, i) => get(`/fast/${i}`)).join(''));
    const rs = await responses(socket, count, 10_000);
    expect(rs.map((r) => /x-target: (\S+)/.exec(r.head)?.[1])).toEqual(Array.from({ length: count }, (_, i) => `/fast/${i}`));
    expect(rs.every((r) => r.body.length === 64 * 1024)).toBe(true);
    expect(door.nodeSaw).toEqual([]);
  });

  test('a client that does not read its answers stops being read, then gets them all', async () => {
    await start((d) => {
      d.fastBody = Buffer.alloc(256 * 1024, 0x62);
    });
    const socket = open();
    socket.pause();
    // 75 MiB of answers: more than loopback's socket buffers hold (the receiver's grows to 32 MiB).
    const count = 300;
    for (let i = 0; i < count; i++) {
      socket.write(get(`/fast/${i}`));
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 300));
    const answeredWhileNotReading = door.routed.length;
    expect(answeredWhileNotReading).toBeLessThan(count);
    socket.resume();
    const rs = await responses(socket, count, 20_000);
    expect(rs.map((r) => /x-target: (\S+)/.exec(r.head)?.[1])).toEqual(Array.from({ length: count }, (_, i) => `/fast/${i}`));
    expect(rs.every((r) => r.body.length === 256 * 1024)).toBe(true);
    expect(door.nodeSaw).toEqual([]);
  });
});
