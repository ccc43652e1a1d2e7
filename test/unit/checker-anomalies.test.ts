import { describe, expect, test } from 'vitest';
import { findAnomalies } from '../chaos/checker/anomalies.js';
import { HistoryBuilder } from '../chaos/checker/history-builder.js';
import { injectStaleRead, simulateHistory } from '../chaos/checker/simulated-history.js';

describe('lost acknowledged writes, judged by the final read', () => {
  test('a correct store loses nothing and serves nothing stale', () => {
    const history = simulateHistory({ seed: 5, ops: 3_000, clients: 8, keys: 5, finalReads: true });
    expect(findAnomalies(history)).toMatchObject({ lostWrites: 0, staleReads: 0, unexplainedReads: 0, keysWithoutFinalRead: [] });
  });

  test('a final read older than an acknowledged write loses that write', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 2);
    const lost = h.put(2, [2, 3], 'B', 5);
    h.get(1, [10, 11], 'A', 2);
    const report = findAnomalies(h.ops());
    expect(report.lostWrites).toBe(1);
    expect(report.perKey.k.lostWriteIds).toEqual([lost]);
  });

  test('a final value from a later unknown-outcome write loses nothing', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 2);
    h.put(2, [2, null], 'X');
    h.get(1, [10, 11], 'X', 7);
    expect(findAnomalies(h.ops()).lostWrites).toBe(0);
  });

  test('a key ending absent needs a delete that may have followed each acknowledged write', () => {
    const deleted = new HistoryBuilder();
    deleted.put(1, [0, 1], 'A', 2);
    deleted.del(2, [2, null]);
    deleted.get(1, [10, 11], null);
    expect(findAnomalies(deleted.ops()).lostWrites).toBe(0);

    const vanished = new HistoryBuilder();
    vanished.put(1, [0, 1], 'A', 2);
    vanished.del(2, [2, 3], 1);
    const lost = vanished.put(1, [4, 5], 'B', 7);
    vanished.get(1, [10, 11], null);
    expect(findAnomalies(vanished.ops()).perKey.k.lostWriteIds).toEqual([lost]);
  });

  test('explicit final reads override the history, and a key without one is listed', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 2);
    h.forKey('other').put(1, [2, 3], 'B', 3);
    const report = findAnomalies(h.ops(), { finalReads: { k: { value: null } } });
    expect(report.lostWrites).toBe(1);
    expect(report.keysWithoutFinalRead).toEqual(['other']);
  });

  test('a final value nobody wrote is flagged', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 2);
    h.get(1, [10, 11], 'ghost', 9);
    const report = findAnomalies(h.ops());
    expect(report.perKey.k).toMatchObject({ finalUnexplained: true, lostWriteIds: [0], unexplainedReadIds: [1] });
  });
});

describe('stale reads', () => {
  test('a get returning a write older than one acknowledged before it began', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 2);
    h.put(2, [2, 3], 'B', 5);
    const stale = h.get(1, [4, 5], 'A', 2);
    h.get(2, [2.5, 6], 'A', 2); // began before B was acknowledged: fine
    expect(findAnomalies(h.ops()).perKey.k.staleReadIds).toEqual([stale]);
  });

  test('a 404 after an acknowledged write, unless a delete may have come between', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 2);
    const stale = h.get(2, [2, 3], null);
    h.del(3, [4, 6], 1);
    h.get(2, [5, 7], null); // the delete may have gone first
    expect(findAnomalies(h.ops()).perKey.k.staleReadIds).toEqual([stale]);
  });

  test('the stale read injected into a generated history is found', () => {
    const { history, readId } = injectStaleRead(simulateHistory({ seed: 9, ops: 2_000, clients: 8, keys: 5 }), 9);
    const report = findAnomalies(history);
    expect(report.staleReads).toBe(1);
    expect(Object.values(report.perKey).flatMap((k) => k.staleReadIds)).toEqual([readId]);
  });

  test('a get returning a value no write that may have happened wrote', () => {
    const h = new HistoryBuilder();
    h.failed(1, [0, 1], 'put', { value: 'A' });
    const read = h.get(2, [2, 3], 'A', 4);
    expect(findAnomalies(h.ops()).perKey.k.unexplainedReadIds).toEqual([read]);
  });
});
