import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Message, NodeId } from '../raft/types.js';
import type { Logger } from '../util/logger.js';
import { CodecError, decodeBatch, FRAME_HEADER_BYTES } from './codec.js';

/**
 * The long-lived peer stream. Each member opens one connection to each peer it sends to (an HTTP
 * GET upgraded to a raw byte stream, on the peer URL's port) and writes its message batches on it
 * as length-prefixed frames. Nothing flows back on it: the peer answers on its own stream.
 * Compared with one HTTP request per batch this costs no header building or parsing, no response
 * and no request/response round trip per batch, and frames stay in order, so appends pipeline
 * freely behind each other.
 *
 *   stream := frame*        frame := length:u32 (little-endian) batch (codec.ts)
 */
export const PEER_STREAM_PATH = '/raft/v1/stream';
export const PEER_STREAM_PROTOCOL = 'flotilla-raft/1';

/** A frame larger than this is a broken or hostile sender: the connection is closed. */
export const MAX_FRAME_BYTES = 256 * 1024 * 1024;

export class FrameError extends Error {
  override readonly name = 'FrameError';
}

/**
 * Splits a byte stream into frames. Each frame comes out in a buffer of its own (copied out of the
 * socket's chunks), so entries decoded from it as views pin only their own frame.
 */
export class FrameReader {
  #chunks: Buffer[] = [];
  #buffered = 0;
  readonly #maxFrameBytes: number;

  constructor(maxFrameBytes = MAX_FRAME_BYTES) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** Bytes received but not yet part of a whole frame. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Add received bytes; returns every frame they complete, in order. Throws FrameError. */
  push(chunk: Buffer): Buffer[] {
    if (chunk.length === 0) return [];
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const frames: Buffer[] = [];
    for (;;) {
      if (this.#buffered < FRAME_HEADER_BYTES) break;
      const length = this.#peekLength();
      if (length > this.#maxFrameBytes) throw new FrameError(`a frame of ${length} bytes is larger than ${this.#maxFrameBytes}`);
      if (this.#buffered < FRAME_HEADER_BYTES + length) break;
      this.#take(FRAME_HEADER_BYTES);
      frames.push(this.#take(length));
    }
    return frames;
  }

  #peekLength(): number {
    const first = this.#chunks[0];
    if (first.length >= FRAME_HEADER_BYTES) return first.readUInt32LE(0);
    const head = Buffer.concat(this.#chunks, FRAME_HEADER_BYTES);
    return head.readUInt32LE(0);
  }

  /** Removes and returns exactly n buffered bytes, in a fresh buffer. */
  #take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0];
      const want = n - filled;
      if (chunk.length <= want) {
        chunk.copy(out, filled);
        filled += chunk.length;
        this.#chunks.shift();
      } else {
        chunk.copy(out, filled, 0, want);
        this.#chunks[0] = chunk.subarray(want);
        filled += want;
      }
    }
    this.#buffered -= n;
    return out;
  }
}

export interface StreamHandler {
  readonly self: NodeId;
  /** Decoded messages, already checked to be from `from` and for this member. */
  receive(from: NodeId, clientUrl: string | undefined, messages: Message[]): void;
  /** Counted, not logged per message. */
  rejected(reason: string): void;
}

/**
 * Hands a decoded batch to the handler, keeping only messages from `from` to this member (the
 * rest are counted as rejected): the same rule for a stream frame and a POSTed batch.
 */
export function deliverBatch(handler: StreamHandler, from: NodeId, clientUrl: string | undefined, messages: readonly Message[]): void {
  const mine = messages.filter((m) => m.to === handler.self && m.from === from);
  if (mine.length !== messages.length) handler.rejected('message for another member or from an impostor');
  if (mine.length > 0) handler.receive(from, clientUrl, mine);
}

export interface StreamHeaders {
  readonly from: string;
  readonly clientUrl: string;
}

/**
 * Accepts peer streams on `server` (the peer listener): upgrades GET PEER_STREAM_PATH, then decodes
 * frames and hands their messages to the handler. A malformed frame closes the connection (the
 * sender reconnects and Raft resends what mattered). Returns a function that closes every open
 * stream, for shutdown: upgraded sockets are no longer the HTTP server's to close.
 */
export function acceptPeerStreams(server: Server, handler: StreamHandler, headers: StreamHeaders, log: Logger): () => void {
  const open = new Set<Duplex>();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refuse = (status: string, reason: string) => {
      handler.rejected(reason);
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (req.url !== PEER_STREAM_PATH || req.headers.upgrade !== PEER_STREAM_PROTOCOL) return refuse('404 Not Found', 'unknown upgrade');
    const fromHeader = req.headers[headers.from];
    if (typeof fromHeader !== 'string' || fromHeader.length === 0) return refuse('400 Bad Request', 'missing sender');
    const from: NodeId = fromHeader;
    const clientHeader = req.headers[headers.clientUrl];
    const clientUrl = typeof clientHeader === 'string' ? clientHeader : undefined;
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => socket.destroy());
    if ('setNoDelay' in socket && typeof socket.setNoDelay === 'function') socket.setNoDelay(true);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${PEER_STREAM_PROTOCOL}\r\nConnection: Upgrade\r\n\r\n`);
    const reader = new FrameReader();
    const onData = (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        handler.rejected(err instanceof Error ? err.message : 'bad frame');
        socket.destroy();
        return;
      }
      for (const frame of frames) {
        let messages: Message[];
        try {
          messages = decodeBatch(frame);
        } catch (err) {
          handler.rejected(err instanceof CodecError ? err.message : 'undecodable batch');
          log.warn({ from, err: err instanceof Error ? err.message : String(err) }, 'closing a peer stream that sent a bad batch');
          socket.destroy();
          return;
        }
        deliverBatch(handler, from, clientUrl, messages);
      }
    };
    if (head.length > 0) onData(head);
    socket.on('data', onData);
  });
  return () => {
    for (const socket of open) socket.destroy();
    open.clear();
  };
}
