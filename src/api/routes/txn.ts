import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiOptions } from '../build-api.js';
import { writeOrForward } from '../forward.js';
import { ApiError } from '../http-errors.js';
import type { KvService, TxnCompareInput, TxnOpInput, TxnOutcome } from '../kv-service.js';
import { itemJson } from './list.js';
import { jsonBody } from './leases.js';

/** etcd's default --max-txn-ops. */
export const MAX_TXN_OPS = 128;

const Key = z.string().min(1);
/** A value is a UTF-8 string; `valueBase64` (an extension) carries arbitrary bytes. */
const ValueFields = { value: z.string().optional(), valueBase64: z.base64().optional() };

const Compare = z.union([
  z.object({ key: Key, target: z.literal('value'), op: z.enum(['=', '!=', '<', '>']), ...ValueFields }).strict(),
  z.object({
    key: Key, target: z.enum(['modRevision', 'createRevision', 'version']), op: z.enum(['=', '!=', '<', '>']),
    value: z.number().int().min(0),
  }).strict(),
]);

const Op = z.discriminatedUnion('op', [
  z.object({ op: z.literal('put'), key: Key, ...ValueFields, lease: z.number().int().positive().optional() }).strict(),
  z.object({ op: z.literal('delete'), key: Key }).strict(),
  z.object({ op: z.literal('get'), key: Key }).strict(),
]);

const TxnBody = z.object({
  compare: z.array(Compare).max(MAX_TXN_OPS).default([]),
  success: z.array(Op).max(MAX_TXN_OPS).default([]),
  failure: z.array(Op).max(MAX_TXN_OPS).default([]),
}).strict();

function bytesOf(o: { value?: string; valueBase64?: string }, where: string): Uint8Array {
  if (o.value !== undefined && o.valueBase64 !== undefined) throw new ApiError('INVALID_ARGUMENT', `${where}: give value or valueBase64, not both`);
  if (o.valueBase64 !== undefined) return Buffer.from(o.valueBase64, 'base64');
  if (o.value === undefined) throw new ApiError('INVALID_ARGUMENT', `${where}: value is required`);
  return Buffer.from(o.value, 'utf8');
}

function toCompare(c: z.infer<typeof Compare>, i: number): TxnCompareInput {
  if (c.target === 'value') return { key: c.key, target: 'value', op: c.op, value: bytesOf(c, `compare[${i}]`) };
  return { key: c.key, target: c.target, op: c.op, value: c.value };
}

function toOp(o: z.infer<typeof Op>, where: string): TxnOpInput {
  if (o.op === 'put') return { op: 'put', key: o.key, value: bytesOf(o, where), ...(o.lease === undefined ? {} : { lease: o.lease }) };
  return { op: o.op, key: o.key };
}

function resultJson(r: TxnOutcome['results'][number]): unknown {
  switch (r.op) {
    case 'get':
      return r.item === null ? null : itemJson(r.item);
    case 'put':
      return { op: 'put', key: r.key, modRevision: r.modRevision, createRevision: r.createRevision, version: r.version };
    case 'delete':
      return { op: 'delete', key: r.key, deleted: r.deleted };
  }
}

export function registerTxnRoutes(app: FastifyInstance, service: KvService, options: ApiOptions): void {
  app.post('/v1/txn', async (request, reply) => {
    const parsed = TxnBody.safeParse(jsonBody(request));
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ApiError('INVALID_ARGUMENT', `Bad transaction at ${issue.path.join('.') || 'body'}: ${issue.message}`);
    }
    const body = parsed.data;
    const txn = {
      compare: body.compare.map(toCompare),
      success: body.success.map((o, i) => toOp(o, `success[${i}]`)),
      failure: body.failure.map((o, i) => toOp(o, `failure[${i}]`)),
    };
    return writeOrForward(request, reply, options, async () => {
      const r = await service.txn(txn);
      return reply.send({ succeeded: r.succeeded, revision: r.revision, results: r.results.map(resultJson) });
    });
  });
}
