import { describe, expect, test } from 'vitest';
import { HistoryBuilder } from '../chaos/checker/history-builder.js';
import { checkLinearizability, MAX_WINDOW_OPS, type CheckResult } from '../chaos/checker/linearizability.js';

function check(h: HistoryBuilder): CheckResult {
  return checkLinearizability(h.ops());
}

function windowIds(result: CheckResult): number[] {
  return (result.failure?.window ?? []).map((op) => op.id);
}

describe('linearizable histories', () => {
  test('sequential puts and gets, with store-wide (non-consecutive) revisions', () => {
    const h = new HistoryBuilder();
    h.get(1, [0, 1], null);
    h.put(1, [2, 3], 'A', 4);
    h.get(2, [4, 5], 'A', 4);
    h.put(2, [6, 7], 'B', 11);
    h.get(1, [8, 9], 'B', 11);
    expect(check(h)).toMatchObject({ ok: true, verdict: 'linearizable' });
  });

  test.each([
    ['the old value', 'A', 3],
    ['the new value', 'B', 7],
  ])('a get overlapping a put may see %s', (_, value, rev) => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 3);
    h.put(1, [10, 20], 'B', 7);
    h.get(2, [12, 14], value, rev);
    h.get(2, [21, 22], 'B', 7);
    expect(check(h).verdict).toBe('linearizable');
  });

  test('an unknown put that a later read shows took effect, after its client moved on', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 3);
    h.put(1, [2, null], 'X');
    h.get(1, [5, 6], 'A', 3); // X had not taken effect yet
    h.get(2, [8, 9], 'X', 9); // now it has; the ETag names its revision
    h.put(2, [10, 11], 'B', 12);
    h.get(1, [12, 13], 'B', 12);
    expect(check(h).verdict).toBe('linearizable');
  });

  test('an unknown put that never shows up', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 3);
    h.put(2, [2, null], 'X');
    h.get(1, [5, 6], 'A', 3);
    h.put(1, [7, 8], 'B', 5);
    h.get(2, [9, 10], 'B', 5);
    expect(check(h).verdict).toBe('linearizable');
  });

  test('a CAS chain, each If-Match on the ETag the previous write returned', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 3);
    h.cas(1, [2, 3], 3, 'B', 4);
    h.cas(2, [4, 5], 4, 'C', 8);
    h.cas(1, [6, 7], 4, 'D', 'refused'); // a stale If-Match is refused
    h.get(2, [8, 9], 'C', 8);
    expect(check(h).verdict).toBe('linearizable');
  });

  test('create on an absent key, and a second create refused', () => {
    const h = new HistoryBuilder();
    h.get(1, [0, 1], null);
    h.create(1, [2, 3], 'A', 2);
    h.create(2, [4, 5], 'B', 'refused');
    h.get(2, [6, 7], 'A', 2);
    expect(check(h).verdict).toBe('linearizable');
  });

  test('delete, then get 404, then delete of nothing', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 2);
    h.del(1, [2, 3], 1);
    h.get(2, [4, 5], null);
    h.del(2, [6, 7], 0);
    h.create(1, [8, 9], 'B', 10);
    expect(check(h).verdict).toBe('linearizable');
  });

  test('creates succeeding twice are fine with a delete between them', () => {
    const h = new HistoryBuilder();
    h.create(1, [0, 1], 'A', 2);
    h.del(2, [2, 3], 1);
    h.create(1, [4, 5], 'B', 4);
    expect(check(h).verdict).toBe('linearizable');
  });

  test('an unknown CAS that took effect explains a later 412 on the same If-Match', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 3);
    h.cas(1, [2, null], 3, 'X');
    h.cas(2, [5, 6], 3, 'Y', 'refused');
    expect(check(h).verdict).toBe('linearizable');
  });

  test('an unknown delete may land long after its client gave up', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 3);
    h.del(2, [2, null]);
    h.get(2, [5, 6], 'A', 3);
    h.get(1, [50, 51], null);
    expect(check(h).verdict).toBe('linearizable');
  });

  test('failed ops and unknown reads are discarded', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 3);
    h.failed(2, [2, 3], 'put', { value: 'Z' });
    h.get(1, [4, null], 'never', 9);
    h.get(2, [5, 6], 'A', 3);
    const result = check(h);
    expect(result.verdict).toBe('linearizable');
    expect(result.perKey.k).toMatchObject({ requiredOps: 2, unknownOps: 0, discardedOps: 2 });
  });

  test('a value written twice is refused: reads could not tell the writes apart', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 2);
    h.put(2, [2, null], 'A');
    expect(() => check(h)).toThrow(/#0 and #1 both write "A"/);
  });

  test('an empty history is linearizable', () => {
    expect(checkLinearizability([])).toMatchObject({ ok: true, verdict: 'linearizable', perKey: {} });
  });
});

