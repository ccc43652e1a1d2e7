import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiOptions } from '../build-api.js';
import { writeOrForward } from '../forward.js';
import { ApiError } from '../http-errors.js';
import type { KvService } from '../kv-service.js';
import { jsonBody } from './leases.js';

const MemberName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'a member name is 1-64 letters, digits, _ or -');
const AddBody = z.object({ name: MemberName, peerUrl: z.url({ protocol: /^https?$/ }) });
const LeaderBody = z.object({ name: MemberName });

function parse<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const r = schema.safeParse(body);
  if (!r.success) throw new ApiError('INVALID_ARGUMENT', `${what}: ${r.error.issues[0].path.join('.') || 'body'} ${r.error.issues[0].message}`);
  return r.data;
}

export function registerClusterRoutes(app: FastifyInstance, service: KvService, options: ApiOptions): void {
  app.get('/v1/cluster/members', async () => service.members());

  app.post('/v1/cluster/members', async (request, reply) => {
    const body = parse(AddBody, jsonBody(request), 'Expected {"name","peerUrl"}');
    const peerUrl = body.peerUrl.endsWith('/') ? body.peerUrl.slice(0, -1) : body.peerUrl;
    return writeOrForward(request, reply, options, async () => reply.send(await service.addMember(body.name, peerUrl)));
  });

  app.delete('/v1/cluster/members/:name', async (request, reply) => {
    const name = parse(MemberName, (request.params as Record<string, unknown>)['name'], 'Bad member name');
    return writeOrForward(request, reply, options, async () => {
      await service.removeMember(name);
      return reply.send({ removed: name });
    });
  });

  app.post('/v1/cluster/leader', async (request, reply) => {
    const body = parse(LeaderBody, jsonBody(request), 'Expected {"name"}');
    return writeOrForward(request, reply, options, async () => {
      await service.transferLeader(body.name);
      return reply.send({ leader: body.name });
    });
  });
}
