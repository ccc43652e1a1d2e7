import type { RaftStatus } from '../../src/raft/raft-core.js';
import { quorumSize, sameConfig } from '../../src/raft/config.js';
import type { Ready } from '../../src/raft/ready.js';
import type { ConfigState, Entry, NodeId, ReadState, SnapshotMeta } from '../../src/raft/types.js';
import { decodeCommand } from './sim-machine.js';
import type { SimNode } from './sim-node.js';

/** A broken Raft property. The world adds the seed, the replay command and the trace. */
export class Violation extends Error {
  override readonly name = 'Violation';
}

function fail(property: string, detail: string): never {
  throw new Violation(`${property}: ${detail}`);
}

/** An entry as first seen anywhere, with the term of the entry before it (for Log Matching). */
interface RegisteredEntry {
  readonly entry: Entry;
  readonly prevTerm: number;
  readonly by: NodeId;
}

interface PendingRead {
  readonly node: NodeId;
  /** The highest index known committed when the read started: its answer must not be older. */
  readonly floor: number;
  readonly startedAt: number;
}

interface NodeTrack {
  incarnation: number;
  commit: number;
  /** The commit index up to which this node's leader commits were recorded. */
  leaderCommitSeen: number;
  leaderTerm: number;
}

/** Terms and indexes stay far below this, so index * TERM_SPAN + term is an exact map key. */
const TERM_SPAN = 1 << 20;

/**
 * The safety properties of Raft (Figure 3 of the paper) plus durability and linearizable reads,
 * checked over the whole history of one simulated run. Every check is incremental: it looks only
 * at what a node just did, so it can run after every step.
 */
export class Checker {
  /** Election Safety: the one leader of each term. */
  readonly leaderOfTerm = new Map<number, NodeId>();
  /** Log Matching: every (index, term) ever stored anywhere, with its content and predecessor's term. */
  readonly #registry = new Map<number, RegisteredEntry>();
  /** committedTerm[i]: the term of the entry committed at index i (as a leader committed it). */
  readonly #committedTerm: number[] = [0];
  /** The highest commit index leaders of each term reached (for Leader Completeness). */
  readonly #maxCommitByTerm = new Map<number, number>();
  /** State Machine Safety: the entry applied at each index (by whoever applied it first). */
  readonly #appliedEntry: Array<Entry | undefined> = [];
  /** Each command is proposed once, so it may be applied at one index only. */
  readonly #commandIndex = new Map<string, number>();
  readonly #reads = new Map<number, PendingRead>();
  readonly #nodes = new Map<NodeId, NodeTrack>();
  /** The highest index any member applied: known committed, and acknowledged to its proposer. */
  maxApplied = 0;
  readsAnswered = 0;
  /** The last index each read was answered with (0: the leader could not serve it). */
  readonly readAnswers = new Map<number, number>();
  now = 0;

  get maxCommitted(): number {
    return this.#committedTerm.length - 1;
  }

  committedTermAt(index: number): number | undefined {
    return this.#committedTerm[index];
  }

  /**
   * A scenario that starts from prepared disks: their committed prefix counts as committed before
   * any term we watch (so every leader must hold it).
   */
  assumeCommitted(entries: readonly Entry[], commit: number): void {
    for (const e of entries) {
      if (e.index > commit) break;
      const known = this.#committedTerm[e.index];
      if (known === undefined && e.index === this.#committedTerm.length) this.#committedTerm.push(e.term);
      else if (known !== e.term) fail('setup', `prepared disks disagree on committed entry ${e.index}`);
    }
    this.#maxCommitByTerm.set(0, Math.max(this.#maxCommitByTerm.get(0) ?? 0, commit));
  }

  // ------------------------------------------------------------ after every call into a core

  observe(node: SimNode, s: RaftStatus, nodes: readonly SimNode[]): void {
    const track = this.#track(node);
    if (s.commit < track.commit) fail('commit regressed', `${node.id} commit ${s.commit} < ${track.commit} in one life`);
    track.commit = s.commit;
    if (s.applied > s.commit) fail('applied <= commit', `${node.id} applied ${s.applied} > commit ${s.commit}`);
    if (node.machine.applied > s.commit) fail('applied <= commit', `${node.id} state machine at ${node.machine.applied} > commit ${s.commit}`);
    if (s.role !== 'leader') return;
    this.#observeLeader(node, s, track, nodes);
  }

  #track(node: SimNode): NodeTrack {
    let t = this.#nodes.get(node.id);
    if (t === undefined || t.incarnation !== node.incarnation) {
      t = { incarnation: node.incarnation, commit: 0, leaderCommitSeen: 0, leaderTerm: 0 };
      this.#nodes.set(node.id, t);
    }
    return t;
  }

