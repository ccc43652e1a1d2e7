import { describe, expect, test } from 'vitest';
import { RaftCore, type RaftOptions } from '../../src/raft/raft-core.js';
import type { Entry, Message } from '../../src/raft/types.js';
import { SeededRng } from '../../src/util/rng.js';

/** A minimal lock-step cluster: every Ready is carried out at once, messages delivered in order. */
function cluster(ids: string[], seed = 1, options: Partial<RaftOptions> = {}) {
  const rng = new SeededRng(seed);
  const applied = new Map<string, Entry[]>(ids.map((id) => [id, []]));
  const cores = new Map(
    ids.map((id) => [
      id,
      new RaftCore(
        { id, rng, electionTicks: 10, heartbeatTicks: 1, ...options },
        { hardState: { term: 0, vote: null, commit: 0 }, snapshot: { index: 0, term: 0, config: { voters: ids, learners: [] } }, entries: [], applied: 0 },
      ),
    ]),
  );
  const queue: Message[] = [];
  function drain(maxRounds = 1000): void {
    for (let round = 0; round < maxRounds; round++) {
      let busy = false;
      for (const [id, core] of cores) {
        if (!core.hasReady()) continue;
        busy = true;
        const r = core.ready();
        queue.push(...r.messages);
        applied.get(id)!.push(...r.committed);
        core.advance(r);
      }
      while (queue.length > 0) {
        busy = true;
        const m = queue.shift()!;
        cores.get(m.to)!.step(m);
      }
      if (!busy) return;
    }
    throw new Error('did not settle');
  }
  function tickAll(n: number): void {
    for (let i = 0; i < n; i++) {
      for (const c of cores.values()) c.tick();
      drain();
    }
  }
  const leader = () => [...cores.values()].find((c) => c.status().role === 'leader');
  return { cores, applied, drain, tickAll, leader };
}

