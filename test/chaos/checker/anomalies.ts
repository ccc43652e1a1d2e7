/**
 * Simple counters the chaos suite reports next to the linearizability verdict. They are independent
 * of the search (a second opinion that cannot time out) and name the two failures that matter most:
 *
 *   - lost acknowledged writes: after the run, the final read of a key must show the last
 *     acknowledged write, or a later one (acknowledged or of unknown outcome), or nothing if a delete
 *     may have come after. An acknowledged write newer (by modRevision) than the write the final read
 *     shows is lost; so is one no delete can explain when the key ended absent.
 *   - stale reads: a get returning a write older (by modRevision) than a write acknowledged before the
 *     get was invoked; or a 404 although a write was acknowledged before the get, with no delete that
 *     may have come between.
 *   - unexplained reads: a get returning a value no write that may have happened wrote.
 */
import type { Operation } from './history.js';

export interface FinalRead {
  /** null: the key was absent. */
  readonly value: string | null;
  /** The ETag, when known. */
  readonly modRevision?: number;
}

export interface AnomalyOptions {
  /**
   * What each key held after the run, read once everything settled. Left out, each key's last ok get
   * invoked after every other op of the key completed serves (so recording the final reads as gets
   * is enough); a key without one is listed in keysWithoutFinalRead.
   */
  readonly finalReads?: Readonly<Record<string, FinalRead>>;
}

export interface KeyAnomalies {
  readonly key: string;
  readonly finalRead: FinalRead | null;
  /** The final value was written by no write that may have happened. */
  readonly finalUnexplained: boolean;
  readonly lostWriteIds: readonly number[];
  readonly staleReadIds: readonly number[];
  readonly unexplainedReadIds: readonly number[];
}

export interface AnomalyReport {
  readonly lostWrites: number;
  readonly staleReads: number;
  readonly unexplainedReads: number;
  readonly keysWithoutFinalRead: readonly string[];
  readonly perKey: Readonly<Record<string, KeyAnomalies>>;
}

export function findAnomalies(history: readonly Operation[], options: AnomalyOptions = {}): AnomalyReport {
  const byKey = new Map<string, Operation[]>();
  for (const op of history) {
    const ops = byKey.get(op.key);
    if (ops === undefined) byKey.set(op.key, [op]);
    else ops.push(op);
  }
  const perKey = [...byKey.keys()].sort().map((key) => keyAnomalies(key, byKey.get(key) ?? [], options));
  const total = (pick: (k: KeyAnomalies) => readonly number[]): number => perKey.reduce((n, k) => n + pick(k).length, 0);
  return {
    lostWrites: total((k) => k.lostWriteIds),
    staleReads: total((k) => k.staleReadIds),
    unexplainedReads: total((k) => k.unexplainedReadIds),
    keysWithoutFinalRead: perKey.filter((k) => k.finalRead === null).map((k) => k.key),
    perKey: Object.fromEntries(perKey.map((k) => [k.key, k])),
  };
}

/** One key's ops, sorted out once. */
interface KeyFacts {
  /** ok puts, and cas and create that were not refused. */
  readonly acked: readonly Operation[];
  /** `acked` by completion, with the highest revision and the latest invocation among each prefix. */
  readonly ackedByCompletion: readonly Operation[];
  readonly prefixMaxRevision: readonly number[];
  readonly prefixLatestInvoked: readonly Operation[];
  /** Writes that may have happened: acked, or of unknown outcome. */
  readonly maybeWritten: ReadonlyMap<string, Operation>;
  /** Deletes that may have removed the key: ok and not "deleted 0", or of unknown outcome. */
  readonly maybeDeletes: readonly Operation[];
  /** Revision of each value, from the write's answer or from a read's ETag. */
  readonly revisionOf: ReadonlyMap<string, number>;
  readonly reads: readonly Operation[];
}

function keyAnomalies(key: string, ops: readonly Operation[], options: AnomalyOptions): KeyAnomalies {
  const facts = keyFacts(ops);
  const finalRead = options.finalReads === undefined ? derivedFinalRead(ops) : (options.finalReads[key] ?? null);
  const final = finalRead === null ? { lost: [], unexplained: false } : lostWrites(facts, finalRead);
  return {
    key,
    finalRead,
    finalUnexplained: final.unexplained,
    lostWriteIds: final.lost.map((o) => o.id),
    staleReadIds: facts.reads.filter((r) => isStale(facts, r)).map((o) => o.id),
    unexplainedReadIds: facts.reads.filter((r) => isUnexplained(facts, r)).map((o) => o.id),
  };
}

function isUnexplained(facts: KeyFacts, read: Operation): boolean {
  return typeof read.output.value === 'string' && !facts.maybeWritten.has(read.output.value);
}

