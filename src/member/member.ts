import { randomInt } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { KvService, MemberStatusView, PutOptions, TxnInput, TxnOutcome, WriteOptions } from '../api/kv-service.js';
import { buildApi } from '../api/build-api.js';
import { addAcceptors, type ExtraAcceptors } from '../api/acceptors.js';
import type { ServeConfig } from '../config/schema.js';
import { encodeCommand } from '../kv/command.js';
import type { Command } from '../kv/command.js';
import type { ApplyResult, DeleteResult, PutResult } from '../kv/kv-state.js';
import type { KvRecord } from '../kv/kv-record.js';
import { RaftCore } from '../raft/raft-core.js';
import type { Ready } from '../raft/ready.js';
import type { ConfigState, HardState, Message, NodeId, SoftState } from '../raft/types.js';
import { LevelStorage } from '../storage/level-storage.js';
import type { ListOptions, ListPage } from '../storage/level-storage.js';
import { PeerTransport } from '../transport/peer-client.js';
import { buildPeerApp } from '../transport/peer-routes.js';
import { assert } from '../util/assert.js';
import { SeededRng } from '../util/rng.js';
import type { PinoLogger } from '../util/log.js';
import { openState } from './bootstrap.js';
import { ClusterFile } from './cluster-file.js';
import { NoLeaderError, NotLeaderError, OutcomeUnknownError, OverloadedError, ReadTimeoutError, ShuttingDownError } from './errors.js';
import { MemberMetrics } from './metrics.js';
import { ProposalWaiters } from './proposals.js';
import { ReadBatcher } from './reads.js';
import { LeaseKeeper } from './lease-keeper.js';
import { WatchHub } from './watch-hub.js';
import { SnapshotManager } from './snapshots.js';
import type { HubEvent, WatchFilter, WatchSink } from './watch-hub.js';
import { InvalidArgumentError, LeaseNotFoundError } from '../kv/errors.js';
import type { ConfigChange } from '../raft/config.js';

export interface MemberOptions {
  readonly logger: PinoLogger;
  /** A broken invariant or a failed disk write: the member cannot go on. Default: exit(70). */
  readonly onFatal?: (err: unknown) => void;
}

/** Writes waiting for commit, and reads waiting for a read index, are bounded. */
const MAX_PENDING_PROPOSALS = 50_000;
const MAX_PENDING_READS = 50_000;
/**
 * How big (times --snapshot-bytes) the log may grow while compaction waits for a snapshot send,
 * counting each entry's data and about ENTRY_OVERHEAD_BYTES of bookkeeping: memory is the limit.
 * (A limit in entries was too tight: sending a 1,000,000-key image takes ~35 s on a busy 2-core
 * machine, while 5,000 writes/s land.)
 */
const SNAPSHOT_HOLD_LIMIT = 10;
const ENTRY_OVERHEAD_BYTES = 128;
/** Idle watches hear the current revision this often. */
const WATCH_PROGRESS_INTERVAL_MS = 5000;
/** How long a commit index may wait for the next append before a heartbeat carries it (#armCommitNotify). */
const COMMIT_NOTIFY_DELAY_MS = 2;
/**
 * How long applied writes may wait to join one LevelDB batch (LevelStorageOptions.landDelayMs).
 * Answers and point reads never wait for it; the log, not this batch, is what makes a write durable.
 */
const LAND_DELAY_MS = 5;
/** Commits of more entries are sent at once (see RaftOptions.lazyCommitNotifyEntries). */
const LAZY_COMMIT_NOTIFY_ENTRIES = 8;
/**
 * Extra descriptors of the client port's listening socket (src/api/acceptors.ts): with them a turn
 * of the event loop accepts up to four connections instead of one, so a burst of new connections
 * (a load generator starting, every client of a failed leader reconnecting here) is taken about
 * four times as fast. Measured with wrk's 256 connections starting at once on a loaded leader:
 * see docs/benchmarks.md.
 */
const EXTRA_CLIENT_ACCEPTORS = 3;
/** Lease ids are random in [1, 2^48): unique enough, and exact as JSON numbers. */
const LEASE_ID_LIMIT = 2 ** 48;

/**
 * One flotilla member: the Raft core driven by ticks and peer messages, its Ready batches carried
 * out in order (persist, send, apply), the peer listener and the client REST API.
 */
