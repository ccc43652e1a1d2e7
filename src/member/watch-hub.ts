/** A change as watchers see it (the apply results' events have this shape). */
export interface HubEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value: Uint8Array;
  readonly modRevision: number;
}

export interface WatchFilter {
  readonly key: string;
  readonly prefix: boolean;
}

/** Where a watch's events go (the SSE route). Each call carries whole revisions, in order. */
export interface WatchSink {
  events(events: readonly HubEvent[]): void;
  /** Every change up to `revision` that matches has been sent. */
  progress(revision: number): void;
  /** The watch ends (too slow, or the member stops); `resumeRevision` is where to pick up. */
  close(reason: { code: string; message: string; resumeRevision: number }): void;
  /** Bytes written but not yet flushed to the socket: the measure of a slow watcher. */
  backlogBytes(): number;
}

export interface HistoryPage {
  readonly events: readonly HubEvent[];
  readonly more: boolean;
}

export interface WatchHubDeps {
  /** The applied store revision (everything up to it is in history or was published). */
  revision(): number;
  /** Events with modRevision ≥ fromRevision, whole revisions, filtered; throws CompactedError. */
  readHistory(fromRevision: number, filter: WatchFilter, limit: number): Promise<HistoryPage>;
}

/** A watcher whose socket holds more than this is cut off (it can resume from where it was). */
export const MAX_WATCH_BACKLOG_BYTES = 8 * 1024 * 1024;
/** Live events buffered while a watcher is still reading history. */
const MAX_CATCHUP_BUFFER_EVENTS = 100_000;
const HISTORY_PAGE_EVENTS = 1000;
/** Bound on history pages read for one watch start (10M events). */
const MAX_HISTORY_PAGES = 10_000;

export function matches(filter: WatchFilter, key: string): boolean {
  return filter.prefix ? key.startsWith(filter.key) : key === filter.key;
}

class Watcher {
  /** The next revision this watcher must see; older events are duplicates. */
  next: number;
  catchingUp = true;
  buffered: HubEvent[] = [];
  closed = false;

  constructor(
    readonly filter: WatchFilter,
    readonly sink: WatchSink,
    next: number,
  ) {
    this.next = next;
  }

  deliver(events: readonly HubEvent[]): void {
    const fresh = events.filter((e) => e.modRevision >= this.next && matches(this.filter, e.key));
    if (fresh.length === 0) return;
    this.sink.events(fresh);
    this.next = fresh[fresh.length - 1].modRevision + 1;
  }
}

/**
 * Fans applied changes out to watchers. A watch from an old revision reads history first while
 * live changes queue up, then switches to live; the watcher's `next` revision makes the seam
 * exact (none skipped, none twice). Slow watchers are cut off with the revision to resume from,
 * so they can neither block writes nor grow memory without bound.
 */
export class WatchHub {
  readonly #watchers = new Set<Watcher>();
  /** The highest revision published to watchers. */
  #published = 0;

  constructor(readonly deps: WatchHubDeps) {
    this.#published = deps.revision();
  }

  get size(): number {
    return this.#watchers.size;
  }

  /** Start a watch from `fromRevision` (null: from now). Throws CompactedError if too old. */
  async open(filter: WatchFilter, fromRevision: number | null, sink: WatchSink): Promise<() => void> {
    const start = fromRevision ?? Math.max(this.deps.revision(), this.#published) + 1;
    const w = new Watcher(filter, sink, start);
    this.#watchers.add(w);
    const cancel = () => {
      w.closed = true;
      this.#watchers.delete(w);
    };
    try {
      if (fromRevision !== null) await this.#catchUp(w);
    } catch (err) {
      cancel();
      throw err;
    }
    w.catchingUp = false;
    const queued = w.buffered;
    w.buffered = [];
    if (!w.closed) w.deliver(queued);
    return cancel;
  }

  async #catchUp(w: Watcher): Promise<void> {
    for (let page = 0; page < MAX_HISTORY_PAGES && !w.closed; page++) {
      const p = await this.deps.readHistory(w.next, w.filter, HISTORY_PAGE_EVENTS);
      w.deliver(p.events);
      if (!p.more) {
        // Nothing more in history past the last event: move `next` to what history covered, so
        // buffered live events older than that (already sent) are skipped.
        return;
      }
      if (this.#cutIfSlow(w)) return;
    }
  }

  /** After each applied batch: the events of the batch, in revision order. */
  publish(events: readonly HubEvent[], revision: number): void {
    this.#published = Math.max(this.#published, revision);
    if (events.length === 0 || this.#watchers.size === 0) return;
    for (const w of this.#watchers) {
      if (w.catchingUp) {
        w.buffered.push(...events.filter((e) => matches(w.filter, e.key)));
        if (w.buffered.length > MAX_CATCHUP_BUFFER_EVENTS) this.#cut(w, 'WATCH_TOO_SLOW', 'The watch fell too far behind while reading history');
        continue;
      }
      w.deliver(events);
      this.#cutIfSlow(w);
    }
  }

  /** Tell idle watchers how far they are (progress notification). */
  progressAll(): void {
    const rev = this.#published;
    for (const w of this.#watchers) {
      if (w.catchingUp) continue;
      w.sink.progress(rev);
      if (w.next <= rev) w.next = rev + 1;
    }
  }

  #cutIfSlow(w: Watcher): boolean {
    if (w.sink.backlogBytes() <= MAX_WATCH_BACKLOG_BYTES) return false;
    this.#cut(w, 'WATCH_TOO_SLOW', 'The watcher is not reading fast enough; resume from resumeRevision');
    return true;
  }

  #cut(w: Watcher, code: string, message: string): void {
    w.closed = true;
    this.#watchers.delete(w);
    w.sink.close({ code, message, resumeRevision: w.next });
  }

  closeAll(message: string): void {
    for (const w of [...this.#watchers]) this.#cut(w, 'SHUTTING_DOWN', message);
  }
}
