import { describe, expect, test } from 'vitest';
import { describeOperation, HistoryRecorder, NO_RESPONSE, parseHistory } from '../chaos/checker/history.js';

/** A clock the test moves by hand. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 100;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

describe('HistoryRecorder', () => {
  test('records invocations and their outcomes with the clock it was given', () => {
    const clock = manualClock();
    const h = new HistoryRecorder({ now: clock.now });
    const put = h.invoke(1, 'k', 'put', { value: 'A' });
    const get = h.invoke(2, 'k', 'get');
    clock.advance(5);
    h.ok(put, { modRevision: 7, createRevision: 7, version: 1 });
    h.unknown(get, 'timeout');
    const cas = h.invoke(2, 'k', 'cas', { value: 'B', ifMatch: 7 });
    clock.advance(1);
    h.ok(cas, { preconditionFailed: true, status: 412 });
    const del = h.invoke(1, 'k', 'delete');
    h.fail(del, { status: 503, error: 'NO_LEADER' });

    expect(h.operations).toEqual([
      { id: 0, client: 1, key: 'k', kind: 'put', input: { value: 'A' }, invokeMs: 100, completeMs: 105, outcome: 'ok', output: { modRevision: 7, createRevision: 7, version: 1 } },
      { id: 1, client: 2, key: 'k', kind: 'get', input: {}, invokeMs: 100, completeMs: null, outcome: 'unknown', output: { error: 'timeout' } },
      { id: 2, client: 2, key: 'k', kind: 'cas', input: { value: 'B', ifMatch: 7 }, invokeMs: 105, completeMs: 106, outcome: 'ok', output: { preconditionFailed: true, status: 412 } },
      { id: 3, client: 1, key: 'k', kind: 'delete', input: {}, invokeMs: 106, completeMs: 106, outcome: 'fail', output: { status: 503, error: 'NO_LEADER' } },
    ]);
    expect(h.operations.map(describeOperation)).toEqual([
      '#0 c1 put "A" → rev 7',
      '#1 c2 get → unknown (timeout)',
      '#2 c2 cas if-match 7 "B" → 412',
      '#3 c1 delete → fail (NO_LEADER)',
    ]);
  });

  test('an op still in flight when the history is taken is unknown', () => {
    const h = new HistoryRecorder();
    h.invoke(1, 'k', 'put', { value: 'A' });
    expect(h.toJSON().operations[0]).toMatchObject({ outcome: 'unknown', completeMs: null, output: { error: NO_RESPONSE } });
  });

  test('one op per client at a time, resolved once', () => {
    const h = new HistoryRecorder();
    const id = h.invoke(1, 'k', 'get');
    expect(() => h.invoke(1, 'other', 'get')).toThrow(/client 1 invoked a get while op #0 is in flight/);
    h.ok(id, { value: null });
    expect(() => h.ok(id, { value: null })).toThrow(/already resolved/);
    expect(() => h.fail(42)).toThrow(/no operation #42/);
    h.invoke(1, 'k', 'get'); // free again
  });

  test('inputs must fit the kind', () => {
    const h = new HistoryRecorder();
    expect(() => h.invoke(1, 'k', 'put')).toThrow(/input.value/);
    expect(() => h.invoke(1, 'k', 'cas', { value: 'A' })).toThrow(/ifMatch/);
    expect(() => h.invoke(1, 'k', 'get', { value: 'A' })).toThrow(/input.value/);
  });

  test('round-trips through JSON text, and new ids continue after the loaded ones', () => {
    const h = new HistoryRecorder();
    h.ok(h.invoke(1, 'a/b', 'put', { value: 'v' }), { modRevision: 2 });
    h.unknown(h.invoke(2, 'a/b', 'create', { value: 'w' }), 'ECONNRESET');
    const loaded = HistoryRecorder.fromJSON(JSON.stringify(h));
    expect(loaded.operations).toEqual(h.operations);
    expect(loaded.invoke(1, 'a/b', 'get')).toBe(2);
  });

  test('rejects malformed histories', () => {
    const op = { id: 0, client: 1, key: 'k', kind: 'get', input: {}, invokeMs: 1, completeMs: null, outcome: 'ok', output: { value: null } };
    const doc = (ops: object[]): object => ({ format: 'flotilla-history', version: 1, operations: ops });
    expect(() => parseHistory(doc([op]))).toThrow(/completeMs must be null exactly when the outcome is unknown/);
    expect(() => parseHistory(doc([{ ...op, kind: 'scan' }]))).toThrow();
    expect(() => parseHistory({ operations: [] })).toThrow();
    expect(() => parseHistory(doc([{ ...op, completeMs: 2, output: {} }]))).toThrow(/needs output.value/);
    expect(parseHistory(doc([{ ...op, completeMs: 2 }]))).toHaveLength(1);
  });
});
