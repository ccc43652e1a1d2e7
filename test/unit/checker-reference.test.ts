import { describe, expect, test } from 'vitest';
import { SeededRng, type Rng } from '../../src/util/rng.js';
import type { Operation, OpOutput } from '../chaos/checker/history.js';
import { checkLinearizability, MAX_WINDOW_OPS } from '../chaos/checker/linearizability.js';
import { buildKeyModel, INITIAL_STATE, step, type KeyOp, type RegisterState } from '../chaos/checker/register-model.js';
import { simulateHistory } from '../chaos/checker/simulated-history.js';

/**
 * The definition, searched by brute force: any pending op invoked no later than the earliest
 * completion among pending ok ops may go next, and the history is linearizable once every ok op is
 * placed (unknown-outcome ops may be placed or not). No memo, no pruning, no normal form: the
 * optimized search must agree with it on every small history.
 */
function bruteForce(ops: readonly KeyOp[], state: RegisterState, done: ReadonlySet<KeyOp>): boolean {
  const pendingRequired = ops.filter((o) => o.required && !done.has(o));
  if (pendingRequired.length === 0) return true;
  const deadline = Math.min(...pendingRequired.map((o) => o.completeMs));
  for (const o of ops) {
    if (done.has(o) || o.invokeMs > deadline) continue;
    const next = step(state, o.effect);
    if (next !== null && bruteForce(ops, next, new Set([...done, o]))) return true;
  }
  return false;
}

function referenceVerdict(history: readonly Operation[]): boolean {
  const keys = new Set(history.map((o) => o.key));
  return [...keys].every((key) => bruteForce(buildKeyModel(history.filter((o) => o.key === key)).ops, INITIAL_STATE, new Set()));
}

/** Breaks one ok op's output in a way a buggy store might. */
function mutate(history: readonly Operation[], rng: Rng): Operation[] {
  const ok = history.filter((o) => o.outcome === 'ok');
  if (ok.length === 0) return [...history];
  const victim = ok[rng.int(0, ok.length)];
  const written = history.filter((o) => o.input.value !== undefined);
  const output = mutatedOutput(victim, written, rng);
  return history.map((o) => (o === victim ? { ...o, output } : o));
}

function mutatedOutput(op: Operation, written: readonly Operation[], rng: Rng): OpOutput {
  const rev = op.output.modRevision;
  switch (op.kind) {
    case 'get': {
      if (written.length === 0 || rng.chance(0.3)) return { value: null };
      const w = written[rng.int(0, written.length)];
      return { value: w.input.value, modRevision: w.output.modRevision ?? rng.int(1, 30) };
    }
    case 'delete':
      return { deleted: op.output.deleted === 1 ? 0 : 1 };
    case 'put':
      return { modRevision: rev === undefined ? 1 : Math.max(1, rev - rng.int(1, 4)) };
    case 'cas':
    case 'create':
      return op.output.preconditionFailed ? { modRevision: rng.int(1, 30) } : { preconditionFailed: true };
  }
}

/** Small histories of varied shape: 8 to 12 ops, 2 to 5 clients, 10% to 50% unknown outcomes. */
function smallHistory(seed: number): Operation[] {
  return simulateHistory({
    seed, ops: 8 + (seed % 5), clients: 2 + (seed % 4), keys: 1 + (seed % 7 === 0 ? 1 : 0),
    unknownRate: [0.1, 0.3, 0.5][seed % 3], failRate: 0.05,
  });
}

describe('the optimized search agrees with brute force on small histories', () => {
  const SEEDS = 600;

  test('correct stores, with many unknown and failed ops', () => {
    let unknownOps = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const history = smallHistory(seed);
      unknownOps += history.filter((o) => o.outcome === 'unknown').length;
      const verdict = checkLinearizability(history).verdict;
      expect({ seed, verdict }).toEqual({ seed, verdict: 'linearizable' });
      expect(referenceVerdict(history)).toBe(true);
    }
    expect(unknownOps).toBeGreaterThan(SEEDS);
  });

  test('stores with up to three corrupted answers; failures come with a bounded window around the culprit', () => {
    const verdicts = { linearizable: 0, 'not-linearizable': 0 };
    for (let seed = 1; seed <= SEEDS; seed++) {
      const rng = new SeededRng(seed);
      let history = smallHistory(seed);
      for (let m = 0; m <= seed % 3; m++) history = mutate(history, rng);
      const expected = referenceVerdict(history) ? 'linearizable' : 'not-linearizable';
      const result = checkLinearizability(history);
      expect({ seed, verdict: result.verdict }).toEqual({ seed, verdict: expected });
      verdicts[expected]++;
      if (result.failure === undefined) continue;
      const { key, window, stuck } = result.failure;
      expect(window.map((o) => o.id)).toContain(stuck.id);
      expect(window.every((o) => o.key === key)).toBe(true);
      expect(window.length).toBeLessThanOrEqual(MAX_WINDOW_OPS);
    }
    // Both kinds occur, so the comparison means something.
    expect(verdicts['not-linearizable']).toBeGreaterThan(SEEDS / 4);
    expect(verdicts.linearizable).toBeGreaterThan(SEEDS / 20);
  });
});
