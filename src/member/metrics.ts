import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RaftStatus } from '../raft/raft-core.js';

const LATENCY_BUCKETS_S = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const ROLES = ['follower', 'preCandidate', 'candidate', 'leader', 'learner'] as const;

/** One registry per member (several members may share a process in tests and embedding). */
export class MemberMetrics {
  readonly registry = new Registry();
  readonly proposalSeconds: Histogram;
  readonly persistSeconds: Histogram;
  readonly httpSeconds: RequestLatencyHistogram;
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
    this.httpSeconds = new RequestLatencyHistogram({
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

type HttpLabel = 'method' | 'route' | 'status';
type HttpLabels = Record<HttpLabel, string>;

interface RenderedValue {
  readonly labels: { le?: number | string };
  readonly sharedLabels: HttpLabels;
  readonly value: number;
  readonly metricName: string;
  readonly exemplar?: null;
}

interface RenderedHistogram {
  readonly name: string;
  readonly help: string;
  readonly type: 'histogram';
  readonly values: RenderedValue[];
  readonly aggregator: 'sum';
}

/** One label set's observations: counts per bucket (not cumulative; the last is above every bound). */
interface LatencySeries {
  readonly labels: HttpLabels;
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

/**
 * The client API's latency histogram, observed once per request. prom-client's labelled observe
 * builds and hashes a label string per call (about half a microsecond, a few percent of a stale
 * read); here each label set's series is found by three map lookups and updated in place. A scrape
 * renders the series exactly as prom-client's Histogram does (the same values, in first-observed
 * order), so /metrics is unchanged. Observe only through `observeRequest`.
 */
export class RequestLatencyHistogram extends Histogram<HttpLabel> {
  readonly #bounds: readonly number[];
  readonly #name: string;
  readonly #help: string;
  /** route → method → status → series. */
  #lookup = new Map<string, Map<string, Map<number, LatencySeries>>>();
  /** Every series, in the order each was first observed (the order a scrape lists them). */
  #series: LatencySeries[] = [];

  constructor(config: { name: string; help: string; labelNames: readonly HttpLabel[]; buckets: readonly number[]; registers: Registry[] }) {
    super({ ...config, labelNames: [...config.labelNames], buckets: [...config.buckets] });
    this.#name = config.name;
    this.#help = config.help;
    this.#bounds = [...config.buckets].sort((a, b) => a - b);
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    if (!Number.isFinite(seconds)) return;
    const s = this.#seriesFor(method, route, status);
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]) i++;
    s.counts[i]++;
    s.sum += seconds;
    s.count++;
  }

  #seriesFor(method: string, route: string, status: number): LatencySeries {
    let byMethod = this.#lookup.get(route);
    if (byMethod === undefined) this.#lookup.set(route, (byMethod = new Map()));
    let byStatus = byMethod.get(method);
    if (byStatus === undefined) byMethod.set(method, (byStatus = new Map()));
    let s = byStatus.get(status);
    if (s === undefined) {
      s = { labels: { method, route, status: String(status) }, counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 };
      byStatus.set(status, s);
      this.#series.push(s);
    }
    return s;
  }

  /**
   * What prom-client's registry renders for a scrape (and what its `get()` splays into JSON):
   * the layout of its own Histogram, value for value. Declared here because prom-client's .d.ts
   * leaves this method out (and types `type` as an enum where the code uses the string).
   */
  async getForPromString(): Promise<RenderedHistogram> {
    const bucket = `${this.#name}_bucket`;
    const values: RenderedValue[] = [];
    for (const s of this.#series) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.counts[i];
        values.push({ labels: { le: this.#bounds[i] }, sharedLabels: s.labels, value: acc, metricName: bucket, exemplar: null });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket, exemplar: null });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.#name}_sum` });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.#name}_count` });
    }
    return { name: this.#name, help: this.#help, type: 'histogram', values, aggregator: 'sum' };
  }

  override reset(): void {
    super.reset();
    // prom-client's constructor calls reset() before this class's fields exist.
    if (!(#series in this)) return;
    this.#lookup = new Map();
    this.#series = [];
  }
}
