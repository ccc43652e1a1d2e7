import type { FastifyInstance } from 'fastify';
import type { KvService } from '../kv-service.js';

export function registerStatusRoutes(app: FastifyInstance, service: KvService): void {
  app.get('/v1/status', async () => service.status());

  app.get('/health', async (_request, reply) => {
    const h = service.health();
    if (h.healthy) return { health: 'ok' };
    return reply.code(503).header('retry-after', '1').send({ error: { code: 'NO_LEADER', message: `Unhealthy: ${h.reason}` } });
  });

  app.get('/metrics', async (_request, reply) => {
    const m = await service.metrics();
    return reply.header('content-type', m.contentType).send(m.body);
  });
}
