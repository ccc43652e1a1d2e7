/**
 * The data the Raft core exchanges with the world: log entries, persistent state, configuration,
 * snapshot boundaries and peer messages. All plain data; nothing here does I/O.
 */

/** A member's id is its `--name`. */
export type NodeId = string;

/**
 * `normal` entries carry an opaque command for the state machine (an empty one is the leader's
 * no-op); `config` entries carry an encoded `ConfigState` (see config.ts) that takes effect as soon
 * as it is appended, per the dissertation's single-server membership change.
 */
export type EntryType = 'normal' | 'config';

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** What must be durable before any message that depends on it leaves. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId | null;
  readonly commit: number;
}

/** The cluster configuration: who votes, who only replicates. */
export interface ConfigState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /**
   * Where each member's peer listener is, carried with the configuration so that a member added
   * at runtime becomes reachable by everyone the moment its config entry is appended. The core
   * only passes it along.
   */
  readonly peerUrls?: Readonly<Record<NodeId, string>>;
}

/**
 * The boundary of a snapshot: every entry up to and including `index` is folded into the state
 * machine image, whose bytes the runtime stores and ships; the core only tracks this metadata.
 */
export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly config: ConfigState;
}

/** Leadership-transfer and read contexts are plain numbers chosen by the runtime. */
export type ReadContext = number;

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

/** RequestVote and its pre-vote probe (§9.6 of the dissertation). */
export interface VoteRequest extends MessageBase {
  readonly type: 'preVote' | 'vote';
  readonly lastLogIndex: number;
  readonly lastLogTerm: number;
  /** Set when campaigning on a TimeoutNow: voters must not ignore it because of a live leader. */
  readonly transfer: boolean;
}

export interface VoteResponse extends MessageBase {
  readonly type: 'preVoteResp' | 'voteResp';
  readonly granted: boolean;
}

export interface AppendRequest extends MessageBase {
  readonly type: 'append';
  readonly prevIndex: number;
  readonly prevTerm: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
}

export interface AppendResponse extends MessageBase {
  readonly type: 'appendResp';
  readonly success: boolean;
  /** On success, the highest index known to match the leader's log. */
  readonly matchIndex: number;
  /** On rejection: the prevIndex of the rejected request (lets the leader drop stale replies). */
  readonly rejectedIndex: number;
  /** On rejection: the term of the follower's entry at rejectedIndex (0 if it has none)... */
  readonly conflictTerm: number;
  /** ...and the first index the follower holds with that term, or its lastIndex + 1. */
  readonly conflictIndex: number;
}

export interface HeartbeatRequest extends MessageBase {
  readonly type: 'heartbeat';
  /** min(follower's match, leader's commit): a follower never learns a commit beyond its log. */
  readonly commit: number;
  /** The leader's read round; acknowledging it confirms leadership for reads of that round. */
  readonly round: number;
}

export interface HeartbeatResponse extends MessageBase {
  readonly type: 'heartbeatResp';
  readonly round: number;
}

export interface SnapshotRequest extends MessageBase {
  readonly type: 'snapshot';
  /** The runtime ships the image bytes beside this message; the core sees only the boundary. */
  readonly snapshot: SnapshotMeta;
}

export interface TimeoutNowRequest extends MessageBase {
  readonly type: 'timeoutNow';
}

/** A follower asking the leader for a read index on behalf of its own clients. */
export interface ReadIndexRequest extends MessageBase {
  readonly type: 'readIndex';
  readonly context: ReadContext;
}

export interface ReadIndexResponse extends MessageBase {
  readonly type: 'readIndexResp';
  readonly context: ReadContext;
  /** 0 when the leader could not serve it (it is no longer leader). */
  readonly index: number;
}

export type Message =
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | HeartbeatRequest
  | HeartbeatResponse
  | SnapshotRequest
  | TimeoutNowRequest
  | ReadIndexRequest
  | ReadIndexResponse;

export type MessageType = Message['type'];

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader' | 'learner';

/** A read that may be served once the state machine has applied `index`. */
export interface ReadState {
  readonly context: ReadContext;
  readonly index: number;
}

/** Volatile state, for status pages and logs. */
export interface SoftState {
  readonly role: Role;
  readonly leader: NodeId | null;
  readonly term: number;
}
