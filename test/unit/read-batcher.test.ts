import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { ReadBatcher } from '../../src/member/reads.js';

const TIMEOUT_MS = 1000;

/** Where each read ended up: 'ok', an error code, or still 'pending'. */
function track(p: Promise<void>): { state: string } {
  const t = { state: 'pending' };
  p.then(
    () => (t.state = 'ok'),
    (e: { code?: string }) => (t.state = e.code ?? 'error'),
  );
  return t;
}

/** Lets settled promises run their callbacks. */
const settle = () => vi.advanceTimersByTimeAsync(0);

describe('ReadBatcher', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  test('all reads queued before a flush share one read index request', async () => {
    const reads = new ReadBatcher(100, TIMEOUT_MS);
    const a = track(reads.enqueue());
    const b = track(reads.enqueue());
    const contexts: number[] = [];
    reads.flush((ctx) => contexts.push(ctx) > 0);
    const c = track(reads.enqueue());
    reads.flush((ctx) => contexts.push(ctx) > 0);
    expect(contexts).toEqual([1, 2]);
    expect(reads.hasQueued).toBe(false);

    // The first batch's index is applied, the second's is not yet.
    reads.onReadStates([{ context: 1, index: 5 }, { context: 2, index: 9 }], 5);
    await settle();
    expect([a.state, b.state, c.state]).toEqual(['ok', 'ok', 'pending']);
    reads.onApplied(8);
    await settle();
    expect(c.state).toBe('pending');
    reads.onApplied(9);
    await settle();
    expect(c.state).toBe('ok');
  });

  test('no leader: a flush fails its batch; index 0 (leadership lost) fails it too', async () => {
    const reads = new ReadBatcher(100, TIMEOUT_MS);
    const a = track(reads.enqueue());
    reads.flush(() => false);
    const b = track(reads.enqueue());
    reads.flush(() => true);
    reads.onReadStates([{ context: 2, index: 0 }], 10);
    await settle();
    expect([a.state, b.state]).toEqual(['NO_LEADER', 'NO_LEADER']);
  });

  test('a read not answered within the timeout fails with TIMEOUT; answered reads are not touched', async () => {
    const reads = new ReadBatcher(100, TIMEOUT_MS);
    const early = track(reads.enqueue());
    reads.flush(() => true);
    reads.onReadStates([{ context: 1, index: 1 }], 1);
    const stuck = track(reads.enqueue());
    reads.flush(() => true);
    await vi.advanceTimersByTimeAsync(TIMEOUT_MS / 2);
    const later = track(reads.enqueue());
    reads.flush(() => true);
    expect([early.state, stuck.state, later.state]).toEqual(['ok', 'pending', 'pending']);

    await vi.advanceTimersByTimeAsync(TIMEOUT_MS / 2);
    expect([stuck.state, later.state]).toEqual(['TIMEOUT', 'pending']);
    // Its answer arriving afterwards changes nothing.
    reads.onReadStates([{ context: 2, index: 1 }], 1);
    await settle();
    expect(stuck.state).toBe('TIMEOUT');

    await vi.advanceTimersByTimeAsync(TIMEOUT_MS / 2);
    expect(later.state).toBe('TIMEOUT');
    // Nothing is left waiting, so no timer is left behind either.
    expect(vi.getTimerCount()).toBe(0);
  });

  test('the bound on pending reads: a full batcher refuses with OVERLOADED until reads finish', async () => {
    const reads = new ReadBatcher(2, TIMEOUT_MS);
    const a = track(reads.enqueue());
    track(reads.enqueue());
    const refused = track(reads.enqueue());
    await settle();
    expect(refused.state).toBe('OVERLOADED');
    reads.flush(() => true);
    reads.onReadStates([{ context: 1, index: 1 }], 1);
    await settle();
    expect(a.state).toBe('ok');
    const again = track(reads.enqueue());
    await settle();
    expect(again.state).toBe('pending');
  });

  test('many reads over many timeouts: every read settles exactly once', async () => {
    const reads = new ReadBatcher(100_000, TIMEOUT_MS);
    const all: Array<{ state: string }> = [];
    let context = 0;
    // 5,000 reads, 10 per millisecond; every other batch is answered, the rest time out.
    for (let ms = 0; ms < 500; ms++) {
      for (let i = 0; i < 10; i++) all.push(track(reads.enqueue()));
      reads.flush((ctx) => (context = ctx) > 0);
      if (context % 2 === 0) reads.onReadStates([{ context, index: 1 }], 1);
      await vi.advanceTimersByTimeAsync(1);
    }
    await vi.advanceTimersByTimeAsync(TIMEOUT_MS);
    const counts = all.reduce<Record<string, number>>((m, t) => ({ ...m, [t.state]: (m[t.state] ?? 0) + 1 }), {});
    expect(counts).toEqual({ ok: 2500, TIMEOUT: 2500 });
    expect(vi.getTimerCount()).toBe(0);
    // The bound counts only unsettled reads: all of them are settled now.
    const fresh = track(reads.enqueue());
    await settle();
    expect(fresh.state).toBe('pending');
  });

  test('failAll fails every read wherever it waits, and leaves no timer', async () => {
    const reads = new ReadBatcher(100, TIMEOUT_MS);
    const confirmedNotApplied = track(reads.enqueue());
    reads.flush(() => true);
    reads.onReadStates([{ context: 1, index: 7 }], 1);
    const inFlight = track(reads.enqueue());
    reads.flush(() => true);
    const queued = track(reads.enqueue());
    reads.failAll(() => Object.assign(new Error('stopping'), { code: 'SHUTTING_DOWN' }));
    await settle();
    expect([confirmedNotApplied.state, inFlight.state, queued.state]).toEqual(['SHUTTING_DOWN', 'SHUTTING_DOWN', 'SHUTTING_DOWN']);
    expect(vi.getTimerCount()).toBe(0);
  });
});
