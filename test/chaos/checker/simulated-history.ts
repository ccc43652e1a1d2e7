/**
 * Seeded histories of a correct store, for testing the checkers: clients run the chaos workload's
 * op mix against an in-memory register with store-wide revisions, each op taking effect at a random
 * instant inside its span, so the history is linearizable by construction. Some ops fail (no effect)
 * and some end unknown (taking effect, or not, at any later instant, even after the client moved on).
 */
import { SeededRng, type Rng } from '../../../src/util/rng.js';
import { assert } from '../../../src/util/assert.js';
import type { OpInput, OpKind, OpOutput, Operation, Outcome } from './history.js';

export interface SimulationOptions {
  readonly seed: number;
  /** How many ops to record, before the final reads. */
  readonly ops: number;
  readonly clients: number;
  readonly keys: number;
  readonly unknownRate?: number;
  readonly failRate?: number;
  /** Append one get per key after everything settled, as the chaos suite's final reads. */
  readonly finalReads?: boolean;
}

const DEFAULT_UNKNOWN_RATE = 0.03;
const DEFAULT_FAIL_RATE = 0.02;
/** Op durations and think times, in ms; wide enough that clients overlap a lot. */
const MAX_OP_MS = 6;
const MAX_GAP_MS = 2;
/** How long after its invocation an unknown-outcome write may still land. */
const MAX_LATE_EFFECT_MS = 60;

interface Entry {
  readonly value: string;
  readonly modRevision: number;
  readonly createRevision: number;
  readonly version: number;
}

/** A correct store: one revision counter for all keys, etcd's rules for each. */
class Store {
  readonly entries = new Map<string, Entry>();
  revision = 1;

  apply(key: string, kind: OpKind, input: OpInput): OpOutput {
    const entry = this.entries.get(key);
    switch (kind) {
      case 'get':
        return entry === undefined ? { value: null, status: 404 } : { value: entry.value, modRevision: entry.modRevision };
      case 'delete':
        if (entry === undefined) return { deleted: 0, revision: this.revision };
        this.entries.delete(key);
        return { deleted: 1, revision: ++this.revision };
      case 'create':
        return entry === undefined ? this.#write(key, input, entry) : { preconditionFailed: true, status: 412 };
      case 'cas':
        return entry?.modRevision === input.ifMatch ? this.#write(key, input, entry) : { preconditionFailed: true, status: 412 };
      case 'put':
        return this.#write(key, input, entry);
    }
  }

  #write(key: string, input: OpInput, previous: Entry | undefined): OpOutput {
    assert(input.value !== undefined, 'a write needs a value');
    const modRevision = ++this.revision;
    const next = {
      value: input.value, modRevision,
      createRevision: previous?.createRevision ?? modRevision, version: (previous?.version ?? 0) + 1,
    };
    this.entries.set(key, next);
    return { modRevision, createRevision: next.createRevision, version: next.version, revision: modRevision };
  }
}

interface Client {
  readonly id: number;
  /** The last ETag this client saw per key, for its next If-Match. */
  readonly etags: Map<string, number>;
  invokeMs: number;
  completeMs: number;
  effectMs: number;
  sequence: number;
}

interface LateEffect {
  readonly atMs: number;
  readonly key: string;
  readonly kind: OpKind;
  readonly input: OpInput;
}

export function simulateHistory(options: SimulationOptions): Operation[] {
  return new Simulation(options).run();
}

/** One seeded run: clients taking turns by the instant their next op takes effect. */
class Simulation {
  readonly #options: SimulationOptions;
  readonly #rng: Rng;
  readonly #store = new Store();
  readonly #keys: readonly string[];
  readonly #clients: Client[];
  readonly #late: LateEffect[] = [];
  readonly #ops: Operation[] = [];

  constructor(options: SimulationOptions) {
    this.#options = options;
    this.#rng = new SeededRng(options.seed);
    this.#keys = Array.from({ length: options.keys }, (_, i) => `key-${i}`);
    this.#clients = Array.from({ length: options.clients }, (_, id) =>
      this.#schedule({ id, etags: new Map(), invokeMs: 0, completeMs: 0, effectMs: 0, sequence: 0 }, 0));
  }

  run(): Operation[] {
    while (this.#ops.length < this.#options.ops) {
      const client = this.#clients.reduce((a, b) => (b.effectMs < a.effectMs ? b : a));
      this.#applyLateEffects(client.effectMs);
      this.#ops.push(this.#runOp(client));
      this.#schedule(client, client.completeMs);
    }
    this.#applyLateEffects(Infinity);
    if (this.#options.finalReads) this.#appendFinalReads();
    return this.#ops;
  }

  /** Picks the client's next op's span and the instant it takes effect. */
  #schedule(client: Client, fromMs: number): Client {
    client.invokeMs = fromMs + this.#rng.next() * MAX_GAP_MS;
    client.completeMs = client.invokeMs + 0.05 + this.#rng.next() * MAX_OP_MS;
    client.effectMs = client.invokeMs + this.#rng.next() * (client.completeMs - client.invokeMs);
    return client;
  }

