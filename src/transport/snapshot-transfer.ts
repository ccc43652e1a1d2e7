import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request } from 'undici';
import type { NodeId } from '../raft/types.js';
import { PEER_HEADERS } from './peer-client.js';

/**
 * InstallSnapshot over HTTP: the image travels as a raw stream in its own request (so heartbeats
 * on the message connection are not stuck behind it), and resumes from the byte the receiver
 * already holds after a dropped connection. TCP flow control is the back-pressure.
 */
export const SNAPSHOT_PATH = '/raft/v1/snapshot';
export const SNAPSHOT_OFFSET_PATH = '/raft/v1/snapshot/offset';
export const SNAPSHOT_CONTENT_TYPE = 'application/x-flotilla-snapshot';

export const SNAPSHOT_HEADERS = {
  term: 'x-flotilla-term',
  index: 'x-flotilla-snapshot-index',
  snapTerm: 'x-flotilla-snapshot-term',
  offset: 'x-flotilla-snapshot-offset',
  size: 'x-flotilla-snapshot-size',
} as const;

export interface SnapshotUpload {
  readonly self: NodeId;
  readonly selfClientUrl: string;
  readonly peerUrl: string;
  /** The leader's current term. */
  readonly term: number;
  readonly index: number;
  readonly snapTerm: number;
  readonly file: string;
  /** An attempt continues at `offset` > 0: the receiver already holds that many bytes of the image. */
  readonly onResume?: (offset: number, size: number) => void;
}

/** Resume attempts after a dropped upload before giving up (the core retries later). */
const MAX_ATTEMPTS = 5;
/** Generous: a large image on a slow disk; progress, not this, is what matters. */
const UPLOAD_TIMEOUT_MS = 10 * 60_000;

function headers(u: SnapshotUpload): Record<string, string> {
  return {
    [PEER_HEADERS.from]: u.self,
    [PEER_HEADERS.clientUrl]: u.selfClientUrl,
    [SNAPSHOT_HEADERS.term]: String(u.term),
    [SNAPSHOT_HEADERS.index]: String(u.index),
    [SNAPSHOT_HEADERS.snapTerm]: String(u.snapTerm),
  };
}

async function remoteOffset(u: SnapshotUpload): Promise<number> {
  const res = await request(`${u.peerUrl}${SNAPSHOT_OFFSET_PATH}`, { method: 'GET', headers: headers(u), headersTimeout: 5000, bodyTimeout: 5000 });
  const body = (await res.body.json()) as { offset?: unknown };
  if (res.statusCode !== 200 || typeof body.offset !== 'number') throw new Error(`offset query answered ${res.statusCode}`);
  return body.offset;
}

/** Upload the image, resuming where the receiver stands; resolves once the receiver installed it. */
export async function uploadSnapshot(u: SnapshotUpload): Promise<void> {
  const size = (await stat(u.file)).size;
  let lastError = '';
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    try {
      const offset = Math.min(await remoteOffset(u), size);
      if (offset > 0) u.onResume?.(offset, size);
      const res = await request(`${u.peerUrl}${SNAPSHOT_PATH}`, {
        method: 'PUT',
        headers: {
          ...headers(u),
          'content-type': SNAPSHOT_CONTENT_TYPE,
          [SNAPSHOT_HEADERS.offset]: String(offset),
          [SNAPSHOT_HEADERS.size]: String(size),
        },
        body: offset < size ? createReadStream(u.file, { start: offset }) : '',
        headersTimeout: UPLOAD_TIMEOUT_MS,
        bodyTimeout: UPLOAD_TIMEOUT_MS,
      });
      const text = await res.body.text();
      if (res.statusCode === 204) return;
      lastError = `${res.statusCode} ${text}`;
      if (res.statusCode !== 409) break; // 409: offsets disagreed; ask again
    } catch (err) {
      lastError = (err as { code?: string }).code ?? (err instanceof Error ? err.message : String(err));
    }
    await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
  }
  throw new Error(`snapshot upload failed: ${lastError}`);
}
