/**
 * Is a recorded history linearizable? Keys are independent registers, so the history is split by key
 * and each key is checked on its own (linearizability is compositional): the whole is linearizable
 * exactly when every key is. Each key gets a step and time budget; running out yields 'timeout',
 * which is not a pass.
 *
 * The model (register-model.ts) is a register with revisions; unknown-outcome ops may take effect
 * once at any time after their invocation, or never (search.ts).
 */
import { checkOperation, type Operation } from './history.js';
import { describeFurthestPoint, findFailureWindow } from './failure-window.js';
import {
  buildKeyModel, INITIAL_STATE, viewState, type RegisterStateView,
} from './register-model.js';
import { searchLinearization, type Verdict } from './search.js';

export type { Verdict } from './search.js';
export type { RegisterStateView } from './register-model.js';
export { MAX_WINDOW_OPS } from './failure-window.js';

/**
 * A correct history of a few thousand ops per key takes thousands of steps; proving a violation can
 * take millions when many ops ended unknown (every explanation of them must be ruled out).
 */
export const DEFAULT_MAX_STEPS_PER_KEY = 20_000_000;
export const DEFAULT_MAX_MS_PER_KEY = 60_000;

export interface CheckOptions {
  readonly maxStepsPerKey?: number;
  readonly maxMsPerKey?: number;
  /** The clock the time budget is read from. */
  readonly now?: () => number;
}

export interface KeyVerdict {
  readonly key: string;
  readonly verdict: Verdict;
  /** ok ops: each must be linearized. */
  readonly requiredOps: number;
  /** Unknown-outcome writes: each may be linearized once, or never. */
  readonly unknownOps: number;
  /** Failed ops and unknown-outcome reads. */
  readonly discardedOps: number;
  readonly steps: number;
  readonly elapsedMs: number;
  readonly message?: string;
}

export interface FailureWindow {
  readonly key: string;
  /** A small set of this key's ops (sorted by invocation) that cannot be linearized from startState. */
  readonly window: readonly Operation[];
  /** The op the longest linearization could not get past. */
  readonly stuck: Operation;
  readonly startState: RegisterStateView;
  /** The window is non-linearizable whatever the key held before it, not only from startState. */
  readonly selfContained: boolean;
  /** Pending unknown-outcome ops older than the window, left out of it. */
  readonly omittedUnknownOps: number;
  readonly message: string;
  /** The longest valid partial linearization found, as op ids in order. */
  readonly partialLinearizations: readonly (readonly number[])[];
}

export interface CheckResult {
  /** true only when every key is linearizable. */
  readonly ok: boolean;
  /** not-linearizable if any key is; else timeout if any key ran out of budget. */
  readonly verdict: Verdict;
  readonly perKey: Readonly<Record<string, KeyVerdict>>;
  /** The first failing key (in key order), when there is one. */
  readonly failure?: FailureWindow;
}

/** Checks every key of `history`; throws on a malformed op or a value written twice to one key. */
export function checkLinearizability(history: readonly Operation[], options: CheckOptions = {}): CheckResult {
  for (const op of history) checkOperation(op);
  const verdicts: KeyVerdict[] = [];
  let failure: FailureWindow | undefined;
  for (const [key, ops] of partitionByKey(history)) {
    const checked = checkKey(key, ops, options);
    verdicts.push(checked.verdict);
    failure ??= checked.failure;
  }
  const verdict: Verdict = verdicts.some((v) => v.verdict === 'not-linearizable') ? 'not-linearizable'
    : verdicts.some((v) => v.verdict === 'timeout') ? 'timeout' : 'linearizable';
  const perKey = Object.fromEntries(verdicts.map((v) => [v.key, v]));
  if (failure !== undefined) return { ok: false, verdict, perKey, failure };
  return { ok: verdict === 'linearizable', verdict, perKey };
}

/** Keys in sorted order, so results and reports are deterministic. */
function partitionByKey(history: readonly Operation[]): [string, Operation[]][] {
  const byKey = new Map<string, Operation[]>();
  for (const op of history) {
    const ops = byKey.get(op.key);
    if (ops === undefined) byKey.set(op.key, [op]);
    else ops.push(op);
  }
  return [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

interface KeyOutcome {
  readonly verdict: KeyVerdict;
  readonly failure?: FailureWindow;
}

function checkKey(key: string, ops: readonly Operation[], options: CheckOptions): KeyOutcome {
  const now = options.now ?? (() => performance.now());
  const startedMs = now();
  const model = buildKeyModel(ops);
  const budget = {
    maxSteps: options.maxStepsPerKey ?? DEFAULT_MAX_STEPS_PER_KEY,
    deadlineMs: startedMs + (options.maxMsPerKey ?? DEFAULT_MAX_MS_PER_KEY),
    now,
  };
  const result = searchLinearization(model.ops, INITIAL_STATE, budget);
  const requiredOps = model.ops.filter((o) => o.required).length;
  const base = {
    key, verdict: result.verdict, requiredOps, unknownOps: model.ops.length - requiredOps,
    discardedOps: model.discarded, steps: result.steps,
  };
  if (result.verdict === 'linearizable') return { verdict: { ...base, elapsedMs: now() - startedMs } };
  if (result.verdict === 'timeout') {
    const message = `key ${JSON.stringify(key)}: undecided after ${result.steps} steps ` +
      `(budget ${budget.maxSteps} steps, ${budget.deadlineMs - startedMs} ms); furthest point reached: ` +
      describeFurthestPoint(model, result);
    return { verdict: { ...base, elapsedMs: now() - startedMs, message } };
  }
  const found = findFailureWindow(model, result);
  const failure: FailureWindow = {
    key,
    window: found.window.map((o) => o.op),
    stuck: found.stuck.op,
    startState: viewState(found.startState, model.values),
    selfContained: found.selfContained,
    omittedUnknownOps: found.omittedUnknownOps,
    message: found.message,
    partialLinearizations: [result.longest.map((o) => o.op.id)],
  };
  return { verdict: { ...base, elapsedMs: now() - startedMs, message: found.message }, failure };
}
