import { assert } from '../util/assert.js';
import type { Logger } from '../util/logger.js';
import { SILENT_LOGGER } from '../util/logger.js';
import type { Rng } from '../util/rng.js';
import { applyConfigChange, encodeConfig, decodeConfig, majorityValue, quorumSize } from './config.js';
import type { ConfigChange } from './config.js';
import { Progress } from './progress.js';
import { RaftLog } from './raft-log.js';
import type { Ready } from './ready.js';
import type {
  AppendRequest,
  AppendResponse,
  ConfigState,
  Entry,
  HardState,
  HeartbeatRequest,
  Message,
  NodeId,
  ReadContext,
  ReadIndexRequest,
  ReadState,
  Role,
  SnapshotMeta,
  SnapshotRequest,
  SoftState,
  VoteRequest,
  VoteResponse,
} from './types.js';

export type { ConfigChange } from './config.js';

export interface RaftOptions {
  readonly id: NodeId;
  readonly rng: Rng;
  readonly logger?: Logger;
  /** Ticks without hearing from a leader before campaigning (randomized in [n, 2n)). */
  readonly electionTicks: number;
  /** Ticks between the leader's heartbeats. */
  readonly heartbeatTicks: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  /** Appends in flight per follower in replicate state (pipelining). */
  readonly maxInflightAppends?: number;
  /** Bounds on one append message (batching). */
  readonly maxEntriesPerAppend?: number;
  readonly maxBytesPerAppend?: number;
  /** Proposals are refused while this many entries are uncommitted (back-pressure). */
  readonly maxUncommittedEntries?: number;
  /** Committed entries handed out in one Ready. */
  readonly maxCommittedPerReady?: number;
  /**
   * Lazy commit notification, for commits of at most this many entries (0: off, the default). A
   * follower that has nothing new to receive learns such a commit index from the next append,
   * the next heartbeat or `notifyCommit()`, whichever comes first, rather than from a heartbeat
   * of its own. A larger commit is sent at once: the follower's apply of it would otherwise run
   * in front of its acknowledgement of the next append.
   */
  readonly lazyCommitNotifyEntries?: number;
}

export interface RaftInitialState {
  readonly hardState: HardState;
  readonly snapshot: SnapshotMeta;
  readonly entries: readonly Entry[];
  readonly applied: number;
}

export type ProposeFailure =
  | 'NOT_LEADER'
  | 'TRANSFERRING'
  | 'TOO_MANY_UNCOMMITTED'
  | 'CONFIG_CHANGE_PENDING'
  | 'INVALID_CONFIG_CHANGE';

export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | { readonly ok: false; readonly code: ProposeFailure; readonly leader: NodeId | null; readonly message?: string };

export type ReadIndexResult = { readonly ok: true } | { readonly ok: false; readonly code: 'NO_LEADER'; readonly leader: null };

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId | null;
  readonly leader: NodeId | null;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly stableIndex: number;
  readonly config: ConfigState;
  readonly transferringTo: NodeId | null;
  readonly progress: ReadonlyArray<{ id: NodeId; match: number; next: number; state: string; learner: boolean }>;
}

const DEFAULTS = {
  preVote: true,
  checkQuorum: true,
  maxInflightAppends: 64,
  maxEntriesPerAppend: 4096,
  maxBytesPerAppend: 4 * 1024 * 1024,
  maxUncommittedEntries: 65_536,
  maxCommittedPerReady: 8192,
  lazyCommitNotifyEntries: 0,
};

/** A rounds of reads not yet answered: confirmed once a quorum acknowledged `round`. */
interface PendingRead {
  readonly context: ReadContext;
  readonly index: number;
  readonly round: number;
  /** null: a read of this member's own clients; else the follower that asked. */
  readonly from: NodeId | null;
}

interface ConfigRecord {
  readonly index: number;
  readonly term: number;
  readonly config: ConfigState;
}

type CampaignKind = 'preVote' | 'vote';

/** How many heartbeats a replicating follower may go without progress before we re-probe it. */
const STALL_HEARTBEATS_MAX = 3;

/**
 * The Raft algorithm as a deterministic state machine (Ongaro's dissertation, with pre-vote,
 * check-quorum, ReadIndex, leadership transfer and single-server membership changes). It does no
 * I/O, reads no clock and draws randomness only from the injected Rng: it is driven by `tick`,
 * `step` and `propose`, and hands back a `Ready` of work for the runtime.
 */
export class RaftCore {
  readonly id: NodeId;
  readonly #o: Required<Omit<RaftOptions, 'logger' | 'rng' | 'id'>>;
  readonly #rng: Rng;
  readonly #logger: Logger;
  readonly #log: RaftLog;

  #term: number;
  #vote: NodeId | null;
  #role: 'follower' | 'preCandidate' | 'candidate' | 'leader' = 'follower';
  #leader: NodeId | null = null;
  /** Config entries still in the log (and the snapshot's config first); the last one is active. */
  #configs: ConfigRecord[];

  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTimeout = 0;
  #votes = new Map<NodeId, boolean>();

  #progress = new Map<NodeId, Progress>();
  #leadTransferee: NodeId | null = null;
  /** Commit moved: tell the followers even if there is nothing new to send. */
  #commitDirty = false;
  /** Followers owed an append even if empty (a probe, a reply to a heartbeat). */
  #appendDue = new Set<NodeId>();
  /** With lazyCommitNotifyEntries: replicating followers that have not been sent the current commit index. */
  #commitOwed = new Set<NodeId>();

  #readRound = 0;
  #readHeartbeatDue = false;
  #pendingReads: PendingRead[] = [];
  /** Reads that arrived before this leader committed an entry of its own term (§6.4 step 1). */
  #readsAwaitingCommit: Array<{ context: ReadContext; from: NodeId | null }> = [];