  #observeLeader(node: SimNode, s: RaftStatus, track: NodeTrack, nodes: readonly SimNode[]): void {
    const holder = this.leaderOfTerm.get(s.term);
    if (holder !== undefined && holder !== node.id) fail('Election Safety', `term ${s.term} has two leaders: ${holder} and ${node.id}`);
    if (holder === undefined) {
      this.leaderOfTerm.set(s.term, node.id);
      this.#checkLeaderCompleteness(node, s);
    }
    if (track.leaderTerm !== s.term) {
      track.leaderTerm = s.term;
      track.leaderCommitSeen = s.commit;
    }
    this.#maxCommitByTerm.set(s.term, Math.max(this.#maxCommitByTerm.get(s.term) ?? 0, s.commit));
    if (s.commit > track.leaderCommitSeen) {
      this.#recordCommits(node, track.leaderCommitSeen, s.commit);
      track.leaderCommitSeen = s.commit;
      this.#checkLaterLeadersHold(s.term, s.commit, nodes);
    }
  }

  /** A leader moved its commit index: those entries are committed, for good. */
  #recordCommits(node: SimNode, from: number, to: number): void {
    for (let i = from + 1; i <= to; i++) {
      const term = node.store.term(i);
      if (term === undefined) fail('commit', `${node.id} committed ${i} but its store has no entry there`);
      const known = this.#committedTerm[i];
      if (known === undefined) {
        if (i !== this.#committedTerm.length) fail('commit', `${node.id} committed ${i} but ${this.#committedTerm.length} was never committed`);
        this.#committedTerm.push(term);
      } else if (known !== term) {
        fail('State Machine Safety', `${node.id} committed term ${term} at ${i}, but term ${known} was committed there before`);
      }
    }
  }

  /**
   * Leader Completeness: a leader of term T holds every entry committed in an earlier term. Thanks
   * to Log Matching (checked on every write) it suffices to match the last such entry.
   */
  #checkLeaderCompleteness(node: SimNode, s: RaftStatus): void {
    let required = 0;
    for (const [term, index] of this.#maxCommitByTerm) if (term < s.term && index > required) required = index;
    this.#checkHolds(node, s, required, `new leader of term ${s.term}`);
  }

  /** An entry committed in term t must already be in the log of any live leader of a later term. */
  #checkLaterLeadersHold(term: number, index: number, nodes: readonly SimNode[]): void {
    for (const other of nodes) {
      const s = other.lastStatus;
      if (s === null || s.role !== 'leader' || s.term <= term) continue;
      this.#checkHolds(other, s, index, `leader of term ${s.term} (entry committed in term ${term})`);
    }
  }

  #checkHolds(node: SimNode, s: RaftStatus, index: number, who: string): void {
    if (index === 0) return;
    const want = this.#committedTerm[index];
    if (s.lastIndex < index) fail('Leader Completeness', `${who} ${node.id} ends at ${s.lastIndex}, committed entry ${index} is missing`);
    if (index < s.firstIndex) return; // inside its snapshot: committed by construction
    const have = node.core.entriesFrom(index, index + 1)[0]?.term;
    if (have !== want) fail('Leader Completeness', `${who} ${node.id} has term ${have} at ${index}, committed term is ${want}`);
  }

  // ------------------------------------------------------------ writes, applies, reads

  /** Log Matching over the whole history: an (index, term) has one content and one predecessor term. */
  saved(node: SimNode, ready: Ready): void {
    for (const e of ready.entries) {
      const prevTerm = node.store.term(e.index - 1);
      if (prevTerm === undefined) fail('Log Matching', `${node.id} stored ${e.index} with no entry before it`);
      const key = e.index * TERM_SPAN + e.term;
      const seen = this.#registry.get(key);
      if (seen === undefined) {
        this.#registry.set(key, { entry: e, prevTerm, by: node.id });
        continue;
      }
      if (seen.prevTerm !== prevTerm) {
        fail('Log Matching', `entry ${e.index}/${e.term}: ${seen.by} has term ${seen.prevTerm} before it, ${node.id} has ${prevTerm}`);
      }
      if (seen.entry !== e && !sameEntry(seen.entry, e)) fail('Log Matching', `entry ${e.index}/${e.term} differs between ${seen.by} and ${node.id}`);
    }
  }

  /** State Machine Safety: no two members apply different entries at one index. */
  applied(node: SimNode, entry: Entry, command: string | null): void {
    const i = entry.index;
    const first = this.#appliedEntry[i];
    if (first === undefined) {
      this.#appliedEntry[i] = entry;
      if (i > this.maxApplied) this.maxApplied = i;
    } else if (first !== entry && !sameEntry(first, entry)) {
      fail('State Machine Safety', `${node.id} applied ${describe(entry)} at ${i}, another member applied ${describe(first)}`);
    }
    const committed = this.#committedTerm[i];
    if (committed !== undefined && committed !== entry.term) {
      fail('State Machine Safety', `${node.id} applied term ${entry.term} at ${i}, term ${committed} was committed there`);
    }
    if (command !== null) {
      const at = this.#commandIndex.get(command);
      if (at === undefined) this.#commandIndex.set(command, i);
      else if (at !== i) fail('State Machine Safety', `command ${command} applied at ${at} and again at ${i}`);
    }
  }

  /** A snapshot's image must list exactly the commands applied at its indexes. */
  snapshotInstalled(node: SimNode, meta: SnapshotMeta): void {
    if (meta.index > this.maxApplied) fail('snapshot', `${node.id} installed snapshot ${meta.index} beyond anything applied (${this.maxApplied})`);
    for (const c of node.machine.commands) {
      const e = this.#appliedEntry[c.index];
      const command = e !== undefined && e.type === 'normal' && e.data.byteLength > 0 ? decodeCommand(e.data) : null;
      if (command !== c.command) fail('State Machine Safety', `${node.id} snapshot ${meta.index} holds ${c.command} at ${c.index}, applied there: ${command}`);
    }
  }

  readStarted(node: SimNode, context: number): void {
    this.#reads.set(context, { node: node.id, floor: this.maxApplied, startedAt: this.now });
  }

  readFailedToStart(context: number): void {
    this.#reads.delete(context);
  }

  /** Linearizable reads: the read index covers everything committed before the read began. */
  readState(node: SimNode, rs: ReadState): void {
    const read = this.#reads.get(rs.context);
    if (read === undefined) fail('ReadIndex', `${node.id} answered read ${rs.context}, which nobody asked`);
    if (read.node !== node.id) fail('ReadIndex', `read ${rs.context} was asked of ${read.node} but answered on ${node.id}`);
    this.readAnswers.set(rs.context, rs.index);
    if (rs.index === 0) return; // the leader could not serve it: the client retries
    if (rs.index < read.floor) {
      fail('ReadIndex', `read ${rs.context} on ${node.id} (started at step ${read.startedAt}) got index ${rs.index}, but ${read.floor} was committed before it started`);
    }
    if (rs.index > this.maxCommitted) fail('ReadIndex', `read ${rs.context} on ${node.id} got index ${rs.index}, beyond any commit (${this.maxCommitted})`);
    this.readsAnswered++;
  }

  /**
   * Durability: the last committed entry survives any crash of any minority. While the founding
   * configuration holds, every quorum of it must contain a member that holds the entry on disk.
   * (With membership changes in flight, which quorum counts is subtle; the other checks cover it.)
   */
  checkDurability(nodes: readonly SimNode[], founding: ConfigState): void {
    const index = this.maxCommitted;
    if (index === 0) return;
    const term = this.#committedTerm[index];
    const leader = maxTermLeader(nodes);
    if (leader === null || !sameConfig(leader.config, founding)) return;
    const voters = leader.config.voters;
    let holders = 0;
    for (const n of nodes) if (voters.includes(n.id) && n.state !== 'retired' && n.store.durablyHolds(index, term)) holders++;
    if (holders < voters.length - quorumSize(voters.length) + 1) {
      fail('Durability', `committed entry ${index}/${term} is durable on ${holders} of ${voters.length} voters: a crash could lose it`);
    }
  }
}

/** The leader of the highest term any member (live, or on disk if down) has reached, if any. */
function maxTermLeader(nodes: readonly SimNode[]): RaftStatus | null {
  let maxTerm = 0;
  let leader: RaftStatus | null = null;
  for (const n of nodes) {
    if (n.state === 'retired') continue;
    const s = n.lastStatus;
    const term = s !== null ? s.term : n.store.durableHardState().term;
    if (term > maxTerm) {
      maxTerm = term;
      leader = null;
    }
    if (s !== null && s.role === 'leader' && s.term === maxTerm) leader = s;
  }
  return leader;
}

function sameEntry(a: Entry, b: Entry): boolean {
  if (a.index !== b.index || a.term !== b.term || a.type !== b.type || a.data.byteLength !== b.data.byteLength) return false;
  for (let i = 0; i < a.data.byteLength; i++) if (a.data[i] !== b.data[i]) return false;
  return true;
}

function describe(e: Entry): string {
  const body = e.type === 'config' ? 'config' : e.data.byteLength === 0 ? 'no-op' : decodeCommand(e.data);
  return `${e.index}/${e.term} ${body}`;
}
