import { Pool } from 'undici';
import type { Message, NodeId } from '../raft/types.js';
import type { Logger } from '../util/logger.js';
import { encodeBatch } from './codec.js';

/** Headers every peer request carries, so the receiver learns who we are and where clients go. */
export const PEER_HEADERS = {
  from: 'x-flotilla-from',
  clientUrl: 'x-flotilla-client-url',
} as const;

export const PEER_MESSAGES_PATH = '/raft/v1/messages';

export interface PeerTransportOptions {
  readonly self: NodeId;
  readonly selfClientUrl: string;
  readonly logger: Logger;
  /** Called when a peer could not be reached, so the core can stop streaming to it. */
  readonly onUnreachable: (peer: NodeId) => void;
  /** Messages queued per peer; beyond this the oldest are dropped (Raft retransmits). */
  readonly maxQueuedMessages?: number;
  /** Bytes of entry data per request. */
  readonly maxBatchBytes?: number;
  /** Requests in flight per peer. Appends are pipelined inside one request stream. */
  readonly maxInflightRequests?: number;
  readonly requestTimeoutMs?: number;
}

const DEFAULT_MAX_QUEUED = 10_000;
const DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024;
// One request at a time keeps appends in order (a reordered append is rejected and forces a
// re-probe); batching, not parallel requests, is what carries the load.
const DEFAULT_INFLIGHT = 1;
const DEFAULT_TIMEOUT_MS = 5000;
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 300;

/** One peer: a queue, an undici Pool with keep-alive, bounded requests in flight, back-off. */
type ResolvedOptions = Required<Omit<PeerTransportOptions, 'onUnreachable' | 'logger'>> & PeerTransportOptions;

class PeerLink {
  readonly #t: ResolvedOptions;
  readonly #pool: Pool;
  #queue: Message[] = [];
  #inflight = 0;
  #backoffMs = 0;
  #retryAt = 0;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(
    readonly id: NodeId,
    readonly url: string,
    options: ResolvedOptions,
  ) {
    this.#t = options;
    this.#pool = new Pool(url, {
      connections: this.#t.maxInflightRequests,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connectTimeout: Math.min(2000, this.#t.requestTimeoutMs),
      headersTimeout: this.#t.requestTimeoutMs,
      bodyTimeout: this.#t.requestTimeoutMs,
    });
  }

  enqueue(m: Message): void {
    if (this.#closed) return;
    this.#queue.push(m);
    if (this.#queue.length > this.#t.maxQueuedMessages) this.#queue.splice(0, this.#queue.length - this.#t.maxQueuedMessages);
  }

  flush(): void {
    if (this.#closed || this.#queue.length === 0 || this.#inflight >= this.#t.maxInflightRequests) return;
    const wait = this.#retryAt - Date.now();
    if (wait > 0) {
      this.#timer ??= setTimeout(() => {
        this.#timer = null;
        this.flush();
      }, wait);
      return;
    }
    const batch = this.#takeBatch();
    this.#inflight++;
    this.#post(batch).finally(() => {
      this.#inflight--;
      this.flush();
    });
  }

  #takeBatch(): Message[] {
    let bytes = 0;
    let n = 0;
    while (n < this.#queue.length) {
      const m = this.#queue[n];
      if (m.type === 'append') for (const e of m.entries) bytes += e.data.byteLength;
      n++;
      if (bytes >= this.#t.maxBatchBytes) break;
    }
    return this.#queue.splice(0, n);
  }

  async #post(batch: Message[]): Promise<void> {
    try {
      const res = await this.#pool.request({
        path: PEER_MESSAGES_PATH,
        method: 'POST',
        headers: {
          'content-type': 'application/octet-stream',
          [PEER_HEADERS.from]: this.#t.self,
          [PEER_HEADERS.clientUrl]: this.#t.selfClientUrl,
        },
        body: encodeBatch(batch),
      });
      await res.body.dump();
      if (res.statusCode >= 300) throw new Error(`peer answered ${res.statusCode}`);
      this.#backoffMs = 0;
    } catch (err) {
      this.#failed(err, batch);
    }
  }

  #failed(err: unknown, batch: Message[]): void {
    if (this.#closed) return;
    this.#backoffMs = Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, this.#backoffMs * 2));
    this.#retryAt = Date.now() + this.#backoffMs;
    // Messages to an unreachable peer are dropped, not retried: Raft resends what still matters,
    // and stale votes or appends would only be noise when it comes back.
    this.#queue = [];
    const code = (err as { code?: string }).code ?? (err instanceof Error ? err.message : String(err));
    this.#t.logger.debug({ peer: this.id, code, dropped: batch.length }, 'peer unreachable');
    this.#t.onUnreachable(this.id);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#queue = [];
    await this.#pool.destroy();
  }
}

/** Sends Raft messages to peers over HTTP, batched per peer. */
export class PeerTransport {
  readonly #links = new Map<NodeId, PeerLink>();
  readonly #options: ResolvedOptions;

  constructor(options: PeerTransportOptions) {
    this.#options = {
      maxQueuedMessages: DEFAULT_MAX_QUEUED,
      maxBatchBytes: DEFAULT_MAX_BATCH_BYTES,
      maxInflightRequests: DEFAULT_INFLIGHT,
      requestTimeoutMs: DEFAULT_TIMEOUT_MS,
      ...options,
    };
  }

  setPeer(id: NodeId, peerUrl: string): void {
    const existing = this.#links.get(id);
    if (existing && existing.url === peerUrl) return;
    if (existing) void existing.close();
    this.#links.set(id, new PeerLink(id, peerUrl, this.#options));
  }

  removePeer(id: NodeId): void {
    const link = this.#links.get(id);
    if (link) void link.close();
    this.#links.delete(id);
  }

  peerUrl(id: NodeId): string | undefined {
    return this.#links.get(id)?.url;
  }

  send(messages: readonly Message[]): void {
    const touched = new Set<PeerLink>();
    for (const m of messages) {
      const link = this.#links.get(m.to);
      if (!link) continue;
      link.enqueue(m);
      touched.add(link);
    }
    for (const link of touched) link.flush();
  }

  async close(): Promise<void> {
    await Promise.all([...this.#links.values()].map((l) => l.close()));
    this.#links.clear();
  }
}
