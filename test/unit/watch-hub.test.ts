import { describe, expect, test } from 'vitest';
import type { HistoryPage, HubEvent, WatchFilter, WatchSink } from '../../src/member/watch-hub.js';
import { MAX_WATCH_BACKLOG_BYTES, WatchHub } from '../../src/member/watch-hub.js';

function ev(rev: number, key = 'k', type: 'put' | 'delete' = 'put'): HubEvent {
  return { type, key, value: Buffer.from(`v${rev}`), modRevision: rev };
}

function recordingSink() {
  const got: number[] = [];
  const progress: number[] = [];
  let closed: { code: string; resumeRevision: number } | null = null;
  let backlog = 0;
  const sink: WatchSink = {
    events: (es) => got.push(...es.map((e) => e.modRevision)),
    progress: (r) => progress.push(r),
    close: (r) => (closed = r),
    backlogBytes: () => backlog,
  };
  return { sink, got, progress, closed: () => closed, setBacklog: (n: number) => (backlog = n) };
}

/** A store whose history holds `history` and whose revision is its last event. */
function hubOver(history: HubEvent[], onRead?: () => void) {
  const state = { revision: history.at(-1)?.modRevision ?? 0 };
  const hub = new WatchHub({
    revision: () => state.revision,
    async readHistory(from: number, filter: WatchFilter, limit: number): Promise<HistoryPage> {
      onRead?.();
      const match = history.filter((e) => e.modRevision >= from && (filter.prefix ? e.key.startsWith(filter.key) : e.key === filter.key));
      return { events: match.slice(0, limit), more: match.length > limit };
    },
  });
  const commit = (e: HubEvent) => {
    history.push(e);
    state.revision = e.modRevision;
    hub.publish([e], e.modRevision);
  };
  return { hub, commit };
}

describe('WatchHub', () => {
  test('a watch from now sees only later changes, in order', async () => {
    const { hub, commit } = hubOver([ev(1), ev(2)]);
    const r = recordingSink();
    await hub.open({ key: 'k', prefix: false }, null, r.sink);
    commit(ev(3));
    commit(ev(4, 'other'));
    commit(ev(5));
    expect(r.got).toEqual([3, 5]);
  });

  test('a watch from an old revision replays history, then goes live without gap or repeat', async () => {
    const history = [ev(1), ev(2), ev(3)];
    let hubRef: { commit: (e: HubEvent) => void } | null = null;
    let injected = false;
    // A write lands while the history is being read: it must appear exactly once.
    const { hub, commit } = hubOver(history, () => {
      if (!injected && hubRef) {
        injected = true;
        hubRef.commit(ev(4));
      }
    });
    hubRef = { commit };
    const r = recordingSink();
    await hub.open({ key: 'k', prefix: false }, 2, r.sink);
    commit(ev(5));
    expect(r.got).toEqual([2, 3, 4, 5]);
  });

  test('prefix filters by key prefix', async () => {
    const { hub, commit } = hubOver([]);
    const r = recordingSink();
    await hub.open({ key: 'app/', prefix: true }, null, r.sink);
    commit(ev(1, 'app/a'));
    commit(ev(2, 'apple'));
    commit(ev(3, 'app/b', 'delete'));
    expect(r.got).toEqual([1, 3]);
  });

  test('a slow watcher is cut off with the revision to resume from', async () => {
    const { hub, commit } = hubOver([]);
    const r = recordingSink();
    await hub.open({ key: 'k', prefix: false }, null, r.sink);
    commit(ev(1));
    r.setBacklog(MAX_WATCH_BACKLOG_BYTES + 1);
    commit(ev(2));
    expect(r.closed()).toMatchObject({ code: 'WATCH_TOO_SLOW', resumeRevision: 3 });
    commit(ev(3));
    expect(r.got).toEqual([1, 2]);
    expect(hub.size).toBe(0);
  });

  test('progress notifications carry the published revision', async () => {
    const { hub, commit } = hubOver([]);
    const r = recordingSink();
    await hub.open({ key: 'k', prefix: false }, null, r.sink);
    commit(ev(7, 'elsewhere'));
    hub.progressAll();
    expect(r.progress).toEqual([7]);
  });
});
