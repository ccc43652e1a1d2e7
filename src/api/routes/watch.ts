import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { HubEvent, WatchSink } from '../../member/watch-hub.js';
import { ApiError } from '../http-errors.js';
import type { KvService } from '../kv-service.js';
import { parseKeyAfter } from './kv.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

function eventJson(e: HubEvent): string {
  const o: Record<string, unknown> = { type: e.type, key: e.key };
  try {
    o['value'] = utf8.decode(e.value);
  } catch {
    o['valueBase64'] = Buffer.from(e.value.buffer, e.value.byteOffset, e.value.byteLength).toString('base64');
  }
  o['modRevision'] = e.modRevision;
  return JSON.stringify(o);
}

/** Server-Sent Events on a raw response: change events carry `id: <modRevision>`. */
function sseSink(res: ServerResponse, onClose: () => void): WatchSink {
  return {
    events(events) {
      let chunk = '';
      for (const e of events) chunk += `id: ${e.modRevision}\ndata: ${eventJson(e)}\n\n`;
      res.write(chunk);
    },
    progress(revision) {
      res.write(`event: progress\ndata: {"revision":${revision}}\n\n`);
    },
    close(reason) {
      const body = JSON.stringify({ error: { code: reason.code, message: reason.message }, resumeRevision: reason.resumeRevision });
      res.end(`event: error\ndata: ${body}\n\n`);
      onClose();
    },
    backlogBytes() {
      return res.writableLength;
    },
  };
}

export function registerWatchRoutes(app: FastifyInstance, service: KvService, maxKeyBytes: number): void {
  app.get('/v1/watch/*', async (request, reply) => {
    const key = parseKeyAfter('/v1/watch/', request.raw.url ?? '', maxKeyBytes);
    const q = request.query as Record<string, unknown>;
    const prefix = q['prefix'] === 'true' || q['prefix'] === '1';
    if (q['prefix'] !== undefined && !prefix && q['prefix'] !== 'false' && q['prefix'] !== '0') {
      throw new ApiError('INVALID_ARGUMENT', 'prefix must be true or false');
    }
    let fromRevision: number | null = null;
    if (q['fromRevision'] !== undefined) {
      if (typeof q['fromRevision'] !== 'string' || !/^[1-9][0-9]{0,15}$/.test(q['fromRevision'])) {
        throw new ApiError('INVALID_ARGUMENT', 'fromRevision must be a positive revision');
      }
      fromRevision = Number(q['fromRevision']);
    }
    // Take the connection over only once the start is known to be valid (410 if compacted).
    const res = reply.raw;
    let cancel: (() => void) | null = null;
    let headersSent = false;
    const finish = () => cancel?.();
    const sink = sseSink(res, finish);
    const openHeaders = () => {
      if (headersSent) return;
      headersSent = true;
      reply.hijack();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.flushHeaders();
    };
    const lazy: WatchSink = {
      events: (e) => (openHeaders(), sink.events(e)),
      progress: (r) => (openHeaders(), sink.progress(r)),
      close: (r) => (openHeaders(), sink.close(r)),
      backlogBytes: () => sink.backlogBytes(),
    };
    cancel = await service.openWatch({ key, prefix }, fromRevision, lazy);
    openHeaders();
    res.write(': watching\n\n');
    res.on('close', finish);
    return reply;
  });
}
