// The Node ceiling for one process: a bare Fastify 5 app that takes a PUT with a small raw body
// and answers 200 with a tiny JSON body. No Raft, no disk, no logging. Same Fastify version and
// body handling (a buffer, any content type) as flotilla's client API.
//
//   node test/bench/bare-fastify.mjs PORT      prints "listening PORT" once it is ready
import Fastify from 'fastify';

const port = Number(process.argv[2] ?? 0);
const app = Fastify({ logger: false, bodyLimit: 1572864 });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
app.put('/v1/kv/*', async (request) => ({ key: request.params['*'], bytes: request.body?.length ?? 0 }));

await app.listen({ host: '127.0.0.1', port });
process.stdout.write(`listening ${app.server.address().port}\n`);
const stop = () => app.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
