import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RaftStatus } from '../raft/raft-core.js';

const LATENCY_BUCKETS_S = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const ROLES = ['follower', 'preCandidate', 'candidate', 'leader', 'learner'] as const;

/** One registry per member (several members may share a process in tests and embedding). */
export class MemberMetrics {
  readonly registry = new Registry();
  readonly proposalSeconds: Histogram;
  readonly persistSeconds: Histogram;
  readonly httpSeconds: Histogram<'method' | 'route' | 'status'>;
  readonly peerRejected: Counter;
  readonly readyBatchEntries: Histogram;
  readonly snapshotUploadResumes: Counter;
  readonly snapshotResumedBytes: Counter;
  readonly snapshotsInstalled: Counter;

  constructor(status: () => RaftStatus, leaseCount: () => number = () => 0) {
    const r = this.registry;
    new Gauge({ name: 'flotilla_raft_term', help: 'Current Raft term', registers: [r], collect() { this.set(status().term); } });
    new Gauge({
      name: 'flotilla_raft_role', help: '1 for the role this member holds now', labelNames: ['role'], registers: [r],
      collect() {
        const role = status().role;
        for (const x of ROLES) this.set({ role: x }, x === role ? 1 : 0);
      },
    });
    new Gauge({ name: 'flotilla_raft_commit_index', help: 'Highest log index known committed', registers: [r], collect() { this.set(status().commit); } });
    new Gauge({ name: 'flotilla_raft_applied_index', help: 'Highest log index applied to the store', registers: [r], collect() { this.set(status().applied); } });
    new Gauge({ name: 'flotilla_raft_last_index', help: 'Last log index held', registers: [r], collect() { this.set(status().lastIndex); } });
    new Gauge({ name: 'flotilla_raft_has_leader', help: '1 when a leader is known', registers: [r], collect() { this.set(status().leader === null ? 0 : 1); } });
    new Gauge({ name: 'flotilla_leases', help: 'Leases that exist in the replicated state', registers: [r], collect() { this.set(leaseCount()); } });
    this.proposalSeconds = new Histogram({
      name: 'flotilla_proposal_seconds', help: 'From proposing a write to applying it', buckets: LATENCY_BUCKETS_S, registers: [r],
    });
    this.persistSeconds = new Histogram({
      name: 'flotilla_fsync_seconds', help: 'Duration of one durable persist: the write-ahead log write (entries, term, vote) with the LevelDB batch applying committed entries', buckets: LATENCY_BUCKETS_S, registers: [r],
    });
    this.readyBatchEntries = new Histogram({
      name: 'flotilla_ready_entries', help: 'Log entries persisted per Ready (group commit size)', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096], registers: [r],
    });
    this.httpSeconds = new Histogram({
      name: 'flotilla_http_request_seconds', help: 'Client API request latency', labelNames: ['method', 'route', 'status'], buckets: LATENCY_BUCKETS_S, registers: [r],
    });
    this.peerRejected = new Counter({ name: 'flotilla_peer_messages_rejected_total', help: 'Peer messages dropped as malformed or misaddressed', registers: [r] });
    this.snapshotUploadResumes = new Counter({
      name: 'flotilla_snapshot_upload_resumes_total', help: 'Snapshot uploads to a follower that continued from a byte the follower already held', registers: [r],
    });
    this.snapshotResumedBytes = new Counter({
      name: 'flotilla_snapshot_resumed_bytes_total', help: 'Snapshot image bytes not sent again because the follower already held them', registers: [r],
    });
    this.snapshotsInstalled = new Counter({
      name: 'flotilla_snapshots_installed_total', help: 'Snapshots received from a leader and installed (this member had fallen behind its compacted log)', registers: [r],
    });
    new Gauge({ name: 'flotilla_raft_first_index', help: 'First log index held (entries before it are compacted away)', registers: [r], collect() { this.set(status().firstIndex); } });
  }
}
