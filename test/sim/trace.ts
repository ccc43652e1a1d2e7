import type { Message } from '../../src/raft/types.js';

/** The last events of a run, kept in a ring so that a failure can show how it got there. */
export class Trace {
  readonly #lines: string[] = [];
  #next = 0;

  constructor(readonly capacity: number) {}

  add(line: string): void {
    if (this.#lines.length < this.capacity) this.#lines.push(line);
    else this.#lines[this.#next] = line;
    this.#next = (this.#next + 1) % this.capacity;
  }

  lines(): string[] {
    if (this.#lines.length < this.capacity) return [...this.#lines];
    return [...this.#lines.slice(this.#next), ...this.#lines.slice(0, this.#next)];
  }
}

/** One message, short: `n1→n2 append t3 prev=5/2 [6/3 7/3] c=4`. */
export function describeMessage(m: Message): string {
  const head = `${m.from}→${m.to} ${m.type} t${m.term}`;
  switch (m.type) {
    case 'preVote':
    case 'vote':
      return `${head} last=${m.lastLogIndex}/${m.lastLogTerm}${m.transfer ? ' transfer' : ''}`;
    case 'preVoteResp':
    case 'voteResp':
      return `${head} ${m.granted ? 'granted' : 'rejected'}`;
    case 'append':
      return `${head} prev=${m.prevIndex}/${m.prevTerm} ${describeEntries(m.entries)} c=${m.commit}`;
    case 'appendResp':
      return m.success ? `${head} ok match=${m.matchIndex}` : `${head} reject at=${m.rejectedIndex} hint=${m.conflictIndex}/${m.conflictTerm}`;
    case 'heartbeat':
      return `${head} c=${m.commit} round=${m.round}`;
    case 'heartbeatResp':
      return `${head} round=${m.round}`;
    case 'snapshot':
      return `${head} snap=${m.snapshot.index}/${m.snapshot.term}`;
    case 'timeoutNow':
      return head;
    case 'readIndex':
      return `${head} ctx=${m.context}`;
    case 'readIndexResp':
      return `${head} ctx=${m.context} index=${m.index}`;
  }
}

function describeEntries(entries: readonly { index: number; term: number }[]): string {
  if (entries.length === 0) return '[]';
  if (entries.length <= 3) return `[${entries.map((e) => `${e.index}/${e.term}`).join(' ')}]`;
  const first = entries[0];
  const last = entries[entries.length - 1];
  return `[${first.index}/${first.term}..${last.index}/${last.term}]`;
}
