import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ApiOptions } from '../build-api.js';
import { writeOrForward } from '../forward.js';
import { ApiError } from '../http-errors.js';
import type { KvService } from '../kv-service.js';

/** Longest lease: a year (etcd has no hard cap; a bound keeps arithmetic and timers sane). */
export const MAX_LEASE_TTL_SECONDS = 365 * 24 * 3600;

const GrantBody = z.object({ ttl: z.number().int().min(1).max(MAX_LEASE_TTL_SECONDS) }).strict();

/** JSON bodies arrive as raw bytes (values accept any type); parse them here. */
export function jsonBody(request: FastifyRequest): unknown {
  const body = request.body;
  if (!Buffer.isBuffer(body) || body.length === 0) throw new ApiError('INVALID_ARGUMENT', 'Expected a JSON body');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new ApiError('INVALID_ARGUMENT', 'The body is not valid JSON');
  }
}

function leaseId(raw: unknown): number {
  if (typeof raw !== 'string' || !/^[1-9][0-9]{0,15}$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new ApiError('INVALID_ARGUMENT', 'A lease id is a positive integer');
  }
  return Number(raw);
}

export function registerLeaseRoutes(app: FastifyInstance, service: KvService, options: ApiOptions): void {
  app.post('/v1/leases', async (request, reply) => {
    const parsed = GrantBody.safeParse(jsonBody(request));
    if (!parsed.success) throw new ApiError('INVALID_ARGUMENT', `Expected {"ttl":SECONDS} with 1 <= ttl <= ${MAX_LEASE_TTL_SECONDS}`);
    return writeOrForward(request, reply, options, async () => reply.send(await service.grantLease(parsed.data.ttl)));
  });

  app.post('/v1/leases/:id/keepalive', async (request, reply) => {
    const id = leaseId((request.params as Record<string, unknown>)['id']);
    return writeOrForward(request, reply, options, async () => reply.send(await service.keepAliveLease(id)));
  });

  app.delete('/v1/leases/:id', async (request, reply) => {
    const id = leaseId((request.params as Record<string, unknown>)['id']);
    return writeOrForward(request, reply, options, async () => {
      const r = await service.revokeLease(id);
      return reply.send({ id, revoked: true, deletedKeys: r.deletedKeys, revision: r.revision });
    });
  });
}