function keyFacts(ops: readonly Operation[]): KeyFacts {
  const isWrite = (o: Operation): boolean => o.kind === 'put' || o.kind === 'cas' || o.kind === 'create';
  const acked = ops.filter((o) => isWrite(o) && o.outcome === 'ok' && !o.output.preconditionFailed);
  const unknown = ops.filter((o) => isWrite(o) && o.outcome === 'unknown');
  const reads = ops.filter((o) => o.kind === 'get' && o.outcome === 'ok');
  const revisionOf = new Map<string, number>();
  for (const r of reads) {
    if (typeof r.output.value === 'string' && r.output.modRevision !== undefined) revisionOf.set(r.output.value, r.output.modRevision);
  }
  for (const w of acked) {
    if (w.input.value !== undefined && w.output.modRevision !== undefined) revisionOf.set(w.input.value, w.output.modRevision);
  }
  const ackedByCompletion = [...acked].sort((a, b) => (a.completeMs ?? 0) - (b.completeMs ?? 0));
  const prefixMaxRevision: number[] = [];
  const prefixLatestInvoked: Operation[] = [];
  ackedByCompletion.forEach((w, i) => {
    prefixMaxRevision.push(Math.max(prefixMaxRevision[i - 1] ?? -Infinity, w.output.modRevision ?? -Infinity));
    const latest = prefixLatestInvoked[i - 1];
    prefixLatestInvoked.push(latest === undefined || w.invokeMs > latest.invokeMs ? w : latest);
  });
  return {
    acked,
    ackedByCompletion,
    prefixMaxRevision,
    prefixLatestInvoked,
    maybeWritten: new Map([...acked, ...unknown].map((w) => [w.input.value ?? '', w])),
    maybeDeletes: ops.filter((o) => o.kind === 'delete' && (o.outcome === 'unknown' || (o.outcome === 'ok' && o.output.deleted !== 0))),
    revisionOf,
    reads,
  };
}

/** The last ok get invoked after every other op of the key that completed had completed. */
function derivedFinalRead(ops: readonly Operation[]): FinalRead | null {
  const reads = ops.filter((o) => o.kind === 'get' && o.outcome === 'ok').sort((a, b) => b.invokeMs - a.invokeMs);
  const last = reads[0];
  if (last === undefined) return null;
  const settled = ops.every((o) => o === last || o.completeMs === null || o.completeMs <= last.invokeMs);
  if (!settled || last.output.value === undefined) return null;
  const { value, modRevision } = last.output;
  return modRevision === undefined ? { value } : { value, modRevision };
}

function lostWrites(facts: KeyFacts, final: FinalRead): { lost: Operation[]; unexplained: boolean } {
  const writer = final.value === null ? undefined : facts.maybeWritten.get(final.value);
  if (final.value === null || writer === undefined) {
    // Absent (or a value from nowhere): every acked write needs a delete that may have followed it.
    const lost = facts.acked.filter((w) => !facts.maybeDeletes.some((d) => (d.completeMs ?? Infinity) > w.invokeMs));
    return { lost, unexplained: final.value !== null };
  }
  const finalRevision = final.modRevision ?? facts.revisionOf.get(final.value);
  if (finalRevision !== undefined) {
    return { lost: facts.acked.filter((w) => (w.output.modRevision ?? -Infinity) > finalRevision), unexplained: false };
  }
  // No revision to compare: a write invoked after the final value's write completed came later.
  const writtenMs = writer.completeMs ?? Infinity;
  return { lost: facts.acked.filter((w) => w.invokeMs > writtenMs), unexplained: false };
}

function isStale(facts: KeyFacts, read: Operation): boolean {
  const before = countCompletedBefore(facts.ackedByCompletion, read.invokeMs);
  if (before === 0) return false;
  const value = read.output.value;
  if (value === null || value === undefined) return isStaleAbsence(facts, read, facts.prefixLatestInvoked[before - 1]);
  const revision = read.output.modRevision ?? facts.revisionOf.get(value);
  return revision !== undefined && facts.prefixMaxRevision[before - 1] > revision;
}

/** How many of `writes` (sorted by completion) completed strictly before `ms`. */
function countCompletedBefore(writes: readonly Operation[], ms: number): number {
  let lo = 0;
  let hi = writes.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((writes[mid].completeMs ?? Infinity) < ms) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A 404 is stale if the latest-invoked write acknowledged before the get has no delete that may have
 * come between: one invoked before the get completed and not completed before the write began.
 */
function isStaleAbsence(facts: KeyFacts, read: Operation, latest: Operation): boolean {
  const readDoneMs = read.completeMs ?? Infinity;
  return !facts.maybeDeletes.some((d) => d.invokeMs < readDoneMs && (d.completeMs ?? Infinity) > latest.invokeMs);
}