export class Member implements KvService {
  readonly name: NodeId;
  readonly #config: ServeConfig;
  readonly #log: PinoLogger;
  readonly #onFatal: (err: unknown) => void;
  readonly #storage: LevelStorage;
  readonly #core: RaftCore;
  readonly #transport: PeerTransport;
  readonly #metrics: MemberMetrics;
  readonly #proposals: ProposalWaiters;
  readonly #reads: ReadBatcher;
  readonly #leases: LeaseKeeper;
  readonly #watch: WatchHub;
  #progressTimer: NodeJS.Timeout | null = null;
  readonly #snapshots: SnapshotManager;
  /** Work that must run between two Readies (compaction, installing a snapshot). */
  #exclusive: Array<() => Promise<void>> = [];
  #compacting = false;
  /** Where each member's clients go, learned from the headers of its peer requests. */
  readonly #clientUrls = new Map<NodeId, string>();
  /** Every member's peer URL we know: founding members, then whatever config entries add. */
  readonly #addresses = new Map<NodeId, string>();
  readonly #clusterFile: ClusterFile;
  #lastConfig: ConfigState | null = null;
  /** A leader that removed itself and that we still follow: its link stays until we do not (#syncPeers). */
  #departingLeader: NodeId | null = null;
  #clusterFileWrite: Promise<void> = Promise.resolve();
  readonly clientUrl: string;
  #peerApp: FastifyInstance | null = null;
  #clientApp: FastifyInstance | null = null;
  #clientAcceptors: ExtraAcceptors | null = null;
  #ticker: NodeJS.Timeout | null = null;
  /** Sends the commit index to followers the next append did not reach (see #armCommitNotify). */
  #commitNotifyTimer: NodeJS.Timeout | null = null;
  #loopRunning = false;
  #loopScheduled = false;
  /** When the loop took the Ready (or exclusive task) it is working on (see #sendHeartbeatsPastStall). */
  #busySince = 0;
  #stopping = false;
  #fatal = false;
  #lastSoft: SoftState | null = null;
  /** Term and vote as last written, to know when a leader's Ready changes neither. */
  #persistedTerm = 0;
  #persistedVote: NodeId | null = null;

