import { randomInt } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { KvService, MemberStatusView, PutOptions, WriteOptions } from '../api/kv-service.js';
import { buildApi } from '../api/build-api.js';
import type { ServeConfig } from '../config/schema.js';
import { encodeCommand } from '../kv/command.js';
import type { Command } from '../kv/command.js';
import type { ApplyResult, DeleteResult, PutResult } from '../kv/kv-state.js';
import type { KvRecord } from '../kv/kv-record.js';
import { RaftCore } from '../raft/raft-core.js';
import type { Ready } from '../raft/ready.js';
import type { Message, NodeId, SoftState } from '../raft/types.js';
import { LevelStorage } from '../storage/level-storage.js';
import { PeerTransport } from '../transport/peer-client.js';
import { buildPeerApp } from '../transport/peer-routes.js';
import { assert } from '../util/assert.js';
import { SeededRng } from '../util/rng.js';
import type { PinoLogger } from '../util/log.js';
import { ClusterFile } from './cluster-file.js';
import { NoLeaderError, NotLeaderError, OutcomeUnknownError, OverloadedError, ShuttingDownError } from './errors.js';
import { MemberMetrics } from './metrics.js';
import { ProposalWaiters } from './proposals.js';
import { ReadBatcher } from './reads.js';

export interface MemberOptions {
  readonly logger: PinoLogger;
  /** A broken invariant or a failed disk write: the member cannot go on. Default: exit(70). */
  readonly onFatal?: (err: unknown) => void;
}

/** Writes waiting for commit, and reads waiting for a read index, are bounded. */
const MAX_PENDING_PROPOSALS = 50_000;
const MAX_PENDING_READS = 50_000;

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
  /** Where each member's clients go, learned from the headers of its peer requests. */
  readonly #clientUrls = new Map<NodeId, string>();
  readonly clientUrl: string;
  #peerApp: FastifyInstance | null = null;
  #clientApp: FastifyInstance | null = null;
  #ticker: NodeJS.Timeout | null = null;
  #loopRunning = false;
  #loopScheduled = false;
  #stopping = false;
  #fatal = false;
  #lastSoft: SoftState | null = null;

  private constructor(config: ServeConfig, storage: LevelStorage, core: RaftCore, options: MemberOptions) {
    this.name = config.name;
    this.#config = config;
    this.#log = options.logger.child({ member: config.name });
    this.#onFatal = options.onFatal ?? (() => process.exit(70));
    this.#storage = storage;
    this.#core = core;
    this.clientUrl = config.advertiseClientUrl ?? config.listenClientUrl;
    this.#clientUrls.set(this.name, this.clientUrl);
    this.#metrics = new MemberMetrics(() => this.#core.status());
    this.#proposals = new ProposalWaiters(MAX_PENDING_PROPOSALS, config.requestTimeoutMs, (ms) => this.#metrics.proposalSeconds.observe(ms / 1000));
    this.#reads = new ReadBatcher(MAX_PENDING_READS, config.requestTimeoutMs);
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
    const storage = await LevelStorage.open(config.dataDir);
    try {
      const clusterFile = new ClusterFile(config.dataDir);
      let state = await storage.load();
      let peers = await clusterFile.read();
      if (state === null) {
        if (!config.initialCluster) throw new Error('--initial-cluster is required to start a new member');
        if (!config.initialCluster.some((m) => m.name === config.name)) {
          throw new Error(`--initial-cluster does not list this member (${config.name})`);
        }
        peers = config.initialCluster;
        await clusterFile.write(peers); // before the Raft state, so a crash between leaves a fresh dir
        state = await storage.bootstrap({ voters: peers.map((m) => m.name), learners: [] });
        log.info({ members: peers.map((m) => m.name) }, 'bootstrapped a new member');
      } else if (peers === null) {
        if (!config.initialCluster) throw new Error(`${config.dataDir} holds state but no member list; pass --initial-cluster`);
        peers = config.initialCluster;
        await clusterFile.write(peers);
      }
      const ticks = Math.max(2, Math.round(config.electionTimeoutMs / config.heartbeatIntervalMs));
      const core = new RaftCore(
        {
          id: config.name,
          rng: new SeededRng(randomInt(0, 2 ** 31)),
          logger: log.child({ component: 'raft' }),
          electionTicks: ticks,
          heartbeatTicks: 1,
        },
        state,
      );
      const member = new Member(config, storage, core, options);
      for (const p of peers) if (p.name !== config.name) member.#transport.setPeer(p.name, p.peerUrl);
      await member.#listen();
      log.info(
        { term: state.hardState.term, applied: state.applied, lastIndex: core.status().lastIndex, client: member.clientUrl, peer: config.listenPeerUrl },
        'member started',
      );
      return member;
    } catch (err) {
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
    this.#ticker = setInterval(() => this.#tick(), this.#config.heartbeatIntervalMs);
    this.#schedule();
  }

  // ------------------------------------------------------------------ the loop

  #tick(): void {
    if (this.#stopping) return;
    this.#core.tick();
    this.#reads.prune();
    this.#schedule();
  }

  #receive(from: NodeId, clientUrl: string | undefined, messages: Message[]): void {
    if (this.#stopping) return;
    if (clientUrl) this.#clientUrls.set(from, clientUrl);
    for (const m of messages) this.#core.step(m);
    this.#schedule();
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
        this.#reads.flush((ctx) => this.#core.readIndex(ctx).ok);
        if (!this.#core.hasReady()) break;
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
    const t0 = performance.now();
    const results = await this.#storage.persist(ready);
    if (ready.mustSync) this.#metrics.persistSeconds.observe((performance.now() - t0) / 1000);
    if (ready.entries.length > 0) this.#metrics.readyBatchEntries.observe(ready.entries.length);
    assert(results.length === ready.committed.length, 'one apply result per committed entry');
    if (!this.#stopping) this.#transport.send(ready.messages);
    this.#proposals.settle(ready.committed, results);
    if (ready.softState) this.#onSoftState(ready.softState);
    this.#core.advance(ready);
    const applied = this.#storage.appliedIndex;
    this.#reads.onReadStates(ready.readStates, applied);
    this.#reads.onApplied(applied);
  }

  #onSoftState(s: SoftState): void {
    const prev = this.#lastSoft;
    this.#lastSoft = s;
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

  async get(key: string, consistency: 'linearizable' | 'stale'): Promise<KvRecord | null> {
    if (this.#stopping) throw new ShuttingDownError();
    if (consistency === 'linearizable') {
      const wait = this.#reads.enqueue();
      this.#schedule();
      await wait;
    }
    return this.#storage.get(key);
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
    return this.#core.status().role === 'leader';
  }

  async metrics(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.#metrics.registry.contentType, body: await this.#metrics.registry.metrics() };
  }

  observeHttp(method: string, route: string, status: number, seconds: number): void {
    this.#metrics.httpSeconds.observe({ method, route, status: String(status) }, seconds);
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
    for (let i = 0; i < 100 && this.#proposals.size > 0; i++) await sleep(10);
    this.#proposals.failAll(() => new OutcomeUnknownError('The member shut down before the write was confirmed'));
    this.#reads.failAll(() => new ShuttingDownError());
    await this.#clientApp?.close();
    await this.#peerApp?.close();
    for (let i = 0; i < 400 && (this.#loopRunning || this.#loopScheduled); i++) await sleep(5);
    await this.#transport.close();
    await this.#storage.close();
    this.#log.info({}, 'member stopped');
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
