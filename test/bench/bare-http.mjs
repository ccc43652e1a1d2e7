// What node:http alone answers for a read: a bare node:http server, one thread, that answers every
// GET with a 200 and a 100-byte body, as a stale read of a 100-byte value does. No routing, no
// lookup, no logging: the most any read path through Node's HTTP server could reach on this
// machine, loaded by the same generator. flotilla's stale reads mostly skip node:http (they are
// answered from the socket: src/api/front-door.ts), so they can pass this figure.
//
//   node test/bench/bare-http.mjs PORT      prints "listening PORT" once it is ready
import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? 0);
const body = Buffer.alloc(100, 0x61);
const server = createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.byteLength) });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
