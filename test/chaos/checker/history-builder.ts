/**
 * A terse way to write histories by hand: for the checker's own tests, and for turning a chaos
 * failure into a small regression test. A span with a null end is an unknown-outcome op.
 */
import { checkOperation, type OpInput, type OpKind, type OpOutput, type Operation } from './history.js';

export type Span = readonly [invokeMs: number, completeMs: number | null];

/** What a conditional write answered: its revision, 'refused' for a 412, or undefined if not told. */
export type WriteResult = number | 'refused' | undefined;

export class HistoryBuilder {
  readonly #ops: Operation[];
  readonly #key: string;

  constructor(key = 'k', ops: Operation[] = []) {
    this.#key = key;
    this.#ops = ops;
  }

  /** A builder for another key, adding to the same history. */
  forKey(key: string): HistoryBuilder {
    return new HistoryBuilder(key, this.#ops);
  }

  put(client: number, span: Span, value: string, rev?: number): number {
    return this.#add(client, span, 'put', { value }, writeOutput(rev));
  }

  get(client: number, span: Span, value: string | null, rev?: number): number {
    return this.#add(client, span, 'get', {}, rev === undefined ? { value } : { value, modRevision: rev });
  }

  cas(client: number, span: Span, ifMatch: number, value: string, result?: WriteResult): number {
    return this.#add(client, span, 'cas', { value, ifMatch }, writeOutput(result));
  }

  create(client: number, span: Span, value: string, result?: WriteResult): number {
    return this.#add(client, span, 'create', { value }, writeOutput(result));
  }

  del(client: number, span: Span, deleted?: 0 | 1): number {
    return this.#add(client, span, 'delete', {}, deleted === undefined ? {} : { deleted });
  }

  /** An op that certainly did not take effect. */
  failed(client: number, span: readonly [number, number], kind: OpKind, input: OpInput): number {
    return this.#push({ client, invokeMs: span[0], completeMs: span[1], outcome: 'fail', kind, input, output: { error: 'refused' } });
  }

  ops(): Operation[] {
    return [...this.#ops];
  }

  #add(client: number, span: Span, kind: OpKind, input: OpInput, output: OpOutput): number {
    const [invokeMs, completeMs] = span;
    if (completeMs === null) {
      return this.#push({ client, invokeMs, completeMs, outcome: 'unknown', kind, input, output: { error: 'timeout' } });
    }
    return this.#push({ client, invokeMs, completeMs, outcome: 'ok', kind, input, output });
  }

  #push(fields: Omit<Operation, 'id' | 'key'>): number {
    const op: Operation = { id: this.#ops.length, key: this.#key, ...fields };
    checkOperation(op);
    this.#ops.push(op);
    return op.id;
  }
}

function writeOutput(result: WriteResult): OpOutput {
  if (result === 'refused') return { preconditionFailed: true, status: 412 };
  return result === undefined ? {} : { modRevision: result };
}
