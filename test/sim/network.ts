import type { Message, NodeId } from '../../src/raft/types.js';
import type { Rng } from '../../src/util/rng.js';

/** A message on the wire; a snapshot message carries the sender's image beside it, as the runtime ships it. */
export interface Envelope {
  readonly seq: number;
  readonly msg: Message;
  readonly image: Uint8Array | null;
}

/**
 * The simulated network: one pool of messages in flight that the world delivers, drops,
 * duplicates or delays one at a time, plus a set of cut links. A cut link loses what crosses it at
 * delivery time, as a partitioned TCP connection would.
 */
export class SimNetwork {
  #inFlight: Envelope[] = [];
  #cut = new Set<string>();
  #seq = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.#inFlight.length;
  }

  /** Returns false when the wire is full and the message is lost (a full socket buffer). */
  send(msg: Message, image: Uint8Array | null): boolean {
    if (this.#inFlight.length >= this.capacity) return false;
    this.#inFlight.push({ seq: ++this.#seq, msg, image });
    return true;
  }

  /** Take the oldest message, or with probability `reorder` any one (messages overtake each other). */
  take(rng: Rng, reorder: number): Envelope | null {
    if (this.#inFlight.length === 0) return null;
    const i = rng.chance(reorder) ? rng.int(0, this.#inFlight.length) : 0;
    return this.#inFlight.splice(i, 1)[0];
  }

  /** Take every message in flight, oldest first (the liveness phase delivers them all). */
  takeAll(): Envelope[] {
    const all = this.#inFlight;
    this.#inFlight = [];
    return all;
  }

  /** A copy of a random message goes out again (a retransmission the receiver sees twice). */
  duplicate(rng: Rng): Envelope | null {
    if (this.#inFlight.length === 0 || this.#inFlight.length >= this.capacity) return null;
    const e = this.#inFlight[rng.int(0, this.#inFlight.length)];
    const copy = { seq: ++this.#seq, msg: e.msg, image: e.image };
    this.#inFlight.push(copy);
    return copy;
  }

  /** The oldest message goes to the back of the queue (a slow route). */
  delay(): Envelope | null {
    const e = this.#inFlight.shift();
    if (e === undefined) return null;
    this.#inFlight.push(e);
    return e;
  }

  canDeliver(from: NodeId, to: NodeId): boolean {
    return !this.#cut.has(linkKey(from, to));
  }

  cut(from: NodeId, to: NodeId): void {
    this.#cut.add(linkKey(from, to));
  }

  /** Split the members into two sides; nothing crosses between them in either direction. */
  partition(sideA: readonly NodeId[], sideB: readonly NodeId[]): void {
    for (const a of sideA) {
      for (const b of sideB) {
        this.cut(a, b);
        this.cut(b, a);
      }
    }
  }

  heal(): void {
    this.#cut.clear();
  }

  cutLinks(): number {
    return this.#cut.size;
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}