  private constructor(config: ServeConfig, storage: LevelStorage, core: RaftCore, options: MemberOptions) {
    this.name = config.name;
    this.#config = config;
    this.#log = options.logger.child({ member: config.name });
    this.#onFatal = options.onFatal ?? (() => process.exit(70));
    this.#storage = storage;
    this.#core = core;
    this.#clusterFile = new ClusterFile(config.dataDir);
    this.clientUrl = config.advertiseClientUrl ?? config.listenClientUrl;
    this.#clientUrls.set(this.name, this.clientUrl);
    this.#metrics = new MemberMetrics(() => this.#core.status(), () => this.#storage.leaseCount);
    this.#proposals = new ProposalWaiters(MAX_PENDING_PROPOSALS, config.requestTimeoutMs, (ms) => this.#metrics.proposalSeconds.observe(ms / 1000));
    this.#reads = new ReadBatcher(MAX_PENDING_READS, config.requestTimeoutMs);
    this.#leases = new LeaseKeeper({
      now: () => performance.now(),
      revokeExpired: async (id) => {
        await this.#propose({ op: 'leaseRevoke', requestId: '', id, reason: 'expire' });
      },
    });
    this.#watch = new WatchHub({
      revision: () => this.#storage.revision,
      readHistory: (fromRevision, filter, limit) =>
        this.#storage.readHistory({ fromRevision, key: filter.key, prefix: filter.prefix, limit }),
    });
    this.#snapshots = new SnapshotManager({
      self: this.name,
      selfClientUrl: this.clientUrl,
      dataDir: config.dataDir,
      storage,
      log: this.#log.child({ component: 'snapshots' }),
      metrics: this.#metrics,
      term: () => this.#core.status().term,
      commit: () => this.#core.status().commit,
      snapshotMetaAt: (index) => this.#core.snapshotMetaAt(index),
      peerUrl: (peer) => this.#addresses.get(peer),
      exclusive: (task) => this.#runExclusive(task),
      installed: (meta, from, term) => {
        this.#core.installSnapshot(meta, from, term);
        this.#metrics.snapshotsInstalled.inc();
        this.#schedule();
      },
      reportSnapshot: (peer, ok) => {
        this.#core.reportSnapshot(peer, ok);
        this.#schedule();
      },
    });
    this.#transport = new PeerTransport({
      self: this.name,
      selfClientUrl: this.clientUrl,
      logger: this.#log.child({ component: 'transport' }),
      onUnreachable: (peer) => {
        this.#core.reportUnreachable(peer);
      },
      requestTimeoutMs: Math.max(config.electionTimeoutMs, 1000),
    });
  }

  /** Open (or create) the data dir, start the Raft loop, and listen on the peer and client URLs. */
  static async start(config: ServeConfig, options: MemberOptions): Promise<Member> {
    const log = options.logger.child({ member: config.name });
    const storage = await LevelStorage.open(config.dataDir, { landDelayMs: LAND_DELAY_MS });
    let member: Member | undefined;
    try {
      const { state, peers } = await openState(config, storage, log);
      const ticks = Math.max(2, Math.round(config.electionTimeoutMs / config.heartbeatIntervalMs));
      const core = new RaftCore(
        {
          id: config.name,
          rng: new SeededRng(randomInt(0, 2 ** 31)),
          logger: log.child({ component: 'raft' }),
          electionTicks: ticks,
          heartbeatTicks: 1,
          lazyCommitNotifyEntries: LAZY_COMMIT_NOTIFY_ENTRIES,
        },
        state,
      );
      member = new Member(config, storage, core, options);
      member.#persistedTerm = state.hardState.term;
      member.#persistedVote = state.hardState.vote;
      for (const p of peers) member.#addresses.set(p.name, p.peerUrl);
      member.#syncPeers();
      await member.#snapshots.init();
      await member.#listen();
      log.info(
        { term: state.hardState.term, applied: state.applied, lastIndex: core.status().lastIndex, client: member.clientUrl, peer: config.listenPeerUrl },
        'member started',
      );
      return member;
    } catch (err) {
      // A listener that did open (the peer port, when the client port is taken) would let peers
      // drive the loop against a closed database: stop everything this start began first.
      if (member !== undefined) await member.#abortStart().catch(() => {});
      await storage.close().catch(() => {});
      throw err;
    }
  }

  async #listen(): Promise<void> {
    const peerUrl = new URL(this.#config.listenPeerUrl);
    const clientUrl = new URL(this.#config.listenClientUrl);
    this.#peerApp = buildPeerApp(
      {
        self: this.name,
        receive: (from, url, messages) => this.#receive(from, url, messages),
        rejected: () => this.#metrics.peerRejected.inc(),
        snapshotOffset: (snap) => this.#snapshots.offset(snap),
        receiveSnapshot: (snap, body) => {
          if (snap.clientUrl) this.#clientUrls.set(snap.from, snap.clientUrl);
          return this.#snapshots.receive(snap, body);
        },
      },
      this.#log.child({ component: 'peer-api' }),
    );
    this.#clientApp = buildApi(this, {
      logger: this.#log.child({ component: 'api' }),
      maxKeyBytes: this.#config.maxKeyBytes,
      maxValueBytes: this.#config.maxValueBytes,
      forwardToLeader: this.#config.forwardToLeader,
      requestTimeoutMs: this.#config.requestTimeoutMs,
    });
    await this.#peerApp.listen({ host: peerUrl.hostname, port: Number(peerUrl.port || 80) });
    await this.#clientApp.listen({ host: clientUrl.hostname, port: Number(clientUrl.port || 80) });
    // Not awaited: the port serves from its first descriptor meanwhile.
    this.#clientAcceptors = addAcceptors(this.#clientApp.server, EXTRA_CLIENT_ACCEPTORS, (err) =>
      this.#log.warn({ err: err.message }, 'the client port accepts one connection per event-loop turn (no extra acceptors)'),
    );
    this.#ticker = setInterval(() => this.#tick(), this.#config.heartbeatIntervalMs);
    this.#progressTimer = setInterval(() => this.#watch.progressAll(), WATCH_PROGRESS_INTERVAL_MS);
    this.#schedule();
  }

  // ------------------------------------------------------------------ the loop

  #tick(): void {
    if (this.#stopping) return;
    this.#core.tick();
    this.#reads.prune();
    if (this.#core.role() === 'leader') {
      this.#leases.tick();
      this.#promoteCaughtUpLearners();
    }
    this.#sendHeartbeatsPastStall();
    this.#schedule();
  }

  #receive(from: NodeId, clientUrl: string | undefined, messages: Message[]): void {
    if (this.#stopping) return;
    if (clientUrl) this.#clientUrls.set(from, clientUrl);
    for (const m of messages) this.#core.step(m);
    // An acknowledgement from a follower that was behind the commit index owes it the news.
    if (this.#core.commitNotifyOwed()) this.#armCommitNotify();
    this.#sendHeartbeatsPastStall();
    this.#schedule();
  }

  /**
   * A Ready that has been persisting for a heartbeat interval or more (LevelDB stalls writes while
   * a compaction catches up, and persist then waits for it: seconds, under heavy writes of large
   * values), or an exclusive task as long, would hold back every message the core makes
   * meanwhile. Heartbeats and their replies go at once instead (RaftCore.takeHeartbeats): without
   * them the followers campaign and the leader, which hears no replies, steps down, and a slow
   * disk becomes an election.
   */
  #sendHeartbeatsPastStall(): void {
    if (!this.#loopRunning || performance.now() - this.#busySince < this.#config.heartbeatIntervalMs) return;
    if (!this.#durable(this.#core.hardState())) return;
    const beats = this.#core.takeHeartbeats();
    if (beats.length > 0) this.#send(beats);
  }

  /** Whether `hs`'s term and vote are the ones last written (its commit does not matter). */
  #durable(hs: HardState): boolean {
    return hs.term === this.#persistedTerm && hs.vote === this.#persistedVote;
  }

  /** Run the loop soon; events that arrive meanwhile join the same Ready (group commit). */
  #schedule(): void {
    if (this.#loopRunning || this.#loopScheduled || this.#fatal) return;
    this.#loopScheduled = true;
    setImmediate(() => {
      this.#loopScheduled = false;
      void this.#runLoop();
    });
  }

  async #runLoop(): Promise<void> {
    if (this.#loopRunning || this.#fatal) return;
    this.#loopRunning = true;
    try {
      for (;;) {
        while (this.#exclusive.length > 0) {
          this.#busySince = performance.now();
          await this.#exclusive.shift()!();
        }
        this.#reads.flush((ctx) => this.#core.readIndex(ctx).ok);
        if (!this.#core.hasReady()) break;
        this.#busySince = performance.now();
        await this.#handleReady(this.#core.ready());
      }
    } catch (err) {
      this.#die(err);
    } finally {
      this.#loopRunning = false;
    }
  }

  /** Persist, then send, then apply, then serve reads: the order the Ready contract demands. */
  async #handleReady(ready: Ready): Promise<void> {
    // A leader whose term and vote did not change sends its appends while it writes its own log
    // (§10.2.1 of the dissertation): it counts itself toward a quorum only once its write is
    // durable (the core's advance), so nothing is acknowledged early. Everyone else must persist
    // first: their votes and acknowledgements depend on it. A leader's Ready with no new entries (a
    // commit to apply, heartbeats) sends after its write and before its clients are answered;
    // lazy commit notification (#armCommitNotify) leaves such Readies few messages to send.
    const hs = ready.hardState;
    const termOrVoteChanged = hs !== null && !this.#durable(hs);
    const early = !this.#stopping && !termOrVoteChanged && ready.entries.length > 0 && this.#core.role() === 'leader';
    if (early) this.#send(ready.messages);
    const t0 = performance.now();
    const results = await this.#storage.persist(ready);
    if (ready.hardState) {
      this.#persistedTerm = ready.hardState.term;
      this.#persistedVote = ready.hardState.vote;
    }
    if (ready.mustSync) this.#metrics.persistSeconds.observe((performance.now() - t0) / 1000);
    if (ready.entries.length > 0) this.#metrics.readyBatchEntries.observe(ready.entries.length);
    assert(results.length === ready.committed.length, 'one apply result per committed entry');
    if (!early && !this.#stopping) this.#send(ready.messages);
    this.#afterApply(results);
    this.#proposals.settle(ready.committed, results);
    if (ready.softState) this.#onSoftState(ready.softState);
    this.#core.advance(ready);
    if (this.#core.config() !== this.#lastConfig || (this.#departingLeader !== null && this.#core.status().leader !== this.#departingLeader)) this.#syncPeers();
    const applied = this.#storage.appliedIndex;
    this.#reads.onReadStates(ready.readStates, applied);
    this.#reads.onApplied(applied);
    this.#maybeCompact(applied);
    if (this.#core.commitNotifyOwed()) this.#armCommitNotify();
  }

  /**
   * A leader does not send a message of its own just to tell a follower that a few entries it
   * holds were committed (RaftOptions.lazyCommitNotifyEntries): the next append carries the commit
   * index, and at low concurrency the client's next request brings one at once. When none has
   * come after COMMIT_NOTIFY_DELAY_MS, a heartbeat tells the followers still owed it. This saves a
   * heartbeat and its reply per write at one write in flight, and takes their sends off the path
   * between commit and the client's answer. Followers apply such commits up to that much later;
   * their linearizable reads do not wait for it (the read's heartbeat carries the commit index).
   */
  #armCommitNotify(): void {
    if (this.#commitNotifyTimer !== null || this.#stopping) return;
    this.#commitNotifyTimer = setTimeout(() => {
      this.#commitNotifyTimer = null;
      if (this.#stopping) return;
      this.#core.notifyCommit();
      this.#schedule();
    }, COMMIT_NOTIFY_DELAY_MS);
  }

  /** Raft messages go out in batches; a snapshot request becomes an image upload. */
  #send(messages: readonly Message[]): void {
    let plain = messages;
    if (messages.some((m) => m.type === 'snapshot')) {
      plain = messages.filter((m) => m.type !== 'snapshot');
      for (const m of messages) if (m.type === 'snapshot') this.#snapshots.send(m.to, m.snapshot.index);
    }
    this.#transport.send(plain);
  }

  /**
   * Past --snapshot-entries applied entries in the log, or --snapshot-bytes of entries, fold all
   * but the catch-up tail away (at most --snapshot-catchup-entries, and at most half of
   * --snapshot-bytes).
   */
  #maybeCompact(applied: number): void {
    if (this.#compacting) return;
    const first = this.#core.firstIndex();
    const byEntries = applied - first + 1 >= this.#config.snapshotEntries;
    const byBytes = this.#core.logBytes() >= this.#config.snapshotBytes;
    if (!byEntries && !byBytes) return;
    let index = applied - this.#config.snapshotCatchupEntries;
    if (byBytes) index = Math.max(index, this.#core.indexKeepingTailBytes(applied, Math.floor(this.#config.snapshotBytes / 2)));
    // Not past a snapshot still being sent (see SnapshotManager.compactionHold), unless the log
    // has grown to SNAPSHOT_HOLD_LIMIT times --snapshot-bytes meanwhile: then the follower takes
    // another snapshot rather than this member running out of memory.
    const hold = this.#snapshots.compactionHold(
      (peer) => this.#core.matchOf(peer),
      (match) => match >= applied - this.#config.snapshotCatchupEntries,
    );
    const held = this.#core.logBytes() + (this.#core.lastIndex() - first + 1) * ENTRY_OVERHEAD_BYTES;
    const runaway = held >= SNAPSHOT_HOLD_LIMIT * this.#config.snapshotBytes;
    if (hold !== null && !runaway) index = Math.min(index, hold);
    if (index < first) return;
    this.#compacting = true;
    this.#snapshots
      .compact(index, (i) => this.#core.compact(i))
      .catch((err: unknown) => this.#die(err))
      .finally(() => (this.#compacting = false));
  }

  /** Queue `task` to run in the loop between two Readies, and resolve with its result. */
  #runExclusive<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#exclusive.push(() => task().then(resolve, reject));
      this.#schedule();
    });
  }

  /** A consistent backup image of this member's state (GET /v1/snapshot). */
  backup(): ReturnType<SnapshotManager['backup']> {
    if (this.#stopping) return Promise.reject(new ShuttingDownError());
    return this.#snapshots.backup();
  }

  /** Applied changes go to watchers; lease grants and revokes to the leader's lease clock. */
  #afterApply(results: readonly ApplyResult[]): void {
    let events: HubEvent[] | null = null;
    for (const r of results) {
      if (r.kind === 'leaseGrant') this.#leases.granted(r.id, r.ttlSeconds);
      else if (r.kind === 'leaseRevoke') this.#leases.revoked(r.id);
      if ('events' in r && r.events.length > 0) (events ??= []).push(...r.events);
    }
    this.#watch.publish(events ?? [], this.#storage.revision);
  }

  #onSoftState(s: SoftState): void {
    const prev = this.#lastSoft;
    this.#lastSoft = s;
    if (s.role === 'leader' && prev?.role !== 'leader') {
      this.#leases.promote();
      this.#storage.leases().then(
        (leases) => this.#leases.load(leases),
        (err: unknown) => this.#log.error({ err }, 'could not load leases'),
      );
    } else if (s.role !== 'leader' && prev?.role === 'leader') {
      this.#leases.demote();
    }
    if (prev && prev.role === s.role && prev.leader === s.leader) return;
    const fields = { term: s.term, role: s.role, leader: s.leader };
    if (s.role === 'leader') this.#log.info(fields, 'became leader');
    else if (prev?.role === 'leader') this.#log.info(fields, 'lost leadership');
    else if (s.leader !== prev?.leader) this.#log.info(fields, s.leader ? 'following leader' : 'no leader');
  }

  #die(err: unknown): void {
    if (this.#fatal) return;
    this.#fatal = true;
    this.#log.fatal({ err }, 'member cannot continue; stopping (restart recovers from disk)');
    this.#onFatal(err);
  }

  // ------------------------------------------------------------------ KvService

  async put(key: string, value: Uint8Array, options: PutOptions): Promise<PutResult> {
    const result = await this.#propose({ op: 'put', requestId: '', key, value, ...options });
    if (result.kind === 'error') throw result.error;
    assert(result.kind === 'put', `put applied as ${result.kind}`);
    return result;
  }

  async delete(key: string, options: WriteOptions): Promise<DeleteResult> {
    const result = await this.#propose({ op: 'delete', requestId: '', key, ...options });
    if (result.kind === 'error') throw result.error;
    assert(result.kind === 'delete', `delete applied as ${result.kind}`);
    return result;
  }

  async txn(txn: TxnInput): Promise<TxnOutcome> {
    const result = await this.#propose({ op: 'txn', requestId: '', compare: txn.compare, success: txn.success, failure: txn.failure });
    if (result.kind === 'error') throw result.error;
    assert(result.kind === 'txn', `txn applied as ${result.kind}`);
    return { succeeded: result.succeeded, revision: result.revision, results: result.results };
  }

  async grantLease(ttlSeconds: number): Promise<{ id: number; ttl: number }> {
    // Like etcd, a TTL shorter than an election and a half could expire during a failover.
    const minTtl = Math.ceil((1.5 * this.#config.electionTimeoutMs) / 1000);
    const ttl = Math.max(ttlSeconds, minTtl);
    const result = await this.#propose({ op: 'leaseGrant', requestId: '', id: randomInt(1, LEASE_ID_LIMIT), ttlSeconds: ttl });
    if (result.kind === 'error') throw result.error;
    assert(result.kind === 'leaseGrant', `lease grant applied as ${result.kind}`);
    return { id: result.id, ttl: result.ttlSeconds };
  }

  async keepAliveLease(id: number): Promise<{ id: number; ttl: number }> {
    if (this.#stopping) throw new ShuttingDownError();
    const s = this.#core.status();
    if (s.role !== 'leader') throw this.#refusal('NOT_LEADER', s.leader);
    const lease = await this.#storage.lease(id);
    if (lease === null || !this.#leases.keepAlive(id, lease.ttlSeconds)) throw new LeaseNotFoundError(id);
    return { id, ttl: lease.ttlSeconds };
  }

  async revokeLease(id: number): Promise<{ deletedKeys: number; revision: number }> {
    const result = await this.#propose({ op: 'leaseRevoke', requestId: '', id, reason: 'revoke' });
    if (result.kind === 'error') throw result.error;
    assert(result.kind === 'leaseRevoke', `lease revoke applied as ${result.kind}`);
    return { deletedKeys: result.deletedKeys, revision: result.revision };
  }

  openWatch(filter: WatchFilter, fromRevision: number | null, sink: WatchSink): Promise<() => void> {
    if (this.#stopping) return Promise.reject(new ShuttingDownError());
    return this.#watch.open(filter, fromRevision, sink);
  }

  /**
   * A stale read answers at once, synchronously, from this member's store; a linearizable one once
   * its read index is applied. The hot path of the API: no async wrapper.
   */
  get(key: string, consistency: 'linearizable' | 'stale'): KvRecord | null | Promise<KvRecord | null> {
    if (this.#stopping) return Promise.reject(new ShuttingDownError());
    if (consistency === 'stale') return this.#storage.getSync(key);
    return this.#confirmRead().then(() => this.#storage.getSync(key));
  }

  async list(options: ListOptions, consistency: 'linearizable' | 'stale'): Promise<ListPage> {
    await this.#readBarrier(consistency);
    return this.#storage.list(options);
  }

  /** A linearizable read waits until this member has applied a confirmed read index (§6.4). */
  async #readBarrier(consistency: 'linearizable' | 'stale'): Promise<void> {
    if (this.#stopping) throw new ShuttingDownError();
    if (consistency === 'stale') return;
    await this.#confirmRead();
  }

  /** Joins the next ReadIndex round; resolves once its index is applied here. */
  #confirmRead(): Promise<void> {
    const wait = this.#reads.enqueue();
    this.#schedule();
    return wait;
  }

  async #propose(command: Command): Promise<ApplyResult> {
    if (this.#stopping) throw new ShuttingDownError();
    this.#proposals.checkRoom();
    const r = this.#core.propose(encodeCommand(command));
    if (!r.ok) throw this.#refusal(r.code, r.leader);
    const done = this.#proposals.wait(r.index, r.term);
    this.#schedule();
    return done;
  }

  #refusal(code: string, leader: NodeId | null): Error {
    if (code === 'NOT_LEADER') {
      const url = leader === null ? undefined : this.#clientUrls.get(leader);
      if (leader !== null && url !== undefined) return new NotLeaderError(leader, url);
      return new NoLeaderError();
    }
    if (code === 'TRANSFERRING') return new NoLeaderError('Leadership is being transferred; retry shortly');
    return new OverloadedError('uncommitted entries');
  }

  status(): MemberStatusView {
    const s = this.#core.status();
    return {
      name: this.name,
      // The contract knows four roles: a member running a pre-vote is campaigning, a candidate.
      role: s.role === 'preCandidate' ? 'candidate' : s.role,
      term: s.term,
      leader: s.leader,
      leaderClientUrl: s.leader === null ? null : (this.#clientUrls.get(s.leader) ?? null),
      commitIndex: s.commit,
      appliedIndex: this.#storage.appliedIndex,
    };
  }

  health(): { healthy: boolean; reason: string } {
    const s = this.#core.status();
    if (this.#fatal) return { healthy: false, reason: 'the member hit a fatal error' };
    if (this.#stopping) return { healthy: false, reason: 'shutting down' };
    if (s.leader === null) return { healthy: false, reason: 'no leader known' };
    return { healthy: true, reason: 'ok' };
  }

  leaderClientUrl(): string | null {
    return this.status().leaderClientUrl;
  }

  isLeader(): boolean {
    return this.#core.role() === 'leader';
  }

  async metrics(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.#metrics.registry.contentType, body: await this.#metrics.registry.metrics() };
  }

  observeHttp(method: string, route: string, status: number, seconds: number): void {
    this.#metrics.httpSeconds.observeRequest(method, route, status, seconds);
  }

  /** The core's view, for tests and the status page. */
  raftStatus(): ReturnType<RaftCore['status']> {
    return this.#core.status();
  }

  /** Hand leadership to another member (used by a clean shutdown of the leader and by tests). */
  transferLeadership(to: NodeId): boolean {
    const ok = this.#core.transferLeadership(to);
    this.#schedule();
    return ok;
  }

  // ------------------------------------------------------------------ membership

  /**
   * The configuration changed (a config entry was appended, or a snapshot restored): talk to
   * exactly its members, and remember every address in cluster.json for the next start.
   */
  #syncPeers(): void {
    const config = this.#core.config();
    this.#lastConfig = config;
    for (const [name, url] of Object.entries(config.peerUrls ?? {})) this.#addresses.set(name, url);
    const members = new Set([...config.voters, ...config.learners]);
    // A leader that removes itself commits that only with our acknowledgements (and then steps
    // down): dropping its link as soon as we append the change would leave it unable to.
    const leader = this.#core.status().leader;
    this.#departingLeader = leader !== null && leader !== this.name && !members.has(leader) ? leader : null;
    for (const name of members) {
      const url = this.#addresses.get(name);
      if (name !== this.name && url !== undefined) this.#transport.setPeer(name, url);
    }
    for (const name of [...this.#addresses.keys()]) {
      if (members.has(name) || name === this.#departingLeader) continue;
      this.#transport.removePeer(name);
      this.#addresses.delete(name);
    }
    const snapshot = [...this.#addresses].filter(([name]) => name !== this.#departingLeader).map(([name, peerUrl]) => ({ name, peerUrl }));
    this.#clusterFileWrite = this.#clusterFileWrite
      .then(() => this.#clusterFile.write(snapshot))
      .catch((err: unknown) => this.#log.error({ err }, 'could not write cluster.json'));
  }

  members(): { members: Array<{ name: string; peerUrl: string | null; clientUrl: string | null; voter: boolean }> } {
    const c = this.#core.config();
    const view = (name: string, voter: boolean) => ({
      name,
      peerUrl: name === this.name ? this.#config.listenPeerUrl : (this.#addresses.get(name) ?? null),
      clientUrl: this.#clientUrls.get(name) ?? null,
      voter,
    });
    return { members: [...c.voters.map((n) => view(n, true)), ...c.learners.map((n) => view(n, false))] };
  }

  /** Add a learner (promoted to voter by the leader once it has caught up). */
  async addMember(name: string, peerUrl: string): Promise<ReturnType<Member['members']>> {
    await this.#proposeConfig({ type: 'addLearner', id: name, peerUrl });
    return this.members();
  }

  async removeMember(name: string): Promise<void> {
    await this.#proposeConfig({ type: 'remove', id: name });
  }

  async #proposeConfig(change: ConfigChange): Promise<void> {
    if (this.#stopping) throw new ShuttingDownError();
    const r = this.#core.proposeConfigChange(change);
    if (!r.ok) {
      if (r.code === 'INVALID_CONFIG_CHANGE') throw new InvalidArgumentError(r.message ?? 'invalid membership change');
      if (r.code === 'CONFIG_CHANGE_PENDING') throw new OverloadedError('membership changes (one at a time; retry when the last one has committed)');
      throw this.#refusal(r.code, r.leader);
    }
    const done = this.#proposals.wait(r.index, r.term);
    this.#schedule();
    await done;
  }

  /** The leader promotes a learner once its log has caught up with the commit index. */
  #promoteCaughtUpLearners(): void {
    const s = this.#core.status();
    const learner = s.progress.find((p) => p.learner && p.match >= s.commit);
    if (!learner) return;
    const r = this.#core.proposeConfigChange({ type: 'promote', id: learner.id });
    if (r.ok) this.#log.info({ peer: learner.id, index: r.index }, 'promoting caught-up learner to voter');
  }

  /** POST /v1/cluster/leader: hand leadership over and wait until it has moved. */
  async transferLeader(name: string): Promise<void> {
    const s = this.#core.status();
    if (s.role !== 'leader') throw this.#refusal('NOT_LEADER', s.leader);
    if (name === this.name) return;
    if (!this.transferLeadership(name)) throw new InvalidArgumentError(`${name} is not a voting member`);
    const deadline = performance.now() + 2 * this.#config.electionTimeoutMs;
    while (performance.now() < deadline) {
      if (this.#core.status().leader === name) return;
      await sleep(10);
    }
    throw new ReadTimeoutError(2 * this.#config.electionTimeoutMs, `Leadership did not move to ${name}`);
  }

  // ------------------------------------------------------------------ shutdown

  /**
   * Stop taking requests; a leader first hands leadership to its most caught-up peer (as etcd
   * does) so the cluster does not wait out an election timeout; let writes in flight settle for a
   * moment; then close the listeners and the database after the Ready in flight is done.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    await this.#handOffLeadership();
    this.#stopping = true;
    if (this.#ticker) clearInterval(this.#ticker);
    if (this.#progressTimer) clearInterval(this.#progressTimer);
    if (this.#commitNotifyTimer) clearTimeout(this.#commitNotifyTimer);
    this.#watch.closeAll('The member is stopping; resume on another member');
    for (let i = 0; i < 100 && this.#proposals.size > 0; i++) await sleep(10);
    this.#proposals.failAll(() => new OutcomeUnknownError('The member shut down before the write was confirmed'));
    this.#reads.failAll(() => new ShuttingDownError());
    await this.#closeListenersAndLoop();
    await this.#storage.close();
    this.#log.info({}, 'member stopped');
  }

  /** Undoes a start that failed part-way: no loop, timers, listeners or peer connections left. */
  async #abortStart(): Promise<void> {
    this.#stopping = true;
    if (this.#ticker) clearInterval(this.#ticker);
    if (this.#progressTimer) clearInterval(this.#progressTimer);
    await this.#closeListenersAndLoop();
  }

  /** Closes the client and peer listeners, lets the Ready in flight finish, closes the peer links. */
  async #closeListenersAndLoop(): Promise<void> {
    await this.#clientAcceptors?.close();
    await this.#clientApp?.close();
    await this.#peerApp?.close();
    for (let i = 0; i < 400 && (this.#loopRunning || this.#loopScheduled); i++) await sleep(5);
    await this.#transport.close();
  }

  async #handOffLeadership(): Promise<void> {
    const s = this.#core.status();
    if (s.role !== 'leader') return;
    const best = s.progress.filter((p) => !p.learner).sort((a, b) => b.match - a.match)[0];
    if (!best || !this.transferLeadership(best.id)) return;
    const deadline = Date.now() + this.#config.electionTimeoutMs;
    while (Date.now() < deadline && this.#core.status().role === 'leader') await sleep(10);
    this.#log.info({ to: best.id, done: this.#core.status().role !== 'leader' }, 'handed off leadership before stopping');
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
