import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { KvRecord } from '../../kv/kv-record.js';
import { MAX_LIST_LIMIT } from '../../storage/level-storage.js';
import { ApiError } from '../http-errors.js';
import type { KvService } from '../kv-service.js';

const DEFAULT_LIMIT = 100;
const utf8 = new TextDecoder('utf-8', { fatal: true });

const ListQuery = z.object({
  prefix: z.string().default(''),
  after: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(MAX_LIST_LIMIT).default(DEFAULT_LIMIT),
  consistency: z.enum(['linearizable', 'stale']).default('linearizable'),
});

/** A key's item as listing (and txn `get`) show it: `value` when UTF-8, else `valueBase64`. */
export function itemJson(r: KvRecord): Record<string, unknown> {
  const base: Record<string, unknown> = { key: r.key };
  try {
    base['value'] = utf8.decode(r.value);
  } catch {
    base['valueBase64'] = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength).toString('base64');
  }
  return { ...base, modRevision: r.modRevision, createRevision: r.createRevision, version: r.version };
}

export function registerListRoutes(app: FastifyInstance, service: KvService): void {
  app.get('/v1/kv', async (request) => {
    const q = ListQuery.safeParse(request.query);
    if (!q.success) throw new ApiError('INVALID_ARGUMENT', `Bad listing query: ${q.error.issues[0].path.join('.')} ${q.error.issues[0].message}`);
    const { prefix, after, limit, consistency } = q.data;
    const page = await service.list(after === undefined ? { prefix, limit } : { prefix, after, limit }, consistency);
    return { revision: page.revision, items: page.items.map(itemJson), more: page.more };
  });
}
