/**
 * Micro-benchmark of the Raft core alone: proposals per second through a 3-member cluster in one
 * process (memory stores, instant delivery, no fsync cost), with batching: each loop turn proposes
 * a batch on the leader, then runs Ready/advance rounds until the batch is applied everywhere.
 * Prints one JSON line: { "proposalsPerSec", "entries", "ms", ... }.
 *
 *   npx tsc -p test/sim/tsconfig.build.json && node test-results/sim-build/test/bench/raft-bench.js
 *
 * Env: FLOTILLA_BENCH_ENTRIES (total proposals, default 200,000), FLOTILLA_BENCH_BATCH (per turn,
 * default 1,000).
 */
import { RaftCore } from '../../src/raft/raft-core.js';
import type { Message, NodeId } from '../../src/raft/types.js';
import { MemoryLogStore } from '../../src/storage/memory-log-store.js';
import { assert } from '../../src/util/assert.js';
import { SeededRng } from '../../src/util/rng.js';

interface Member {
  readonly core: RaftCore;
  readonly store: MemoryLogStore;
  applied: number;
}

const IDS: readonly NodeId[] = ['n1', 'n2', 'n3'];
/** Ready rounds one batch may take before the benchmark declares the cluster stuck. */
const ROUNDS_PER_BATCH_MAX = 1000;
/** Compact the log every so often, as a runtime would, so memory stays flat over long runs. */
const COMPACT_EVERY = 50_000;

function createCluster(): Map<NodeId, Member> {
  const members = new Map<NodeId, Member>();
  IDS.forEach((id, i) => {
    const store = MemoryLogStore.fresh({ voters: IDS, learners: [] });
    const core = new RaftCore({ id, rng: new SeededRng(i + 1), electionTicks: 10, heartbeatTicks: 1 }, store.load());
    members.set(id, { core, store, applied: 0 });
  });
  return members;
}

/** One round: every member carries out its Ready; returns the messages they sent. */
function readyRound(members: Map<NodeId, Member>): Message[] {
  const out: Message[] = [];
  for (const m of members.values()) {
    if (!m.core.hasReady()) continue;
    const ready = m.core.ready();
    m.store.save(ready);
    if (ready.mustSync) m.store.sync();
    for (const msg of ready.messages) out.push(msg);
    const last = ready.committed[ready.committed.length - 1];
    if (last !== undefined) {
      m.applied = last.index;
      m.store.saveApplied(last.index);
    }
    m.core.advance(ready);
  }
  return out;
}

/** Deliver and process until nothing moves, or until every member applied `target`. */
function settle(members: Map<NodeId, Member>, target: number): number {
  let rounds = 0;
  for (; rounds < ROUNDS_PER_BATCH_MAX; rounds++) {
    const msgs = readyRound(members);
    for (const msg of msgs) members.get(msg.to)?.core.step(msg);
    if (msgs.length === 0 && [...members.values()].every((m) => m.applied >= target)) return rounds;
  }
  throw new Error(`the cluster did not apply ${target} within ${ROUNDS_PER_BATCH_MAX} rounds`);
}

function electLeader(members: Map<NodeId, Member>): RaftCore {
  const first = members.get(IDS[0]);
  assert(first !== undefined, 'no members');
  first.core.campaign();
  settle(members, 1);
  assert(first.core.status().role === 'leader', 'n1 did not win its election');
  return first.core;
}

function compactAll(members: Map<NodeId, Member>): void {
  for (const m of members.values()) {
    const index = m.applied;
    // The image is empty: the benchmark measures the core, not a state machine.
    m.store.compact(index, new Uint8Array(0));
    m.core.compact(index);
  }
}

function run(total: number, batch: number): { proposalsPerSec: number; entries: number; ms: number; batch: number; roundsPerBatch: number } {
  const members = createCluster();
  const leader = electLeader(members);
  const payload = new Uint8Array(16).fill(7);
  let proposed = 0;
  let rounds = 0;
  let sinceCompact = 0;
  const started = performance.now();
  while (proposed < total) {
    const n = Math.min(batch, total - proposed);
    let last = 0;
    for (let i = 0; i < n; i++) {
      const r = leader.propose(payload);
      assert(r.ok, 'the leader refused a proposal');
      last = r.index;
    }
    proposed += n;
    sinceCompact += n;
    rounds += settle(members, last);
    if (sinceCompact >= COMPACT_EVERY) {
      compactAll(members);
      sinceCompact = 0;
    }
  }
  const ms = performance.now() - started;
  return { proposalsPerSec: Math.round((proposed / ms) * 1000), entries: proposed, ms: Math.round(ms), batch, roundsPerBatch: rounds / Math.ceil(total / batch) };
}

function main(): void {
  const total = Number(process.env['FLOTILLA_BENCH_ENTRIES'] ?? 200_000);
  const batch = Number(process.env['FLOTILLA_BENCH_BATCH'] ?? 1000);
  // A short warm-up so the JIT has compiled the hot paths before the measured run.
  run(Math.min(total, 20_000), batch);
  console.log(JSON.stringify(run(total, batch)));
}

main();
