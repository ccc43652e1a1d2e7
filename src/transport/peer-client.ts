import { request as httpRequest, type ClientRequest } from 'node:http';
import type { Socket } from 'node:net';
import type { Message, NodeId } from '../raft/types.js';
import type { Logger } from '../util/logger.js';
import { encodeFrame } from './codec.js';
import { PEER_STREAM_PATH, PEER_STREAM_PROTOCOL } from './peer-stream.js';

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
  /** Messages queued per peer while its stream is connecting or full; beyond this the oldest are dropped (Raft retransmits). */
  readonly maxQueuedMessages?: number;
  /** Bytes of entry data per frame. */
  readonly maxBatchBytes?: number;
  /** Connecting, and a stream that accepts no bytes for this long, count as unreachable. */
  readonly requestTimeoutMs?: number;
}

const DEFAULT_MAX_QUEUED = 10_000;
const DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 5000;
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 300;
/** Bytes the socket may hold unsent before we stop writing and let messages queue (and batch). */
const HIGH_WATER_BYTES = 4 * 1024 * 1024;

type ResolvedOptions = Required<Omit<PeerTransportOptions, 'onUnreachable' | 'logger'>> & PeerTransportOptions;

/**
 * One peer: a queue and one long-lived stream (peer-stream.ts) that frames are written to as soon
 * as they are queued. While the stream connects, or while the peer reads slower than we write,
 * messages wait in the queue and leave together as one frame. A failed or stalled stream is
 * destroyed, its queue dropped (Raft resends what still matters), the core told, and the next
 * send after a back-off reconnects.
 */
class PeerLink {
  readonly #t: ResolvedOptions;
  #queue: Message[] = [];
  #socket: Socket | null = null;
  #connecting: ClientRequest | null = null;
  #backoffMs = 0;
  #retryAt = 0;
  #timer: NodeJS.Timeout | null = null;
  #stallTimer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(
    readonly id: NodeId,
    readonly url: string,
    options: ResolvedOptions,
  ) {
    this.#t = options;
  }

  enqueue(m: Message): void {
    if (this.#closed) return;
    this.#queue.push(m);
    if (this.#queue.length > this.#t.maxQueuedMessages) this.#queue.splice(0, this.#queue.length - this.#t.maxQueuedMessages);
  }

  flush(): void {
    if (this.#closed || this.#queue.length === 0) return;
    const socket = this.#socket;
    if (socket === null) {
      this.#connect();
      return;
    }
    if (socket.writableLength >= HIGH_WATER_BYTES) return; // 'drain' flushes again
    while (this.#queue.length > 0) socket.write(encodeFrame(this.#takeBatch()));
    if (socket.writableLength > 0) this.#watchStall(socket);
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
    if (n === this.#queue.length) {
      const all = this.#queue;
      this.#queue = [];
      return all;
    }
    return this.#queue.splice(0, n);
  }

  #connect(): void {
    if (this.#connecting !== null) return;
    const wait = this.#retryAt - Date.now();
    if (wait > 0) {
      this.#timer ??= setTimeout(() => {
        this.#timer = null;
        this.flush();
      }, wait);
      return;
    }
    const target = new URL(this.url);
    const req = httpRequest({
      host: target.hostname,
      port: Number(target.port || 80),
      path: PEER_STREAM_PATH,
      method: 'GET',
      agent: false,
      timeout: this.#t.requestTimeoutMs,
      headers: {
        connection: 'Upgrade',
        upgrade: PEER_STREAM_PROTOCOL,
        [PEER_HEADERS.from]: this.#t.self,
        [PEER_HEADERS.clientUrl]: this.#t.selfClientUrl,
      },
    });
    this.#connecting = req;
    req.on('upgrade', (res, socket: Socket, head: Buffer) => {
      this.#connecting = null;
      if (this.#closed || res.headers.upgrade !== PEER_STREAM_PROTOCOL) {
        socket.destroy();
        if (!this.#closed) this.#failed(new Error('peer did not accept the stream protocol'));
        return;
      }
      void head; // the peer never writes on our stream
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 5000);
      socket.setTimeout(0);
      socket.on('error', (err) => this.#lost(socket, err));
      socket.on('close', () => this.#lost(socket, new Error('stream closed')));
      socket.on('data', () => {}); // nothing is expected; keep the socket flowing
      socket.on('drain', () => {
        this.#clearStall();
        this.flush();
      });
      this.#socket = socket;
      this.#backoffMs = 0;
      this.flush();
    });
    req.on('response', (res) => {
      this.#connecting = null;
      res.resume();
      this.#failed(new Error(`peer answered ${res.statusCode} to the stream upgrade`));
    });
    req.on('timeout', () => req.destroy(new Error('connect timeout')));
    req.on('error', (err) => {
      if (this.#connecting === req) this.#connecting = null;
      this.#failed(err);
    });
    req.end();
  }

  /** Bytes that do not leave for requestTimeoutMs mean a stalled (paused, wedged) peer. */
  #watchStall(socket: Socket): void {
    if (this.#stallTimer !== null) return;
    this.#stallTimer = setTimeout(() => {
      this.#stallTimer = null;
      if (this.#socket === socket && socket.writableLength > 0) socket.destroy(new Error('peer stopped reading'));
    }, this.#t.requestTimeoutMs);
  }

  #clearStall(): void {
    if (this.#stallTimer !== null) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
  }

  #lost(socket: Socket, err: unknown): void {
    if (this.#socket !== socket) return;
    this.#socket = null;
    this.#clearStall();
    socket.destroy();
    this.#failed(err);
  }

  #failed(err: unknown): void {
    if (this.#closed) return;
    this.#backoffMs = Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, this.#backoffMs * 2));
    this.#retryAt = Date.now() + this.#backoffMs;
    // Messages to an unreachable peer are dropped, not retried: Raft resends what still matters,
    // and stale votes or appends would only be noise when it comes back.
    const dropped = this.#queue.length;
    this.#queue = [];
    const code = (err as { code?: string }).code ?? (err instanceof Error ? err.message : String(err));
    this.#t.logger.debug({ peer: this.id, code, dropped }, 'peer unreachable');
    this.#t.onUnreachable(this.id);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#clearStall();
    this.#queue = [];
    this.#connecting?.destroy();
    this.#connecting = null;
    const socket = this.#socket;
    this.#socket = null;
    socket?.destroy();
  }
}

/** Sends Raft messages to peers, one stream per peer, batched while a stream is busy. */
export class PeerTransport {
  readonly #links = new Map<NodeId, PeerLink>();
  readonly #options: ResolvedOptions;

  constructor(options: PeerTransportOptions) {
    this.#options = {
      maxQueuedMessages: DEFAULT_MAX_QUEUED,
      maxBatchBytes: DEFAULT_MAX_BATCH_BYTES,
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
