import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { KvService } from '../kv-service.js';

/**
 * GET /v1/snapshot: a consistent backup (the state machine at one applied index, in the same
 * checksummed image format members use for InstallSnapshot), streamed from a temp file.
 */
export function registerSnapshotRoutes(app: FastifyInstance, service: KvService): void {
  app.get('/v1/snapshot', async (_request, reply) => {
    const image = await service.backup();
    try {
      const size = (await stat(image.file)).size;
      const stream = createReadStream(image.file);
      const release = () => void image.release();
      stream.once('close', release);
      return reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', String(size))
        .header('content-disposition', `attachment; filename="flotilla-${image.meta.index}.snap"`)
        .header('x-flotilla-snapshot-index', String(image.meta.index))
        .header('x-flotilla-snapshot-term', String(image.meta.term))
        .header('x-flotilla-snapshot-revision', String(image.revision))
        .send(stream);
    } catch (err) {
      await image.release();
      throw err;
    }
  });
}