describe('RaftCore basics', () => {
  test('a 3-member cluster elects one leader and commits proposals everywhere', () => {
    const c = cluster(['a', 'b', 'c']);
    c.tickAll(30);
    const leader = c.leader();
    expect(leader).toBeDefined();
    for (let i = 0; i < 100; i++) expect(leader!.propose(new Uint8Array([i])).ok).toBe(true);
    c.drain();
    c.tickAll(2);
    for (const id of ['a', 'b', 'c']) {
      const data = c.applied.get(id)!.filter((e) => e.data.byteLength > 0).map((e) => e.data[0]);
      expect(data).toEqual([...Array(100).keys()]);
    }
  });

  test('a single member elects itself and commits', () => {
    const c = cluster(['solo']);
    c.tickAll(25);
    const leader = c.leader();
    expect(leader?.id).toBe('solo');
    expect(leader!.propose(new Uint8Array([7])).ok).toBe(true);
    c.drain();
    expect(c.applied.get('solo')!.map((e) => e.data.byteLength)).toEqual([0, 1]);
  });

  test('takeHeartbeats hands over the heartbeats and replies only, while a Ready is in flight', () => {
    const c = cluster(['a', 'b', 'c']);
    c.tickAll(30);
    const leader = c.leader()!;
    const follower = [...c.cores.values()].find((core) => core !== leader)!;
    expect(leader.propose(new Uint8Array([1])).ok).toBe(true);
    const inFlight = leader.ready(); // the runtime is persisting this one
    expect(leader.propose(new Uint8Array([2])).ok).toBe(true);
    leader.tick(); // heartbeatTicks 1: a heartbeat to each follower
    const beats = leader.takeHeartbeats();
    const others = ['a', 'b', 'c'].filter((id) => id !== leader.id);
    expect(beats.map((m) => `${m.type}>${m.to}`).sort()).toEqual(others.map((id) => `heartbeat>${id}`));
    expect(beats.every((m) => m.term === leader.hardState().term)).toBe(true);
    expect(leader.takeHeartbeats()).toEqual([]);
    follower.step(beats.find((m) => m.to === follower.id)!);
    expect(follower.takeHeartbeats().map((m) => m.type)).toEqual(['heartbeatResp']);
    leader.advance(inFlight);
    const next = leader.ready();
    expect(next.messages.some((m) => m.type === 'heartbeat')).toBe(false);
    expect(next.messages.some((m) => m.type === 'append')).toBe(true); // the second proposal still goes with its Ready
    leader.advance(next);
  });

  test('followers refuse proposals and name the leader', () => {
    const c = cluster(['a', 'b', 'c']);
    c.tickAll(30);
    const leader = c.leader()!;
    const follower = [...c.cores.values()].find((x) => x !== leader)!;
    expect(follower.propose(new Uint8Array([1]))).toEqual({ ok: false, code: 'NOT_LEADER', leader: leader.id });
  });

  test('ReadIndex on the leader and through a follower', () => {
    const c = cluster(['a', 'b', 'c']);
    c.tickAll(30);
    const leader = c.leader()!;
    leader.propose(new Uint8Array([1]));
    c.drain();
    const follower = [...c.cores.values()].find((x) => x !== leader)!;
    expect(leader.readIndex(1).ok).toBe(true);
    expect(follower.readIndex(2).ok).toBe(true);
    const states: Array<{ id: string; context: number; index: number }> = [];
    for (let round = 0; round < 20; round++) {
      for (const [id, core] of c.cores) {
        if (!core.hasReady()) continue;
        const r = core.ready();
        for (const s of r.readStates) states.push({ id, ...s });
        for (const m of r.messages) c.cores.get(m.to)!.step(m);
        core.advance(r);
      }
    }
    const commit = leader.status().commit;
    expect(states).toEqual(
      expect.arrayContaining([
        { id: leader.id, context: 1, index: commit },
        { id: follower.id, context: 2, index: commit },
      ]),
    );
  });

  test('leadership transfer moves leadership to the target', () => {
    const c = cluster(['a', 'b', 'c']);
    c.tickAll(30);
    const leader = c.leader()!;
    const target = [...c.cores.values()].find((x) => x !== leader)!;
    expect(leader.transferLeadership(target.id)).toBe(true);
    c.drain();
    c.tickAll(3);
    expect(c.leader()?.id).toBe(target.id);
  });

  test('lazy commit notification: the next append or notifyCommit() carries the commit index', () => {
    const data = (id: string) => c.applied.get(id)!.filter((e) => e.data.byteLength > 0).map((e) => e.data[0]);
    const c = cluster(['a', 'b', 'c'], 1, { lazyCommitNotifyEntries: 8 });
    c.tickAll(30);
    const leader = c.leader()!;
    const followers = [...c.cores.values()].filter((x) => x !== leader);
    leader.propose(new Uint8Array([1]));
    c.drain();
    // Committed on the leader; the followers hold the entry but were not sent a message to say so.
    const first = leader.status().commit;
    expect(data(leader.id)).toEqual([1]);
    expect(leader.commitNotifyOwed()).toBe(true);
    for (const f of followers) {
      expect(f.status().lastIndex).toBe(first);
      expect(f.status().commit).toBeLessThan(first);
    }
    // The next append carries it.
    leader.propose(new Uint8Array([2]));
    c.drain();
    for (const f of followers) expect(data(f.id)).toEqual([1]);
    expect(leader.commitNotifyOwed()).toBe(true);
    // Nothing follows: the runtime's timer sends what is owed.
    leader.notifyCommit();
    expect(leader.commitNotifyOwed()).toBe(false);
    c.drain();
    for (const f of followers) {
      expect(f.status().commit).toBe(leader.status().commit);
      expect(data(f.id)).toEqual([1, 2]);
    }
    // A heartbeat pays the debt too.
    leader.propose(new Uint8Array([3]));
    c.drain();
    expect(leader.commitNotifyOwed()).toBe(true);
    c.tickAll(1);
    expect(leader.commitNotifyOwed()).toBe(false);
    for (const f of followers) expect(data(f.id)).toEqual([1, 2, 3]);
  });

  test('without lazy commit notification the followers learn a commit at once', () => {
    const c = cluster(['a', 'b', 'c']);
    c.tickAll(30);
    const leader = c.leader()!;
    leader.propose(new Uint8Array([1]));
    c.drain();
    expect(leader.commitNotifyOwed()).toBe(false);
    for (const f of c.cores.values()) expect(f.status().commit).toBe(leader.status().commit);
  });

  test('lazy commit notification: a follower that acknowledges after the commit is owed it too', () => {
    const c = cluster(['a', 'b', 'c'], 1, { lazyCommitNotifyEntries: 8 });
    c.tickAll(30);
    const leader = c.leader()!;
    const [fast, slow] = [...c.cores.values()].filter((x) => x !== leader);
    const { index } = leader.propose(new Uint8Array([1])) as { index: number };
    /** Carries out one Ready of `core` and returns its messages. */
    const readyOf = (core: RaftCore) => {
      const r = core.ready();
      core.advance(r);
      return r.messages;
    };
    const appends = readyOf(leader);
    const toFast = appends.find((m) => m.to === fast.id)!;
    const toSlow = appends.find((m) => m.to === slow.id)!;
    fast.step(toFast);
    for (const m of readyOf(fast)) leader.step(m);
    // Committed with the fast follower; nothing new for either follower, and no message for it.
    expect(leader.status().commit).toBe(index);
    expect(readyOf(leader).filter((m) => m.type === 'heartbeat' || m.type === 'append')).toEqual([]);
    expect(leader.commitNotifyOwed()).toBe(true);
    slow.step(toSlow);
    for (const m of readyOf(slow)) leader.step(m);
    leader.notifyCommit();
    const notices = readyOf(leader);
    expect(notices.map((m) => [m.type, m.to, 'commit' in m ? m.commit : null]).sort()).toEqual(
      [['heartbeat', fast.id, index], ['heartbeat', slow.id, index]].sort(),
    );
    expect(leader.commitNotifyOwed()).toBe(false);
  });
});
