import { expect, test } from 'vitest';
import { collectGarbage, releaseMemory, type MemoryReleased } from '../../src/util/release-memory.js';

test('collectGarbage runs a full collection: an unreachable object is gone afterwards', async () => {
  let garbage: { payload: number[] } | null = { payload: Array.from({ length: 100_000 }, (_, i) => i) };
  const ref = new WeakRef(garbage);
  garbage = null;
  // A WeakRef's target stays alive until the job that created or read it ends.
  await new Promise((resolve) => setImmediate(resolve));
  const freed = collectGarbage();
  expect(freed).not.toBeNull();
  expect(freed!.rounds).toBe(1);
  expect(freed!.heapAfter).toBeGreaterThan(0);
  expect(ref.deref()).toBeUndefined();
  // The flag is put back: no `gc` appears in this context.
  expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
});

test('releaseMemory collects again while it pays, then reports the totals once', async () => {
  // A burst whose few survivors are spread over many old-generation pages.
  const survivors: object[] = [];
  let burst: object[] = [];
  for (let i = 0; i < 600_000; i++) {
    const o = { key: `key-${i}`, at: [i, i + 1] };
    burst.push(o);
    if (i % 64 === 0) survivors.push(o);
    if (burst.length >= 100_000) burst = [];
  }
  burst = [];
  const reports: MemoryReleased[] = [];
  const released = new Promise<MemoryReleased>((resolve) => releaseMemory((r) => (reports.push(r), resolve(r))));
  const r = await released;
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(reports).toHaveLength(1);
  expect(r.rounds).toBeGreaterThanOrEqual(1);
  expect(r.rounds).toBeLessThanOrEqual(4);
  expect(r.heapAfter).toBeLessThanOrEqual(r.heapBefore);
  expect(survivors).toHaveLength(600_000 / 64);
});
