/**
 * A watch that survives its member: it reads `GET /v1/watch/KEY` as server-sent events and, when
 * the stream breaks (member killed, WATCH_TOO_SLOW cut, idle timeout), resumes on any member from
 * the last revision it delivered. It yields every change once, in revision order.
 *
 * One revision can carry several events (a txn touching several keys under a prefix). So the watch
 * remembers the last revision it delivered and which keys it delivered at it; it resumes *at* that
 * revision if it delivered any event there, and drops what it has already given out.
 */
import { errorFromAnswer } from './answer-errors.js';
import { CompactedError } from './errors.js';
import { SseParser } from './sse.js';
import type { SseEvent } from './sse.js';
import type { Transport } from './transport.js';
import type { WatchEvent } from './types.js';
import { encodeKeyPath, isRecord, parseWatchEvent, queryString } from './wire.js';

export interface WatchOptions {
  /** Watch every key that starts with `key`. */
  readonly prefix?: boolean;
  /** Deliver changes from this revision on (inclusive). Default: changes after now. */
  readonly fromRevision?: number;
  /** Ends the iteration (quietly) and closes the stream. */
  readonly signal?: AbortSignal;
}

export interface WatchDeps {
  readonly transport: Transport;
  /** The store's current revision, read linearizably (anchors a watch that starts "now"). */
  readonly currentRevision: (key: string, signal: AbortSignal) => Promise<number>;
  /** Reconnect when nothing (not even a progress event) arrived for this long. */
  readonly idleTimeoutMs: number;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
}

/** Where the watch stands: what it has delivered, and so where it must resume. */
export class WatchCursor {
  #lastRevision: number;
  /** Keys delivered at lastRevision while it may still have more; null once it is complete. */
  #keysAtLast: Set<string> | null = null;

  constructor(fromRevision: number) {
    this.#lastRevision = fromRevision - 1;
  }

  /** The fromRevision to ask for when (re)connecting. */
  get resumeRevision(): number {
    return this.#keysAtLast ? this.#lastRevision : this.#lastRevision + 1;
  }

  /** True if the event is new (and records it); false for one already delivered. */
  accept(event: WatchEvent): boolean {
    if (event.modRevision < this.#lastRevision) return false;
    if (event.modRevision === this.#lastRevision) {
      if (!this.#keysAtLast || this.#keysAtLast.has(event.key)) return false;
      this.#keysAtLast.add(event.key);
      return true;
    }
    this.#lastRevision = event.modRevision;
    this.#keysAtLast = new Set([event.key]);
    return true;
  }

  /** A progress event: every change up to `revision` has been sent. */
  progress(revision: number): void {
    if (revision >= this.#lastRevision) {
      this.#lastRevision = revision;
      this.#keysAtLast = null;
    }
  }
}

type StreamOutcome = { kind: 'ended' } | { kind: 'cut'; reason: string };

export function watch(deps: WatchDeps, key: string, options: WatchOptions = {}): AsyncIterable<WatchEvent> {
  return { [Symbol.asyncIterator]: () => run(deps, key, options) };
}

async function* run(deps: WatchDeps, key: string, options: WatchOptions): AsyncGenerator<WatchEvent, void, undefined> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(options.signal?.reason);
  if (options.signal?.aborted) return;
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const signal = controller.signal;
  try {
    const from = options.fromRevision ?? (await deps.currentRevision(key, signal)) + 1;
    const cursor = new WatchCursor(from);
    let failures = 0;
    for (;;) {
      const fromRevision = cursor.resumeRevision;
      const path = `/v1/watch/${encodeKeyPath(key)}${queryString({ prefix: options.prefix ? 'true' : undefined, fromRevision })}`;
      const opened = await deps.transport.open({
        method: 'GET', path, retry: 'read', deadlineMs: Number.POSITIVE_INFINITY, signal, idleTimeoutMs: deps.idleTimeoutMs,
        headers: { accept: 'text/event-stream' },
      });
      if (!opened.streaming) {
        if (opened.status === 410) throw new CompactedError(`watch ${key}: revision ${fromRevision} has been compacted`, fromRevision, { status: 410 });
        throw errorFromAnswer(opened, `watch ${key}`);
      }
      const parser = new SseParser();
      let delivered = false;
      let outcome: StreamOutcome = { kind: 'ended' };
      try {
        for await (const chunk of opened.body as AsyncIterable<Buffer>) {
          for (const sse of parser.push(chunk)) {
            const step = interpret(sse, key, fromRevision);
            if (step.kind === 'event') {
              if (cursor.accept(step.event)) {
                delivered = true;
                yield step.event;
              }
            } else if (step.kind === 'progress') {
              cursor.progress(step.revision);
              delivered = true;
            } else {
              outcome = { kind: 'cut', reason: step.reason };
              break;
            }
          }
          if (outcome.kind === 'cut') break;
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof CompactedError) throw err;
        outcome = { kind: 'cut', reason: (err as Error).message };
      } finally {
        opened.body.destroy();
      }
      if (signal.aborted) return;
      // The stream ended or broke: resume elsewhere, soon if this one was healthy.
      deps.transport.reportFailure(opened.origin);
      if (delivered) failures = 0;
      await pause(deps, failures++, signal);
    }
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    controller.abort();
  }
}

type Step = { kind: 'event'; event: WatchEvent } | { kind: 'progress'; revision: number } | { kind: 'cut'; reason: string };

function interpret(sse: SseEvent, key: string, fromRevision: number): Step {
  if (sse.event === 'message') return { kind: 'event', event: parseWatchEvent(JSON.parse(sse.data)) };
  const data: unknown = JSON.parse(sse.data);
  if (sse.event === 'progress') {
    const revision = isRecord(data) ? data['revision'] : undefined;
    return typeof revision === 'number' ? { kind: 'progress', revision } : { kind: 'progress', revision: 0 };
  }
  if (sse.event === 'error') {
    const error = isRecord(data) && isRecord(data['error']) ? data['error'] : {};
    if (error['code'] === 'COMPACTED') throw new CompactedError(`watch ${key}: revision ${fromRevision} has been compacted`, fromRevision);
    return { kind: 'cut', reason: `server cut the watch: ${String(error['code'] ?? 'unknown')}` };
  }
  // Unknown named events are for newer clients.
  return { kind: 'progress', revision: 0 };
}

function pause(deps: WatchDeps, attempt: number, signal: AbortSignal): Promise<void> {
  const base = Math.min(deps.backoffMaxMs, deps.backoffInitialMs * 2 ** Math.min(attempt, 20));
  const ms = attempt === 0 ? 0 : base / 2 + Math.random() * (base / 2);
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