  #runOp(client: Client): Operation {
    const rng = this.#rng;
    const key = this.#keys[rng.int(0, this.#keys.length)];
    const kind = pickKind(rng);
    const input = inputFor(kind, key, client);
    const outcome = pickOutcome(rng, this.#options);
    let output: OpOutput = { error: outcome === 'fail' ? 'ECONNREFUSED' : 'timeout' };
    if (outcome === 'ok') {
      output = this.#store.apply(key, kind, input);
      if (output.modRevision !== undefined) client.etags.set(key, output.modRevision);
    } else if (outcome === 'unknown' && kind !== 'get' && rng.chance(0.5)) {
      this.#late.push({ atMs: client.effectMs + rng.next() * MAX_LATE_EFFECT_MS, key, kind, input });
    }
    return {
      id: this.#ops.length, client: client.id, key, kind, input, invokeMs: client.invokeMs,
      completeMs: outcome === 'unknown' ? null : client.completeMs, outcome, output,
    };
  }

  /** Unknown writes that did take effect, landing whenever their moment comes. */
  #applyLateEffects(untilMs: number): void {
    const late = this.#late;
    late.sort((a, b) => a.atMs - b.atMs);
    while (late.length > 0 && late[0].atMs <= untilMs) {
      const effect = late.shift();
      if (effect !== undefined) this.#store.apply(effect.key, effect.kind, effect.input);
    }
  }

  #appendFinalReads(): void {
    let t = this.#ops.reduce((max, o) => Math.max(max, o.completeMs ?? o.invokeMs), 0) + 1;
    for (const key of this.#keys) {
      const output = this.#store.apply(key, 'get', {});
      this.#ops.push({ id: this.#ops.length, client: 0, key, kind: 'get', input: {}, invokeMs: t, completeMs: t + 1, outcome: 'ok', output });
      t += 2;
    }
  }
}

function pickKind(rng: Rng): OpKind {
  const r = rng.next();
  return r < 0.35 ? 'put' : r < 0.7 ? 'get' : r < 0.8 ? 'cas' : r < 0.9 ? 'create' : 'delete';
}

function pickOutcome(rng: Rng, options: SimulationOptions): Outcome {
  const r = rng.next();
  if (r < (options.unknownRate ?? DEFAULT_UNKNOWN_RATE)) return 'unknown';
  return r < (options.unknownRate ?? DEFAULT_UNKNOWN_RATE) + (options.failRate ?? DEFAULT_FAIL_RATE) ? 'fail' : 'ok';
}

function inputFor(kind: OpKind, key: string, client: Client): OpInput {
  const value = `c${client.id}-${client.sequence++}`;
  switch (kind) {
    case 'put':
    case 'create':
      return { value };
    case 'cas':
      return { value, ifMatch: client.etags.get(key) ?? 1 };
    case 'get':
    case 'delete':
      return {};
  }
}

/**
 * Makes one read stale: it now returns an older acknowledged write of its key, although a newer
 * acknowledged write completed before the read began. Returns the new history and the read's id.
 */
export function injectStaleRead(history: readonly Operation[], seed: number): { history: Operation[]; readId: number } {
  const rng = new SeededRng(seed);
  const acked = history.filter((o) => o.outcome === 'ok' && o.kind !== 'get' && o.kind !== 'delete' &&
    !o.output.preconditionFailed && o.output.modRevision !== undefined);
  const reads = history.filter((o) => o.kind === 'get' && o.outcome === 'ok');
  for (let attempt = 0; attempt < reads.length; attempt++) {
    const read = reads[rng.int(Math.floor(reads.length / 3), reads.length)];
    const before = acked.filter((w) => w.key === read.key && (w.completeMs ?? Infinity) < read.invokeMs);
    const newest = before.reduce<Operation | undefined>((a, w) => (a === undefined || rev(w) > rev(a) ? w : a), undefined);
    const older = before.filter((w) => newest !== undefined && rev(w) < rev(newest) && w.input.value !== read.output.value);
    if (older.length === 0) continue;
    const stale = older[older.length - 1];
    const output: OpOutput = { value: stale.input.value, modRevision: stale.output.modRevision };
    return { history: history.map((o) => (o === read ? { ...o, output } : o)), readId: read.id };
  }
  throw new Error('no read can be made stale in this history');
}

function rev(op: Operation): number {
  return op.output.modRevision ?? 0;
}