describe('histories that are not linearizable', () => {
  test('a stale read: put A, put B, then get returns A', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 2);
    const putB = h.put(2, [2, 3], 'B', 5);
    const read = h.get(1, [4, 5], 'A', 2);
    const result = check(h);
    expect(result).toMatchObject({ ok: false, verdict: 'not-linearizable' });
    expect(result.failure?.stuck.id).toBe(read);
    expect(windowIds(result)).toEqual(expect.arrayContaining([putB, read]));
    expect(result.failure?.selfContained).toBe(true);
    expect(result.failure?.message).toMatch(/#2 .*get.*cannot be linearized.*#1 c2 put "B"/);
  });

  test('a lost write: put ok, then get 404 with no delete', () => {
    const h = new HistoryBuilder();
    const put = h.put(1, [0, 1], 'A', 2);
    const read = h.get(2, [2, 3], null);
    const result = check(h);
    expect(result.verdict).toBe('not-linearizable');
    expect(windowIds(result)).toEqual([put, read]);
  });

  test('a CAS that succeeded twice on the same If-Match', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 3);
    const first = h.cas(1, [2, 3], 3, 'B', 4);
    const second = h.cas(2, [4, 5], 3, 'C', 6);
    const result = check(h);
    expect(result.verdict).toBe('not-linearizable');
    expect(windowIds(result)).toEqual(expect.arrayContaining([first, second]));
  });

  test('two concurrent CASes on the same If-Match cannot both succeed', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 3);
    h.cas(1, [2, 6], 3, 'B', 4);
    h.cas(2, [3, 7], 3, 'C', 6);
    expect(check(h).verdict).toBe('not-linearizable');
  });

  test('create (If-None-Match) that succeeded twice without a delete between', () => {
    const h = new HistoryBuilder();
    const first = h.create(1, [0, 1], 'A', 2);
    const second = h.create(2, [2, 3], 'B', 4);
    const result = check(h);
    expect(result.verdict).toBe('not-linearizable');
    expect(windowIds(result)).toEqual(expect.arrayContaining([first, second]));
  });

  test('a get that returns a value nobody wrote', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 2);
    const read = h.get(2, [2, 3], 'ghost', 7);
    const result = check(h);
    expect(result.verdict).toBe('not-linearizable');
    expect(result.failure?.stuck.id).toBe(read);
  });

  test('a get that returns the value of a failed write', () => {
    const h = new HistoryBuilder();
    h.failed(1, [0, 1], 'put', { value: 'A' });
    h.get(2, [2, 3], 'A', 7);
    expect(check(h).verdict).toBe('not-linearizable');
  });

  test('an unknown put seen, overwritten, then seen again (it took effect twice)', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, null], 'X');
    h.get(2, [2, 3], 'X', 4);
    h.put(2, [4, 5], 'B', 6);
    h.get(3, [6, 7], 'X', 4);
    expect(check(h).verdict).toBe('not-linearizable');
  });

  test('a later write given a lower revision', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 5);
    h.put(2, [2, 3], 'B', 4);
    expect(check(h).verdict).toBe('not-linearizable');
  });

  test('a read whose ETag is not the revision its value was written at', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 5);
    h.get(2, [2, 3], 'A', 6);
    expect(check(h).verdict).toBe('not-linearizable');
  });

  test('two reads disagreeing on the revision of an unknown write', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, null], 'X');
    h.get(2, [2, 3], 'X', 9);
    h.get(3, [4, 5], 'X', 10);
    expect(check(h).verdict).toBe('not-linearizable');
  });

  test('a CAS refused (412) although the key had exactly that modRevision', () => {
    const h = new HistoryBuilder();
    h.put(1, [0, 1], 'A', 3);
    h.cas(2, [2, 3], 3, 'B', 'refused');
    expect(check(h).verdict).toBe('not-linearizable');
  });
});

describe('per-key split and the failure window', () => {
  test('a violation on one key among clean ones names that key, with a small window holding the culprits', () => {
    const h = new HistoryBuilder();
    const keys = ['a', 'b', 'c'].map((k) => h.forKey(k));
    let t = 0;
    let rev = 1;
    // Plenty of clean, concurrent traffic on every key before the violation.
    for (let i = 0; i < 200; i++) {
      for (const [n, key] of keys.entries()) {
        const value = `${n}-${i}`;
        key.put(n, [t, t + 2], value, ++rev);
        key.get(n + 3, [t + 1, t + 3], value, rev);
      }
      t += 4;
    }
    const b = keys[1];
    const lastOnB = rev - 1; // '1-199', written by the last round's second put
    const putB = b.put(1, [t, t + 1], 'fresh', ++rev);
    const stale = b.get(4, [t + 2, t + 3], '1-199', lastOnB);
    keys[2].put(2, [t + 4, t + 5], 'later', ++rev);

    const result = check(h);
    expect(result.verdict).toBe('not-linearizable');
    expect(result.failure?.key).toBe('b');
    expect(result.perKey.a.verdict).toBe('linearizable');
    expect(result.perKey.b.verdict).toBe('not-linearizable');
    expect(result.perKey.c.verdict).toBe('linearizable');
    expect(result.failure?.window.length).toBeLessThanOrEqual(4);
    expect(windowIds(result)).toEqual(expect.arrayContaining([putB, stale]));
    expect(result.failure?.window.every((op) => op.key === 'b')).toBe(true);
    expect(result.failure?.partialLinearizations[0].length).toBeGreaterThanOrEqual(400);
  });

  test('windows never exceed the bound, even with more ops in flight than it', () => {
    const h = new HistoryBuilder();
    h.put(0, [0, 1], 'A', 2);
    for (let i = 0; i < 60; i++) h.get(i, [2, 100], i === 30 ? 'ghost' : 'A', i === 30 ? 3 : 2);
    const result = check(h);
    expect(result.verdict).toBe('not-linearizable');
    expect(result.failure?.stuck.input).toEqual({});
    expect(result.failure?.window.length).toBeLessThanOrEqual(MAX_WINDOW_OPS);
    expect(windowIds(result)).toContain(result.failure?.stuck.id);
  });

  test('running out of budget is a timeout, not a pass', () => {
    const h = new HistoryBuilder();
    for (let i = 0; i < 20; i++) h.put(i, [0, 10], `v${i}`, 100 + i);
    h.get(0, [11, 12], 'v0', 100);
    const result = checkLinearizability(h.ops(), { maxStepsPerKey: 10 });
    expect(result).toMatchObject({ ok: false, verdict: 'timeout' });
    expect(result.perKey.k.message).toMatch(/undecided after/);
    expect(result.failure).toBeUndefined();
  });
});
