import { describe, expect, test } from 'vitest';
import { majorityValue, quorumSize } from '../../src/raft/config.js';

/** The definition: sort descending, take the quorum-th. */
function bySorting(values: readonly number[]): number {
  return [...values].sort((a, b) => b - a)[quorumSize(values.length) - 1];
}

describe('majorityValue', () => {
  test('the quorum-th largest value, for one to seven voters', () => {
    expect(majorityValue([7])).toBe(7);
    expect(majorityValue([5, 9])).toBe(5); // two voters: both must have it
    expect(majorityValue([3, 9, 5])).toBe(5);
    expect(majorityValue([9, 9, 0])).toBe(9);
    expect(majorityValue([0, 0, 9])).toBe(0);
    expect(majorityValue([4, 1, 8, 6])).toBe(4); // four voters: three must have it
    expect(majorityValue([10, 2, 7, 7, 3])).toBe(7);
  });

  test('agrees with sorting on every shape of small input, duplicates included', () => {
    // A seeded generator (xorshift32), so a failure names a reproducible input.
    let x = 0x9e3779b9;
    const next = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % 6; // few distinct values, so ties are common
    };
    for (let round = 0; round < 2000; round++) {
      const values = Array.from({ length: 1 + (round % 7) }, next);
      expect(majorityValue(values), JSON.stringify(values)).toBe(bySorting(values));
    }
  });

  test('leaves its input as it was', () => {
    const values = [3, 1, 2];
    majorityValue(values);
    expect(values).toEqual([3, 1, 2]);
  });
});
