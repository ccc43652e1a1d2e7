import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { addAcceptors, type ExtraAcceptors } from '../../src/api/acceptors.js';

const HOST = '127.0.0.1';
const started: { server: Server; extra: ExtraAcceptors | null; clients: Socket[] }[] = [];

afterEach(async () => {
  for (const { server, extra, clients } of started.splice(0)) {
    for (const c of clients) c.destroy();
    await extra?.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

function listen(server: Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => resolve((server.address() as { port: number }).port));
  });
}

interface Serving {
  readonly server: Server;
  readonly port: number;
  readonly extra: ExtraAcceptors | null;
  readonly clients: Socket[];
}

/** Listens on a free port and, with copies > 0, adds that many acceptors (checked ready); closed after each test. */
async function serve(server: Server, copies: number, onError?: (err: Error) => void): Promise<Serving> {
  const entry = { server, extra: null as ExtraAcceptors | null, clients: [] as Socket[] };
  started.push(entry);
  const port = await listen(server);
  if (copies > 0) {
    entry.extra = addAcceptors(server, copies, onError);
    expect(await entry.extra.ready).toBe(copies);
  }
  return { ...entry, port };
}

/**
 * Connects `n` clients while the event loop is held, so that every connection is waiting in the
 * listening socket's queue when the loop next polls; returns, for each connection the server
 * accepted, the turn of the event loop it was accepted in.
 */
async function acceptTurns(server: Server, port: number, n: number, clients: Socket[], keepOpen = false): Promise<number[]> {
  const turns: number[] = [];
  let turn = 0;
  let counting = true;
  const count = (): void => {
    turn++;
    if (counting) setImmediate(count);
  };
  const all = new Promise<void>((resolve) => {
    server.on('connection', (socket: Socket) => {
      turns.push(turn);
      if (keepOpen) clients.push(socket);
      else socket.destroy();
      if (turns.length === n) resolve();
    });
  });
  for (let i = 0; i < n; i++) clients.push(connect(port, HOST).on('error', () => {}));
  // net.connect issues its connect() on the next tick; this tick, queued after those, holds the
  // loop while the kernel completes the handshakes (loopback needs no help from this process).
  process.nextTick(() => {
    const until = Date.now() + 150;
    while (Date.now() < until) {
      // hold the loop
    }
    setImmediate(count);
  });
  await all;
  counting = false;
  return turns;
}

function mostPerTurn(turns: number[]): number {
  const perTurn = new Map<number, number>();
  for (const t of turns) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
  return Math.max(...perTurn.values());
}

describe('addAcceptors', () => {
  test('with three copies, one turn of the event loop accepts four waiting connections', async () => {
    const { server, port, clients } = await serve(createServer(), 3, (err) => {
      throw err;
    });
    const turns = await acceptTurns(server, port, 16, clients);
    expect(turns).toHaveLength(16);
    expect(mostPerTurn(turns)).toBe(4);
  });

  test('without copies, libuv accepts one connection per turn (what the copies are for)', async () => {
    const { server, port, clients } = await serve(createServer(), 0);
    const turns = await acceptTurns(server, port, 8, clients);
    expect(mostPerTurn(turns)).toBe(1);
  });

  test('a connection accepted on a copy is served like any other', async () => {
    const { port, clients } = await serve(createServer((socket) => socket.end('hello')), 2);
    const replies = await Promise.all(
      Array.from({ length: 12 }, () =>
        new Promise<string>((resolve, reject) => {
          let text = '';
          const c = connect(port, HOST);
          clients.push(c);
          c.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve(text)).on('error', reject);
        }),
      ),
    );
    expect(replies).toEqual(Array(12).fill('hello'));
  });

  test('a copy makes its sockets as the server does (node:http: half-open allowed)', async () => {
    // node:http decides itself what a client's FIN means, so its sockets must not end their
    // writing side on their own: net.Server makes them with allowHalfOpen, and so must a copy.
    const server = createHttpServer();
    const halfOpen: boolean[] = [];
    server.on('connection', (socket: Socket) => halfOpen.push(socket.allowHalfOpen));
    const { port, clients } = await serve(server, 3);
    expect(mostPerTurn(await acceptTurns(server, port, 8, clients))).toBe(4); // copies took some
    expect(halfOpen).toEqual(Array(8).fill(true));
  });

  test('closing the copies does not wait for the connections they accepted', async () => {
    const { server, port, extra, clients } = await serve(createServer(), 3);
    // Eight connections in one burst: the copies accept most of them; all stay open.
    expect(mostPerTurn(await acceptTurns(server, port, 8, clients, true))).toBe(4);
    const closing = extra!.close().then(() => 'closed');
    const waited = new Promise((resolve) => setTimeout(() => resolve('still waiting'), 2000).unref());
    expect(await Promise.race([closing, waited])).toBe('closed');
  });

  test('once the server and the copies are closed the port is free again', async () => {
    const server = createServer();
    const port = await listen(server);
    const extra = addAcceptors(server, 3);
    expect(await extra.ready).toBe(3);
    await extra.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    // A copy left open would keep the socket listening, and this listen would fail with EADDRINUSE.
    const again = createServer();
    started.push({ server: again, extra: null, clients: [] });
    expect(await listen(again, port)).toBe(port);
  });

  test('no copies asked for, or no listening handle: nothing is started', async () => {
    const server = createServer();
    expect(await addAcceptors(server, 3).ready).toBe(0); // not listening yet
    started.push({ server, extra: null, clients: [] });
    await listen(server);
    expect(await addAcceptors(server, 0).ready).toBe(0);
  });
});
