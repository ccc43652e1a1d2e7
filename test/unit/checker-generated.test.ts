import { describe, expect, test } from 'vitest';
import { checkLinearizability } from '../chaos/checker/linearizability.js';
import { injectStaleRead, simulateHistory } from '../chaos/checker/simulated-history.js';

/** Generous for CI, yet far below what a search without memoization would need. */
const STEP_BUDGET = 2_000_000;
const SIZE = { ops: 3_000, clients: 8, keys: 5 };

describe('generated histories of a correct register (performance sanity, not a timing assertion)', () => {
  test.each([1, 2, 3])('seed %i: ~3,000 ops over 5 keys and 8 clients are judged linearizable', (seed) => {
    const history = simulateHistory({ seed, ...SIZE });
    expect(history.some((o) => o.outcome === 'unknown')).toBe(true);
    expect(new Set(history.map((o) => o.client)).size).toBe(SIZE.clients);
    const result = checkLinearizability(history, { maxStepsPerKey: STEP_BUDGET });
    expect(result.verdict).toBe('linearizable');
    expect(Object.keys(result.perKey)).toHaveLength(SIZE.keys);
  });

  test.each([1, 2, 3])('seed %i: the same with one read made stale is judged not linearizable', (seed) => {
    const { history, readId } = injectStaleRead(simulateHistory({ seed, ...SIZE }), seed);
    const read = history.find((o) => o.id === readId);
    const result = checkLinearizability(history, { maxStepsPerKey: STEP_BUDGET });
    expect(result.verdict).toBe('not-linearizable');
    expect(result.failure?.key).toBe(read?.key);
    expect(result.failure?.window.map((o) => o.id)).toContain(readId);
    const clean = Object.values(result.perKey).filter((k) => k.key !== read?.key);
    expect(clean.every((k) => k.verdict === 'linearizable')).toBe(true);
  });

  test('high unknown rates stay within budget', () => {
    const history = simulateHistory({ seed: 7, ...SIZE, unknownRate: 0.2 });
    const result = checkLinearizability(history, { maxStepsPerKey: STEP_BUDGET });
    expect(result.verdict).toBe('linearizable');
  });
});