  #msgs: Message[] = [];
  #readStates: ReadState[] = [];
  #receivedSnapshot: SnapshotMeta | null = null;
  #prevHard: HardState;
  #prevSoft: SoftState;
  #readyInFlight = false;

  constructor(options: RaftOptions, initial: RaftInitialState) {
    assert(options.electionTicks > options.heartbeatTicks, 'electionTicks must exceed heartbeatTicks');
    assert(options.heartbeatTicks > 0, 'heartbeatTicks must be positive');
    this.id = options.id;
    this.#rng = options.rng;
    this.#logger = options.logger ?? SILENT_LOGGER;
    this.#o = {
      electionTicks: options.electionTicks,
      heartbeatTicks: options.heartbeatTicks,
      preVote: options.preVote ?? DEFAULTS.preVote,
      checkQuorum: options.checkQuorum ?? DEFAULTS.checkQuorum,
      maxInflightAppends: options.maxInflightAppends ?? DEFAULTS.maxInflightAppends,
      maxEntriesPerAppend: options.maxEntriesPerAppend ?? DEFAULTS.maxEntriesPerAppend,
      maxBytesPerAppend: options.maxBytesPerAppend ?? DEFAULTS.maxBytesPerAppend,
      maxUncommittedEntries: options.maxUncommittedEntries ?? DEFAULTS.maxUncommittedEntries,
      maxCommittedPerReady: options.maxCommittedPerReady ?? DEFAULTS.maxCommittedPerReady,
      lazyCommitNotifyEntries: options.lazyCommitNotifyEntries ?? DEFAULTS.lazyCommitNotifyEntries,
    };
    const { hardState, snapshot, entries, applied } = initial;
    this.#log = new RaftLog(snapshot, entries, hardState.commit, applied);
    this.#term = hardState.term;
    this.#vote = hardState.vote;
    this.#configs = [{ index: snapshot.index, term: snapshot.term, config: snapshot.config }];
    for (const e of entries) if (e.type === 'config') this.#configs.push(configRecord(e));
    this.#prevHard = this.#hardState();
    this.#resetRandomizedElectionTimeout();
    this.#prevSoft = this.#softState();
  }

  // ---------------------------------------------------------------- public API

  tick(): void {
    if (this.#role === 'leader') this.#tickLeader();
    else this.#tickElection();
  }

  /** With lazyCommitNotifyEntries: whether some follower has not been sent the current commit index. */
  commitNotifyOwed(): boolean {
    return this.#commitOwed.size > 0;
  }

  /**
   * With lazyCommitNotifyEntries: sends the commit index to every follower still owed it. The runtime
   * calls this a short while after a Ready left `commitNotifyOwed()` true; most of the time the
   * next append has carried the commit index already, and this sends nothing.
   */
  notifyCommit(): void {
    if (this.#role !== 'leader') return;
    for (const id of [...this.#commitOwed]) {
      const pr = this.#progress.get(id);
      if (pr && Math.min(pr.match, this.#log.commit) > pr.commitSent) this.#sendHeartbeat(pr);
    }
    this.#commitOwed.clear();
  }

  step(m: Message): void {
    assert(m.to === this.id, `message for ${m.to} stepped into ${this.id}`);
    if (!this.#stepTerm(m)) return;
    switch (m.type) {
      case 'preVote':
      case 'vote':
        this.#handleVoteRequest(m);
        return;
      default:
        break;
    }
    switch (this.#role) {
      case 'leader':
        this.#stepLeader(m);
        return;
      case 'candidate':
      case 'preCandidate':
        this.#stepCandidate(m);
        return;
      case 'follower':
        this.#stepFollower(m);
        return;
    }
  }

  propose(data: Uint8Array): ProposeResult {
    const refused = this.#refuseProposal();
    if (refused) return refused;
    return this.#appendOwn('normal', data);
  }

  proposeConfigChange(change: ConfigChange): ProposeResult {
    const refused = this.#refuseProposal();
    if (refused) return refused;
    // One change at a time, and only once this term's no-op committed (the dissertation's fix for
    // the single-server change bug): otherwise two leaders' changes could fail to overlap.
    if (this.#configs[this.#configs.length - 1].index > this.#log.commit || !this.#committedInTerm()) {
      return { ok: false, code: 'CONFIG_CHANGE_PENDING', leader: this.id };
    }
    const next = applyConfigChange(this.config(), change);
    if (typeof next === 'string') return { ok: false, code: 'INVALID_CONFIG_CHANGE', leader: this.id, message: next };
    return this.#appendOwn('config', encodeConfig(next));
  }

  readIndex(context: ReadContext): ReadIndexResult {
    if (this.#role === 'leader') {
      this.#registerRead(context, null);
      return { ok: true };
    }
    if (this.#leader === null) return { ok: false, code: 'NO_LEADER', leader: null };
    this.#send({ type: 'readIndex', from: this.id, to: this.#leader, term: this.#term, context });
    return { ok: true };
  }

  transferLeadership(to: NodeId): boolean {
    if (this.#role !== 'leader' || to === this.id || !this.config().voters.includes(to)) return false;
    this.#leadTransferee = to;
    this.#electionElapsed = 0; // the transfer is abandoned after one election timeout
    this.#logger.info({ term: this.#term, peer: to }, 'transferring leadership');
    const pr = this.#progress.get(to);
    if (pr && pr.match === this.#log.lastIndex()) this.#sendTimeoutNow(to);
    else this.#appendDue.add(to);
    return true;
  }

  campaign(): void {
    if (this.#role !== 'leader' && this.#promotable()) this.#campaign(this.#o.preVote ? 'preVote' : 'vote', false);
  }

  compact(index: number): void {
    // The runtime picks `index` from its state machine while steps keep arriving; a snapshot from
    // the leader may have replaced the log meanwhile (not yet through a Ready). Then the prefix is
    // already gone and there is nothing to do. (Found by the simulator, seed 100.)
    if (index <= this.#log.snapshot.index) return;
    const term = this.#log.term(index);
    assert(term !== undefined, `compact at ${index}: no such entry`);
    const config = this.#configAt(index);
    this.#log.compact({ index, term, config });
    this.#configs = [{ index, term, config }, ...this.#configs.filter((c) => c.index > index)];
  }

  /** The snapshot boundary a state-machine image taken at `index` (≤ commit) must carry. */
  snapshotMetaAt(index: number): SnapshotMeta {
    // Up to commit, not applied: storage may have written a batch whose advance() is still to run.
    assert(index >= this.#log.snapshot.index && index <= this.#log.commit, `no snapshot meta at ${index}`);
    const term = this.#log.term(index);
    assert(term !== undefined, `no term at ${index}`);
    let config = this.#configs[0];
    for (const c of this.#configs) if (c.index <= index) config = c;
    return { index, term, config: config.config };
  }

  /**
   * The runtime installed a state-machine image at `meta` (received from the leader `from` in
   * `term`) and already stored the boundary with it: the state machine now reflects every entry up
   * to meta.index. If our log already holds that entry, keep the suffix after it; otherwise replace
   * the log (§7 of the paper). No Ready carries this snapshot: it is durable already.
   */
  installSnapshot(meta: SnapshotMeta, from: NodeId, term: number): void {
    if (term > this.#term) this.#becomeFollower(term, from);
    const log = this.#log;
    if (log.matchTerm(meta.index, meta.term)) {
      if (meta.index > log.commit) log.commit = meta.index;
      if (meta.index > log.applied) log.applied = meta.index;
      this.#log.compact(meta);
      this.#configs = [{ index: meta.index, term: meta.term, config: this.#configAt(meta.index) }, ...this.#configs.filter((c) => c.index > meta.index)];
    } else {
      this.#logger.info({ term: this.#term, index: meta.index }, 'restored from a snapshot');
      log.restore(meta);
      this.#configs = [{ index: meta.index, term: meta.term, config: meta.config }];
    }
    if (term === this.#term) this.#send(this.#appendReply(from, true, meta.index, 0, 0, 0));
  }

  #configAt(index: number): ConfigState {
    let config = this.#configs[0];
    for (const c of this.#configs) if (c.index <= index) config = c;
    return config.config;
  }

  reportUnreachable(peer: NodeId): void {
    const pr = this.#progress.get(peer);
    if (this.#role === 'leader' && pr && pr.state === 'replicate') pr.becomeProbe();
  }

  reportSnapshot(peer: NodeId, ok: boolean): void {
    const pr = this.#progress.get(peer);
    if (this.#role !== 'leader' || !pr || pr.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    pr.probeSent = true; // wait for the follower's reply or the next heartbeat before probing
  }

  config(): ConfigState {
    return this.#configs[this.#configs.length - 1].config;
  }

  /** The first log index held in memory (after the snapshot boundary). Cheap. */
  firstIndex(): number {
    return this.#log.firstIndex();
  }

  /** A member's match index as the leader tracks it (0 when not tracked). Cheap. */
  matchOf(peer: NodeId): number {
    return this.#progress.get(peer)?.match ?? 0;
  }

  /** The last log index. Cheap. */
  lastIndex(): number {
    return this.#log.lastIndex();
  }

  /** Bytes of entry data held in memory (after the snapshot boundary). Cheap. */
  logBytes(): number {
    return this.#log.bytes();
  }

  /** Where to compact so that at most maxBytes of entries stay before `hi` (see RaftLog). */
  indexKeepingTailBytes(hi: number, maxBytes: number): number {
    return this.#log.indexKeepingTailBytes(hi, maxBytes);
  }

  /** The role alone (cheap: no status object), as /v1/status would report it. */
  role(): Role {
    return this.#publicRole();
  }

  /** The current term, vote and commit index (what the next Ready's hard state would hold). */
  hardState(): HardState {
    return this.#hardState();
  }

  /**
   * Takes the heartbeats and heartbeat replies waiting for the next Ready, for the runtime to send
   * now. They carry a term, a commit index no higher than what the leader knows the receiver
   * holds, and a read round: nothing in them depends on a write the runtime has not finished, so
   * they may go while a Ready is still being persisted, provided this member's current term and
   * vote are already durable (the runtime checks; hardState() gives them). A runtime whose
   * storage stalls (LevelDB waiting for a compaction) thus keeps its followers from campaigning,
   * and its leader from stepping down for want of a quorum.
   */
  takeHeartbeats(): Message[] {
    const beats: Message[] = [];
    const rest: Message[] = [];
    for (const m of this.#msgs) (m.type === 'heartbeat' || m.type === 'heartbeatResp' ? beats : rest).push(m);
    if (beats.length > 0) this.#msgs = rest;
    return beats;
  }

  status(): RaftStatus {
    return {
      id: this.id,
      role: this.#publicRole(),
      term: this.#term,
      vote: this.#vote,
      leader: this.#leader,
      commit: this.#log.commit,
      applied: this.#log.applied,
      firstIndex: this.#log.firstIndex(),
      lastIndex: this.#log.lastIndex(),
      stableIndex: this.#log.stableIndex(),
      config: this.config(),
      transferringTo: this.#leadTransferee,
      progress: [...this.#progress.values()].map((p) => ({
        id: p.id, match: p.match, next: p.next, state: p.state, learner: p.isLearner,
      })),
    };
  }

  /** Log entries [lo, hi) held in memory (for checkers and the runtime's catch-up reads). */
  entriesFrom(lo: number, hi: number): Entry[] {
    return this.#log.slice(Math.max(lo, this.#log.firstIndex()), hi);
  }

  // ---------------------------------------------------------------- Ready

  hasReady(): boolean {
    if (this.#msgs.length > 0 || this.#readStates.length > 0 || this.#receivedSnapshot) return true;
    if (this.#log.unstableEntries().length > 0) return true;
    if (Math.min(this.#log.commit, this.#log.lastIndex()) > this.#log.applied) return true;
    if (!sameHardState(this.#hardState(), this.#prevHard)) return true;
    if (!sameSoftState(this.#softState(), this.#prevSoft)) return true;
    return this.#role === 'leader' && this.#leaderHasWork();
  }

  ready(): Ready {
    assert(!this.#readyInFlight, 'ready() called before advance() of the previous Ready');
    if (this.#role === 'leader') this.#flushLeaderMessages();
    const entries = this.#log.unstableEntries();
    const hard = this.#hardState();
    const hardChanged = !sameHardState(hard, this.#prevHard);
    const soft = this.#softState();
    const snapshot = this.#receivedSnapshot;
    const ready: Ready = {
      softState: sameSoftState(soft, this.#prevSoft) ? null : soft,
      hardState: hardChanged ? hard : null,
      entries,
      snapshot,
      messages: this.#msgs,
      committed: this.#log.committedToApply(this.#o.maxCommittedPerReady),
      readStates: this.#readStates,
      mustSync: entries.length > 0 || snapshot !== null || hard.term !== this.#prevHard.term || hard.vote !== this.#prevHard.vote,
    };
    this.#msgs = [];
    this.#readStates = [];
    this.#receivedSnapshot = null;
    this.#prevHard = hard;
    this.#prevSoft = soft;
    this.#readyInFlight = true;
    return ready;
  }

  advance(ready: Ready): void {
    assert(this.#readyInFlight, 'advance() without a Ready in flight');
    this.#readyInFlight = false;
    const last = ready.entries[ready.entries.length - 1];
    if (last) {
      this.#log.stableTo(last.index, last.term);
      // The leader counts itself toward a quorum only for entries it has made durable.
      if (this.#role === 'leader') this.#maybeCommit();
    }
    const lastApplied = ready.committed[ready.committed.length - 1];
    if (lastApplied) this.#log.applied = Math.max(this.#log.applied, lastApplied.index);
  }

  // ---------------------------------------------------------------- terms and roles

  /** Common term handling (§5.1, §9.6, §6.2 of the dissertation). Returns false if m is done with. */
  #stepTerm(m: Message): boolean {
    if (m.term > this.#term) {
      if (m.type === 'preVote' || m.type === 'vote') {
        const inLease = this.#o.checkQuorum && this.#leader !== null && this.#electionElapsed < this.#o.electionTicks;
        // A member that heard from a leader recently ignores campaigns: removed or partitioned
        // members cannot depose a healthy leader (dissertation §4.2.3).
        if (inLease && !m.transfer) return false;
        if (m.type === 'preVote') return true; // a pre-vote never changes our term
      }
      if (m.type === 'preVoteResp' && m.granted) return true;
      const fromLeader = m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot';
      // §5.2: only hearing from a leader or granting a vote restarts the election timer. Without
      // this, a candidate with a stale log (pre-vote off) restarts the timer of the member that
      // would win every time it campaigns, stalling elections for many rounds (simulator seed 646).
      // A granted vote still restarts it, in #handleVoteRequest.
      const elapsed = this.#electionElapsed;
      this.#becomeFollower(m.term, fromLeader ? m.from : null);
      if (m.type === 'vote') this.#electionElapsed = elapsed;
      return true;
    }
    if (m.term < this.#term) {
      if (m.type === 'append' || m.type === 'heartbeat') {
        // A deposed leader that pre-vote keeps from learning the new term: tell it our term.
        this.#send(this.#appendReply(m.from, false, 0, 0, 0, 0));
      } else if (m.type === 'preVote') {
        this.#send({ type: 'preVoteResp', from: this.id, to: m.from, term: this.#term, granted: false });
      } else if (m.type === 'vote') {
        // Figure 2: the reply carries our term, so a candidate that fell behind catches up at once.
        // Silence left it campaigning in old terms; when the members ahead of it do not send to
        // it (they hold an older configuration), it could not win for a long time (seed 1110).
        this.#send({ type: 'voteResp', from: this.id, to: m.from, term: this.#term, granted: false });
      }
      return false;
    }
    return true;
  }

  #becomeFollower(term: number, leader: NodeId | null): void {
    const wasLeader = this.#role === 'leader';
    if (term !== this.#term) {
      this.#term = term;
      this.#vote = null;
    }
    this.#role = 'follower';
    this.#leader = leader;
    this.#resetRoleState();
    if (wasLeader) this.#logger.info({ term, leader }, 'stepped down');
  }

  #becomeLeader(): void {
    assert(this.#role === 'candidate', 'only a candidate becomes leader');
    this.#role = 'leader';
    this.#leader = this.id;
    this.#resetRoleState();
    const next = this.#log.lastIndex() + 1;
    for (const id of this.#members()) {
      if (id !== this.id) this.#progress.set(id, new Progress(id, next, this.config().learners.includes(id)));
    }
    this.#logger.info({ term: this.#term, index: next }, 'became leader');
    // A no-op of our own term lets us commit (Figure 8) and serve reads (§6.4).
    this.#appendOwn('normal', new Uint8Array(0));
  }

  #resetRoleState(): void {
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    this.#votes.clear();
    this.#progress.clear();
    this.#appendDue.clear();
    this.#commitOwed.clear();
    this.#commitDirty = false;
    this.#leadTransferee = null;
    this.#failPendingReads();
    this.#readRound = 0;
    this.#readHeartbeatDue = false;
  }

  #resetRandomizedElectionTimeout(): void {
    this.#randomizedElectionTimeout = this.#rng.int(this.#o.electionTicks, 2 * this.#o.electionTicks);
  }

  #publicRole(): Role {
    if (this.#role === 'follower' && this.config().learners.includes(this.id)) return 'learner';
    return this.#role;
  }

  #promotable(): boolean {
    return this.config().voters.includes(this.id);
  }

  #members(): NodeId[] {
    const c = this.config();
    return [...c.voters, ...c.learners];
  }

  // ---------------------------------------------------------------- ticks

  #tickElection(): void {
    this.#electionElapsed++;
    if (this.#promotable() && this.#electionElapsed >= this.#randomizedElectionTimeout) {
      this.#electionElapsed = 0;
      this.#campaign(this.#o.preVote ? 'preVote' : 'vote', false);
    }
  }

  #tickLeader(): void {
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    if (this.#electionElapsed >= this.#o.electionTicks) {
      this.#electionElapsed = 0;
      if (this.#o.checkQuorum && !this.#quorumActive()) {
        this.#logger.warn({ term: this.#term }, 'lost contact with a quorum; stepping down');
        this.#becomeFollower(this.#term, null);
        return;
      }
      if (this.#leadTransferee !== null) {
        this.#logger.warn({ term: this.#term, peer: this.#leadTransferee }, 'leadership transfer timed out');
        this.#leadTransferee = null;
      }
    }
    if (this.#heartbeatElapsed >= this.#o.heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat();
    }
  }

  /** Check-quorum: did a majority of voters talk to us since the last check? Resets the marks. */
  #quorumActive(): boolean {
    let active = 0;
    const voters = this.config().voters;
    for (const id of voters) {
      if (id === this.id) active++;
      else if (this.#progress.get(id)?.recentActive) active++;
    }
    for (const pr of this.#progress.values()) pr.recentActive = false;
    return active >= quorumSize(voters.length);
  }

  // ---------------------------------------------------------------- elections

  #campaign(kind: CampaignKind, transfer: boolean): void {
    if (kind === 'preVote') {
      this.#role = 'preCandidate';
      this.#leader = null;
      this.#votes.clear();
    } else {
      this.#term++;
      this.#vote = this.id;
      this.#role = 'candidate';
      this.#leader = null;
      this.#votes.clear();
    }
    this.#resetRandomizedElectionTimeout();
    this.#electionElapsed = 0;
    const term = kind === 'preVote' ? this.#term + 1 : this.#term;
    this.#logger.info({ term, kind }, 'campaigning');
    if (this.#recordVote(this.id, true)) return;
    const lastLogIndex = this.#log.lastIndex();
    const lastLogTerm = this.#log.lastTerm();
    for (const id of this.config().voters) {
      if (id === this.id) continue;
      this.#send({ type: kind, from: this.id, to: id, term, lastLogIndex, lastLogTerm, transfer });
    }
  }

  /** Count a vote; returns true when the campaign was decided (won or lost). */
  #recordVote(from: NodeId, granted: boolean): boolean {
    if (!this.config().voters.includes(from)) return false;
    if (!this.#votes.has(from)) this.#votes.set(from, granted);
    let yes = 0;
    let no = 0;
    for (const v of this.#votes.values()) if (v) yes++; else no++;
    const q = quorumSize(this.config().voters.length);
    if (yes >= q) {
      if (this.#role === 'preCandidate') this.#campaign('vote', false);
      else this.#becomeLeader();
      return true;
    }
    if (no >= q) {
      this.#becomeFollower(this.#term, null);
      return true;
    }
    return false;
  }

  #handleVoteRequest(m: VoteRequest): void {
    const isPre = m.type === 'preVote';
    const canVote = this.#vote === m.from || (this.#vote === null && this.#leader === null) || (isPre && m.term > this.#term);
    // Vote without consulting our own configuration (dissertation §4.1): a member whose log lags
    // behind a config change (a just-promoted learner, say) may be the vote a quorum needs, and
    // refusing candidates it does not know deadlocked the cluster for good (simulator seed 1604).
    // Removed members are kept from disrupting by pre-vote and the leader lease (§4.2.3) instead.
    const granted = canVote && this.#log.isUpToDate(m.lastLogIndex, m.lastLogTerm);
    const reply: VoteResponse = {
      type: isPre ? 'preVoteResp' : 'voteResp',
      from: this.id,
      to: m.from,
      // A granted pre-vote answers in the term the candidate will campaign in.
      term: granted ? m.term : this.#term,
      granted,
    };
    if (granted && !isPre) {
      this.#vote = m.from;
      this.#electionElapsed = 0;
    }
    this.#send(reply);
  }

  #stepCandidate(m: Message): void {
    switch (m.type) {
      case 'preVoteResp':
        if (this.#role !== 'preCandidate') return;
        if (m.granted && m.term === this.#term + 1) this.#recordVote(m.from, true);
        else if (!m.granted) this.#recordVote(m.from, false);
        return;
      case 'voteResp':
        if (this.#role === 'candidate' && m.term === this.#term) this.#recordVote(m.from, m.granted);
        return;
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // Someone won this term: follow it.
        this.#becomeFollower(this.#term, m.from);
        this.#stepFollower(m);
        return;
      default:
        return;
    }
  }

  // ---------------------------------------------------------------- follower

  #stepFollower(m: Message): void {
    switch (m.type) {
      case 'append':
        this.#heardFromLeader(m.from);
        this.#handleAppend(m);
        return;
      case 'heartbeat':
        this.#heardFromLeader(m.from);
        this.#handleHeartbeat(m);
        return;
      case 'snapshot':
        this.#heardFromLeader(m.from);
        this.#handleSnapshot(m);
        return;
      case 'timeoutNow':
        if (this.#promotable()) {
          this.#logger.info({ term: this.#term, peer: m.from }, 'leadership handed to us');
          this.#campaign('vote', true);
        }
        return;
      case 'readIndexResp':
        this.#readStates.push({ context: m.context, index: m.index });
        return;
      default:
        return;
    }
  }

  #heardFromLeader(from: NodeId): void {
    this.#electionElapsed = 0;
    this.#leader = from;
  }

  #handleAppend(m: AppendRequest): void {
    const log = this.#log;
    if (m.prevIndex < log.commit) {
      // Everything up to commit matches the leader already: skip ahead.
      this.#send(this.#appendReply(m.from, true, log.commit, 0, 0, 0));
      return;
    }
    if (!log.matchTerm(m.prevIndex, m.prevTerm)) {
      const hint = this.#conflictHint(m.prevIndex);
      this.#send(this.#appendReply(m.from, false, 0, m.prevIndex, hint.term, hint.index));
      return;
    }
    assert(m.entries.length === 0 || m.entries[0].index === m.prevIndex + 1, 'append entries do not follow prevIndex');
    log.merge(m.entries);
    this.#syncConfigsWithLog(m.entries);
    const lastNew = m.prevIndex + m.entries.length;
    const commit = Math.min(m.commit, lastNew);
    if (commit > log.commit) log.commit = commit;
    this.#send(this.#appendReply(m.from, true, lastNew, 0, 0, 0));
  }

  /** Fast back-off (§5.3): the term at the leader's prevIndex and where that term starts here. */
  #conflictHint(prevIndex: number): { term: number; index: number } {
    if (prevIndex > this.#log.lastIndex()) return { term: 0, index: this.#log.lastIndex() + 1 };
    const term = this.#log.term(prevIndex) ?? 0;
    return { term, index: this.#log.firstIndexOfTermAt(prevIndex) };
  }

  #handleHeartbeat(m: HeartbeatRequest): void {
    const commit = Math.min(m.commit, this.#log.lastIndex());
    if (commit > this.#log.commit) this.#log.commit = commit;
    this.#send({ type: 'heartbeatResp', from: this.id, to: m.from, term: this.#term, round: m.round });
  }

  #handleSnapshot(m: SnapshotRequest): void {
    const s = m.snapshot;
    const log = this.#log;
    if (s.index <= log.commit) {
      this.#send(this.#appendReply(m.from, true, log.commit, 0, 0, 0));
      return;
    }
    if (log.matchTerm(s.index, s.term)) {
      // We already hold that entry: nothing to restore, the prefix is committed.
      log.commit = s.index;
    } else {
      this.#logger.info({ term: this.#term, index: s.index }, 'restoring from a snapshot');
      log.restore(s);
      this.#configs = [{ index: s.index, term: s.term, config: s.config }];
      this.#receivedSnapshot = s;
    }
    this.#send(this.#appendReply(m.from, true, s.index, 0, 0, 0));
  }

  #appendReply(to: NodeId, success: boolean, matchIndex: number, rejectedIndex: number, conflictTerm: number, conflictIndex: number): AppendResponse {
    return { type: 'appendResp', from: this.id, to, term: this.#term, success, matchIndex, rejectedIndex, conflictTerm, conflictIndex };
  }

  /** After a follower's merge: forget configs whose entries were truncated, add the new ones. */
  #syncConfigsWithLog(entries: readonly Entry[]): void {
    const log = this.#log;
    while (this.#configs.length > 1) {
      const last = this.#configs[this.#configs.length - 1];
      if (last.index <= log.lastIndex() && log.term(last.index) === last.term) break;
      this.#configs.pop();
    }
    const lastKnown = this.#configs[this.#configs.length - 1].index;
    for (const e of entries) {
      if (e.type === 'config' && e.index > lastKnown && log.term(e.index) === e.term) this.#configs.push(configRecord(e));
    }
  }

  // ---------------------------------------------------------------- leader

  #refuseProposal(): ProposeResult | null {
    if (this.#role !== 'leader') return { ok: false, code: 'NOT_LEADER', leader: this.#leader };
    if (this.#leadTransferee !== null) return { ok: false, code: 'TRANSFERRING', leader: this.id };
    if (this.#log.lastIndex() - this.#log.commit >= this.#o.maxUncommittedEntries) {
      return { ok: false, code: 'TOO_MANY_UNCOMMITTED', leader: this.id };
    }
    return null;
  }

  #appendOwn(type: Entry['type'], data: Uint8Array): ProposeResult {
    const index = this.#log.lastIndex() + 1;
    const entry: Entry = { index, term: this.#term, type, data };
    this.#log.append([entry]);
    if (type === 'config') {
      this.#configs.push(configRecord(entry));
      this.#onLeaderConfigChange();
    }
    return { ok: true, index, term: this.#term };
  }

  /** The active config changed on the leader: track new members, drop removed ones. */
  #onLeaderConfigChange(): void {
    const c = this.config();
    const next = this.#log.lastIndex() + 1;
    for (const id of [...c.voters, ...c.learners]) {
      if (id === this.id) continue;
      const pr = this.#progress.get(id);
      if (pr) pr.isLearner = c.learners.includes(id);
      else this.#progress.set(id, new Progress(id, next, c.learners.includes(id)));
    }
    for (const id of [...this.#progress.keys()]) {
      if (!c.voters.includes(id) && !c.learners.includes(id)) this.#progress.delete(id);
    }
    if (this.#leadTransferee !== null && !c.voters.includes(this.#leadTransferee)) this.#leadTransferee = null;
    this.#maybeCommit();
  }

  #stepLeader(m: Message): void {
    const pr = this.#progress.get(m.from);
    if (m.type === 'readIndex') {
      if (pr) pr.recentActive = true;
      this.#handleRemoteRead(m);
      return;
    }
    if (!pr) return; // not a member (any more)
    pr.recentActive = true;
    switch (m.type) {
      case 'appendResp':
        if (m.success) this.#handleAppendSuccess(pr, m.matchIndex);
        else this.#handleAppendReject(pr, m);
        return;
      case 'heartbeatResp':
        pr.ackedRound = Math.max(pr.ackedRound, m.round);
        this.#releaseConfirmedReads();
        if (pr.state === 'probe' && pr.match < this.#log.lastIndex()) {
          pr.probeSent = false; // the probe may have been lost: try again
          this.#appendDue.add(pr.id);
        }
        return;
      default:
        return;
    }
  }

  #handleAppendSuccess(pr: Progress, matchIndex: number): void {
    const moved = pr.maybeUpdate(matchIndex);
    if (pr.state === 'probe' && (moved || pr.match >= pr.next - 1)) pr.becomeReplicate();
    else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) pr.becomeProbe();
    if (moved) this.#maybeCommit();
    // (#maybeCommit may have stepped us down: a leader that removed itself tells no one.)
    if (moved && this.#o.lazyCommitNotifyEntries > 0 && this.#role === 'leader' && pr.state === 'replicate') this.#oweCommit(pr);
    if (this.#leadTransferee === pr.id && pr.match === this.#log.lastIndex()) this.#sendTimeoutNow(pr.id);
  }

  #handleAppendReject(pr: Progress, m: AppendResponse): void {
    // Drop replies to appends we no longer care about (reordered or duplicated).
    if (pr.state === 'replicate' ? m.rejectedIndex <= pr.match : m.rejectedIndex !== pr.next - 1) return;
    let next = m.conflictIndex;
    if (m.conflictTerm > 0) {
      const ours = this.#log.lastIndexOfTerm(m.conflictTerm);
      if (ours > 0) next = ours + 1;
    }
    pr.becomeProbe();
    pr.next = Math.max(pr.match + 1, Math.min(next, m.rejectedIndex));
    this.#appendDue.add(pr.id);
  }

  /** Figure 8: commit only an entry of the current term that a majority of voters holds. */
  #maybeCommit(): void {
    const voters = this.config().voters;
    if (voters.length === 0) return;
    const matches = voters.map((id) => (id === this.id ? this.#log.stableIndex() : this.#progress.get(id)?.match ?? 0));
    const candidate = majorityValue(matches);
    if (candidate <= this.#log.commit || this.#log.term(candidate) !== this.#term) return;
    const wasCommittedInTerm = this.#committedInTerm();
    this.#log.commit = candidate;
    this.#commitDirty = true;
    if (!wasCommittedInTerm) this.#releaseReadsAwaitingCommit();
    const latest = this.#configs[this.#configs.length - 1];
    if (latest.index <= candidate && !latest.config.voters.includes(this.id)) {
      this.#logger.info({ term: this.#term, index: latest.index }, 'removed from the configuration; stepping down');
      this.#becomeFollower(this.#term, null);
    }
  }

  #committedInTerm(): boolean {
    return this.#log.term(this.#log.commit) === this.#term;
  }

  #leaderHasWork(): boolean {
    if (this.#commitDirty || this.#appendDue.size > 0 || this.#readHeartbeatDue) return true;
    const last = this.#log.lastIndex();
    for (const pr of this.#progress.values()) {
      if (pr.next <= last && !pr.isPaused(this.#o.maxInflightAppends)) return true;
    }
    return false;
  }

  /** Batch everything owed to followers into as few appends as the bounds allow. */
  #flushLeaderMessages(): void {
    for (const pr of this.#progress.values()) {
      this.#sendAppends(pr, this.#commitDirty || this.#appendDue.has(pr.id));
    }
    this.#commitDirty = false;
    this.#appendDue.clear();
    if (this.#readHeartbeatDue) {
      this.#readHeartbeatDue = false;
      this.#broadcastHeartbeat();
    }
  }

  #sendAppends(pr: Progress, notify: boolean): void {
    const last = this.#log.lastIndex();
    let sent = false;
    while (!pr.isPaused(this.#o.maxInflightAppends) && (pr.next <= last || (notify && !sent && pr.state === 'probe'))) {
      if (!this.#sendOneAppend(pr)) return;
      sent = true;
      if (pr.state !== 'replicate') return; // probe: one at a time
    }
    // A replicating follower with nothing new still needs to learn the commit index. An empty
    // append at `next - 1` could overtake appends in flight and be rejected, forcing a re-probe;
    // a heartbeat carries min(match, commit) safely.
    if (notify && !sent && pr.state === 'replicate') {
      if (this.#o.lazyCommitNotifyEntries === 0) this.#sendHeartbeat(pr);
      else this.#oweCommit(pr);
    }
  }

  /** Sends one append (or a snapshot if the entries are compacted away); false if it sent a snapshot. */
  #sendOneAppend(pr: Progress): boolean {
    const prevIndex = pr.next - 1;
    const prevTerm = this.#log.term(prevIndex);
    if (prevTerm === undefined || pr.next < this.#log.firstIndex()) {
      this.#sendSnapshot(pr);
      return false;
    }
    const entries = this.#log.slice(pr.next, this.#log.lastIndex() + 1, this.#o.maxEntriesPerAppend, this.#o.maxBytesPerAppend);
    this.#send({
      type: 'append', from: this.id, to: pr.id, term: this.#term,
      prevIndex, prevTerm, entries, commit: this.#log.commit,
    });
    pr.commitSent = Math.max(pr.commitSent, Math.min(this.#log.commit, prevIndex + entries.length));
    if (pr.commitSent >= Math.min(pr.match, this.#log.commit)) this.#commitOwed.delete(pr.id);
    if (pr.state === 'replicate') {
      const lastSent = prevIndex + entries.length;
      if (entries.length > 0) {
        pr.next = lastSent + 1;
        pr.inflight.push(lastSent);
      }
    } else {
      pr.probeSent = true;
    }
    return true;
  }

  #sendSnapshot(pr: Progress): void {
    const snapshot = this.#log.snapshot;
    this.#logger.info({ term: this.#term, peer: pr.id, index: snapshot.index }, 'follower needs a snapshot');
    pr.becomeSnapshot(snapshot.index);
    this.#send({ type: 'snapshot', from: this.id, to: pr.id, term: this.#term, snapshot });
  }

  #broadcastHeartbeat(): void {
    const last = this.#log.lastIndex();
    for (const pr of this.#progress.values()) {
      this.#sendHeartbeat(pr);
      this.#detectStall(pr, last);
    }
  }

  #sendHeartbeat(pr: Progress): void {
    const commit = Math.min(pr.match, this.#log.commit);
    pr.commitSent = Math.max(pr.commitSent, commit);
    this.#commitOwed.delete(pr.id);
    this.#send({ type: 'heartbeat', from: this.id, to: pr.id, term: this.#term, commit, round: this.#readRound });
  }

  /**
   * With lazyCommitNotifyEntries: remember that `pr` could be told a higher commit index than it was.
   * A follower whose log does not reach the commit index yet is told when its acknowledgement
   * arrives (#handleAppendSuccess).
   */
  #oweCommit(pr: Progress): void {
    const news = Math.min(pr.match, this.#log.commit) - pr.commitSent;
    if (news > this.#o.lazyCommitNotifyEntries) this.#sendHeartbeat(pr);
    else if (news > 0) this.#commitOwed.add(pr.id);
  }

  /** A replicating follower whose match has not moved for a while probably lost an append. */
  #detectStall(pr: Progress, last: number): void {
    if (pr.state === 'replicate' && pr.match < last && pr.match === pr.matchAtLastHeartbeat && pr.inflight.length > 0) {
      pr.stallHeartbeats++;
      if (pr.stallHeartbeats >= STALL_HEARTBEATS_MAX) {
        pr.becomeProbe();
        pr.stallHeartbeats = 0;
      }
    } else {
      pr.stallHeartbeats = 0;
    }
    pr.matchAtLastHeartbeat = pr.match;
  }

  #sendTimeoutNow(to: NodeId): void {
    this.#send({ type: 'timeoutNow', from: this.id, to, term: this.#term });
  }

  // ---------------------------------------------------------------- ReadIndex (§6.4)

  #registerRead(context: ReadContext, from: NodeId | null): void {
    if (!this.#committedInTerm()) {
      this.#readsAwaitingCommit.push({ context, from });
      return;
    }
    if (this.config().voters.length === 1 && this.#promotable()) {
      this.#answerRead(context, this.#log.commit, from);
      return;
    }
    // Reads registered before the next heartbeat share its round: one round confirms them all.
    if (!this.#readHeartbeatDue) {
      this.#readRound++;
      this.#readHeartbeatDue = true;
    }
    this.#pendingReads.push({ context, index: this.#log.commit, round: this.#readRound, from });
  }

  #handleRemoteRead(m: ReadIndexRequest): void {
    this.#registerRead(m.context, m.from);
  }

  #releaseReadsAwaitingCommit(): void {
    const waiting = this.#readsAwaitingCommit;
    this.#readsAwaitingCommit = [];
    for (const r of waiting) this.#registerRead(r.context, r.from);
  }

  #releaseConfirmedReads(): void {
    if (this.#pendingReads.length === 0) return;
    const rounds = this.config().voters.map((id) => (id === this.id ? Number.MAX_SAFE_INTEGER : this.#progress.get(id)?.ackedRound ?? 0));
    const confirmed = majorityValue(rounds);
    let n = 0;
    while (n < this.#pendingReads.length && this.#pendingReads[n].round <= confirmed) {
      const r = this.#pendingReads[n];
      this.#answerRead(r.context, r.index, r.from);
      n++;
    }
    if (n > 0) this.#pendingReads = this.#pendingReads.slice(n);
  }

  #answerRead(context: ReadContext, index: number, from: NodeId | null): void {
    if (from === null) this.#readStates.push({ context, index });
    else this.#send({ type: 'readIndexResp', from: this.id, to: from, term: this.#term, context, index });
  }

  /** Leadership ended: reads waiting on it fail (index 0) so callers can retry elsewhere at once. */
  #failPendingReads(): void {
    for (const r of this.#pendingReads) this.#answerRead(r.context, 0, r.from);
    for (const r of this.#readsAwaitingCommit) this.#answerRead(r.context, 0, r.from);
    this.#pendingReads = [];
    this.#readsAwaitingCommit = [];
  }

  // ---------------------------------------------------------------- helpers

  #send(m: Message): void {
    this.#msgs.push(m);
  }

  #hardState(): HardState {
    return { term: this.#term, vote: this.#vote, commit: this.#log.commit };
  }

  #softState(): SoftState {
    return { role: this.#publicRole(), leader: this.#leader, term: this.#term };
  }
}

function configRecord(e: Entry): ConfigRecord {
  return { index: e.index, term: e.term, config: decodeConfig(e.data) };
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function sameSoftState(a: SoftState, b: SoftState): boolean {
  return a.role === b.role && a.leader === b.leader && a.term === b.term;
}
