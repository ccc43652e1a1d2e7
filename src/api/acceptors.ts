import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type ServerOpts, type Socket } from 'node:net';

/**
 * More than one accept per turn of the event loop on a listening port.
 *
 * libuv 1.46, which Node 20 ships, accepts one connection per turn of the event loop for each
 * listening descriptor (libuv pull request #3696: it relies on level-triggered polling to hear of
 * the next one). On a busy member a turn takes milliseconds, so when hundreds of clients connect
 * at once (a load generator starting, or every client of a failed leader reconnecting to the new
 * one) the last of them wait hundreds of milliseconds for their first answer. Node 22.12's
 * `reusePort` would give several listening sockets; Node 20 has another way, the one its cluster
 * module uses: a listening socket sent over IPC arrives as a new descriptor for the same socket.
 *
 * So a short-lived helper process is sent the server's handle and sends it back `count` times.
 * Each copy is one more descriptor of the same listening socket in our event loop, so a turn
 * accepts up to 1 + count connections. A connection accepted on a copy is handed to the server
 * with its own 'connection' event, as if the server had accepted it. The helper never listens:
 * it passes the raw handle on without opening it, so it cannot take a connection itself. It
 * exits once the copies are sent (or if it cannot send them within a few seconds); should it
 * fail, the server keeps its one descriptor and serves as before.
 */
export interface ExtraAcceptors {
  /** Resolves with how many copies are accepting once the helper is done (0 if it failed). */
  readonly ready: Promise<number>;
  /** Stops accepting on the copies (the server's own descriptor is the server's to close). */
  close(): Promise<void>;
}

/** The helper: receives the raw listening handle and sends it back `count` times, then leaves. */
const HELPER = `
process.once('message', (count, handle) => {
  let left = count;
  const next = (err) => {
    if (err || left-- <= 0 || !process.connected) { if (process.connected) process.disconnect(); return; }
    process.send('acceptor', handle, next);
  };
  next();
});
process.once('disconnect', () => process.exit(0));
`;

/** How long the helper may take before it is killed and the server keeps its one descriptor. */
const HELPER_TIMEOUT_MS = 5_000;

export function addAcceptors(server: Server, count: number, onError: (err: Error) => void = () => {}): ExtraAcceptors {
  const copies: Server[] = [];
  let closed = false;
  let helper: ChildProcess | null = null;
  const handle = (server as unknown as { _handle?: object | null })._handle;

  const ready = new Promise<number>((resolve) => {
    if (count <= 0 || !handle) {
      resolve(0);
      return;
    }
    let failure: Error | undefined;
    let done = false;
    const settle = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      helper = null;
      if (failure) onError(failure);
      resolve(copies.length);
    };
    const timer = setTimeout(() => {
      failure ??= new Error(`the acceptor helper sent ${copies.length} of ${count} copies in ${HELPER_TIMEOUT_MS} ms`);
      helper?.kill('SIGKILL');
    }, HELPER_TIMEOUT_MS);
    timer.unref();
    let child: ChildProcess;
    try {
      // NODE_OPTIONS is the embedding program's business (preloads, inspectors), not the helper's.
      const env = { ...process.env };
      delete env.NODE_OPTIONS;
      child = helper = spawn(process.execPath, ['-e', HELPER], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'], env });
    } catch (err) {
      failure = err as Error;
      settle();
      return;
    }
    // Done once the helper has exited (its descriptor of the socket is closed: a helper still
    // holding one would keep the port bound after the server closes) and its channel is closed
    // (every message it sent has been read).
    let exited = false;
    let disconnected = false;
    const maybeDone = (): void => {
      if (!exited || !disconnected) return;
      if (copies.length < count) failure ??= new Error(`the acceptor helper left after sending ${copies.length} of ${count} copies`);
      settle();
    };
    child.on('exit', () => {
      exited = true;
      maybeDone();
    });
    child.on('disconnect', () => {
      disconnected = true;
      maybeDone();
    });
    child.on('error', (err) => {
      failure ??= err;
      if (child.pid === undefined) settle(); // never started: no exit or disconnect will follow
    });
    child.on('message', (_message: unknown, copy: unknown) => {
      if (copy === undefined) return;
      if (done || closed || copies.length >= count) {
        // Not wanted: close it, or the port would stay bound after the server closes.
        (copy as { close?: () => void }).close?.();
        return;
      }
      // A copy makes its sockets as the server would: a node:http server's are half-open (HTTP
      // decides itself what a client's FIN means) and have no delay.
      const accepting = createServer(socketOptionsOf(server), (socket: Socket) => server.emit('connection', socket));
      accepting.on('error', (err) => onError(err));
      accepting.listen(copy as Parameters<Server['listen']>[0]);
      copies.push(accepting);
    });
    child.send(count, handle as Parameters<ChildProcess['send']>[1], (err) => {
      if (err) {
        failure ??= err;
        child.kill('SIGKILL');
      }
    });
  });

  return {
    ready,
    async close(): Promise<void> {
      closed = true;
      helper?.kill('SIGKILL');
      await ready;
      // Stop accepting; the connections a copy accepted are the HTTP server's, which closes them
      // (a close callback here would wait for the last of them, and for a keep-alive client that
      // can be a long time). net.Server closes its descriptor in the loop's closing phase, which
      // has run once two check phases have passed: the port is then free of the copies.
      for (const copy of copies.splice(0)) copy.close();
      await new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));
    },
  };
}

/** The options net.Server applies to each socket it accepts, as `server` has them. */
function socketOptionsOf(server: Server): ServerOpts {
  const own = server as unknown as {
    allowHalfOpen?: boolean;
    pauseOnConnect?: boolean;
    noDelay?: boolean;
    keepAlive?: boolean;
    keepAliveInitialDelay?: number;
    highWaterMark?: number;
  };
  return {
    allowHalfOpen: own.allowHalfOpen ?? false,
    pauseOnConnect: own.pauseOnConnect ?? false,
    noDelay: own.noDelay ?? false,
    keepAlive: own.keepAlive ?? false,
    keepAliveInitialDelay: (own.keepAliveInitialDelay ?? 0) * 1000, // net.Server keeps it in seconds
    ...(own.highWaterMark !== undefined ? { highWaterMark: own.highWaterMark } : {}),
  };
}
