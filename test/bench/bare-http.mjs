// The Node ceiling for a read: a bare node:http server, one thread, that answers every GET with a
// 200 and a 100-byte body, as a stale read of a 100-byte value does (flotilla answers those from
// Node's request event too, before Fastify: src/api/stale-read.ts). No routing, no lookup, no
// logging: whatever one Node process can answer per second on this machine, loaded by the same
// generator, bounds what any one-member read path in Node can reach.
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
