import { describe, expect, test } from 'vitest';
import type { Ready } from '../../src/raft/ready.js';
import type { Entry, HardState } from '../../src/raft/types.js';
import { MemoryLogStore } from '../../src/storage/memory-log-store.js';

const CONFIG = { voters: ['n1', 'n2', 'n3'], learners: [] };

function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ index: i, term, type: 'normal', data: new Uint8Array([i]) });
  return out;
}

function ready(parts: { entries?: Entry[]; hardState?: HardState; mustSync?: boolean }): Ready {
  const es = parts.entries ?? [];
  return {
    softState: null,
    hardState: parts.hardState ?? null,
    entries: es,
    snapshot: null,
    messages: [],
    committed: [],
    readStates: [],
    mustSync: parts.mustSync ?? es.length > 0,
  };
}

/** The log as index/term pairs after a crash and reload. */
function logAfterCrash(store: MemoryLogStore, keepUnsynced = 0): string {
  store.crash(keepUnsynced);
  return store.load().entries.map((e) => `${e.index}/${e.term}`).join(' ');
}

describe('MemoryLogStore', () => {
  test('a crash loses unsynced writes and keeps synced ones', () => {
    const store = MemoryLogStore.fresh(CONFIG);
    store.save(ready({ entries: entries(1, 3, 1), hardState: { term: 1, vote: 'n1', commit: 0 } }));
    store.sync();
    store.save(ready({ entries: entries(4, 5, 1), hardState: { term: 1, vote: 'n1', commit: 3 } }));
    expect(store.lastIndex()).toBe(5); // the page cache serves reads before the sync
    expect(logAfterCrash(store)).toBe('1/1 2/1 3/1');
    expect(store.load().hardState).toEqual({ term: 1, vote: 'n1', commit: 0 });
  });

  test('a commit-only hard state (mustSync false) may be lost, and is kept once a later sync covers it', () => {
    const store = MemoryLogStore.fresh(CONFIG);
    store.save(ready({ entries: entries(1, 2, 1), hardState: { term: 1, vote: 'n1', commit: 0 } }));
    store.sync();
    store.save(ready({ hardState: { term: 1, vote: 'n1', commit: 2 }, mustSync: false }));
    store.crash(0);
    expect(store.load().hardState.commit).toBe(0);
    store.save(ready({ hardState: { term: 1, vote: 'n1', commit: 2 }, mustSync: false }));
    store.save(ready({ entries: entries(3, 3, 1) }));
    store.sync();
    store.crash(0);
    expect(store.load().hardState.commit).toBe(2);
  });

  test('replacing a suffix truncates the stored log from the first new entry', () => {
    const store = MemoryLogStore.fresh(CONFIG);
    store.save(ready({ entries: entries(1, 5, 1) }));
    store.save(ready({ entries: entries(3, 4, 2) }));
    store.sync();
    expect(logAfterCrash(store)).toBe('1/1 2/1 3/2 4/2');
  });

  test('a torn tail keeps a prefix of the unsynced writes, never a later write without an earlier one', () => {
    const store = MemoryLogStore.fresh(CONFIG);
    store.save(ready({ entries: entries(1, 1, 1) }));
    store.save(ready({ entries: entries(2, 2, 1) }));
    store.save(ready({ entries: entries(2, 3, 2) }));
    expect(store.unsyncedWrites()).toBe(3);
    expect(logAfterCrash(store, 2)).toBe('1/1 2/1');
    expect(store.unsyncedWrites()).toBe(0);
  });

  test('the applied index and a compaction survive as the log does', () => {
    const store = MemoryLogStore.fresh(CONFIG);
    store.save(ready({ entries: entries(1, 4, 1), hardState: { term: 1, vote: null, commit: 4 } }));
    store.sync();
    store.saveApplied(4);
    const image = new Uint8Array([9, 9]);
    expect(store.compact(3, image)).toEqual({ index: 3, term: 1, config: CONFIG }); // compaction syncs
    store.crash(0);
    const loaded = store.load();
    expect(loaded.snapshot.index).toBe(3);
    expect(loaded.image).toEqual(image);
    expect(loaded.entries.map((e) => e.index)).toEqual([4]);
    expect(loaded.applied).toBe(4);
    expect(store.durablyHolds(2, 1)).toBe(true); // covered by the snapshot
    expect(store.durablyHolds(4, 1)).toBe(true);
    expect(store.durablyHolds(4, 2)).toBe(false);
  });
});
