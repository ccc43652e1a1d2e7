import { describe, expect, test } from 'vitest';
import { encodeConfig } from '../../src/raft/config.js';
import type { ConfigState, Entry } from '../../src/raft/types.js';
import { ManualCluster, all, from, logWithTerms, ofType, to } from '../sim/manual-cluster.js';

/**
 * Scripted scenarios named after the Raft paper (and Ongaro's dissertation), driven message by
 * message through the simulator's runtime loop and checker. The traces are the point: read them
 * as the paper's figures. Review `vitest -u` diffs of the inline snapshots like code.
 */

const THREE = ['n1', 'n2', 'n3'];

/** A cluster with n1 elected and `commands` committed on every member. */
function elected(ids: readonly string[], core = {}, commands = 0): ManualCluster {
  const c = new ManualCluster({ ids, core });
  c.campaign('n1');
  c.deliverAll();
  expect(c.leader()).toBe('n1');
  for (let i = 1; i <= commands; i++) c.propose('n1', `c${i}`);
  c.deliverAll();
  return c;
}

/** Only the messages, not the notes: the exchange itself. */
const messagesOnly = (line: string) => /→/.test(line);

describe('elections', () => {
  test('§5.4.1 stale-log candidate gets no vote', () => {
    // Pre-vote and the leader lease would stop n3 earlier; switch them off to test the vote rule itself.
    const c = elected(THREE, { preVote: false, checkQuorum: false });
    c.isolate('n3');
    c.propose('n1', 'c1');
    c.deliverAll();
    c.heal();
    const mark = c.trace.length;
    c.campaign('n3');
    c.deliver(ofType('vote'));
    c.deliver(ofType('voteResp'));
    expect(c.traceFrom(mark, messagesOnly)).toMatchInlineSnapshot(`
      "n3→n1 vote t2 last=1/1
      n3→n2 vote t2 last=1/1
      n1→n3 voteResp t2 rejected
      n2→n3 voteResp t2 rejected"
    `);
    expect(c.status('n3').role).not.toBe('leader');
  });

  test('§5.4.1 a leader with a stale log cannot win back leadership', () => {
    const c = elected(THREE);
    c.isolate('n1');
    c.run(40); // n1 steps down (check-quorum); n2 or n3 wins a new term
    const leader = c.leader();
    expect(leader === 'n2' || leader === 'n3').toBe(true);
    c.propose(leader!, 'c1');
    c.deliverAll();
    c.heal();
    c.campaign('n1');
    c.deliverAll();
    expect(c.leader()).toBe(leader);
  });

  test('leadership transfer: TimeoutNow moves leadership to the target', () => {
    const c = elected(THREE, {}, 2);
    const mark = c.trace.length;
    expect(c.node('n1').transferLeadership('n3')).toBe(true);
    c.flush();
    c.deliverAll();
    expect(c.leader()).toBe('n3');
    expect(c.traceFrom(mark, (l) => /timeoutNow|vote/.test(l))).toMatchInlineSnapshot(`
      "n1→n3 timeoutNow t1
      n3→n1 vote t2 last=3/1 transfer
      n3→n2 vote t2 last=3/1 transfer
      n1→n3 voteResp t2 granted
      n2→n3 voteResp t2 granted"
    `);
  });
});

describe('log replication', () => {
  // Figure 7: the leader's log and followers a–f, by term of each entry from index 1.
  const FIGURE_7: Record<string, number[]> = {
    L: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6],
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 1, 4],
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 1, 4, 4, 4, 4],
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };

  test('Figure 7: the leader brings followers a–f into line with its log', () => {
    const ids = Object.keys(FIGURE_7);
    const config = { voters: ids, learners: [] };
    const initial = Object.fromEntries(ids.map((id) => [id, logWithTerms(FIGURE_7[id], { term: 7 }, config)]));
    const c = new ManualCluster({ ids, initial });
    c.campaign('L'); // a, b, e and f find L's log at least as up to date as theirs; c and d do not
    c.deliverAll(ofType('preVote', 'preVoteResp', 'vote', 'voteResp'));
    expect(c.leader()).toBe('L');
    const mark = c.trace.length;
    c.deliverAll();
    // Missing entries are filled in, extra entries of other terms truncated, the no-op of term 8 appended.
    for (const id of ids) expect(c.terms(id), id).toBe('1 1 1 4 4 5 5 6 6 6 8');
    expect(c.status('L').commit).toBe(11);
    // Fast back-off: each rejection carries the conflicting term and where it starts, so the
    // leader skips a whole term per round trip (f needs 2 rejections, not 7).
    expect(c.traceFrom(mark, (l) => /appendResp/.test(l))).toMatchInlineSnapshot(`
      "a→L appendResp t8 reject at=10 hint=10/0
      b→L appendResp t8 reject at=10 hint=5/0
      c→L appendResp t8 ok match=11
      d→L appendResp t8 ok match=11
      e→L appendResp t8 reject at=10 hint=8/0
      f→L appendResp t8 reject at=10 hint=7/3
      a→L appendResp t8 ok match=11
      b→L appendResp t8 ok match=11
      e→L appendResp t8 reject at=7 hint=4/4
      f→L appendResp t8 reject at=6 hint=4/2
      e→L appendResp t8 ok match=11
      f→L appendResp t8 ok match=11"
    `);
  });

  /**
   * Figure 8, state (c): S1 leads term 4 and still carries (2, term 2) from term 2; S5 holds a
   * conflicting (2, term 3). S1 gets (2, 2) onto a majority, but S5 could still be elected and
   * overwrite it, so S1 must not count replicas of an old-term entry.
   */
  function figure8(): ManualCluster {
    const ids = ['S1', 'S2', 'S3', 'S4', 'S5'];
    const config = { voters: ids, learners: [] };
    const initial = {
      S1: logWithTerms([1, 2], { term: 3, commit: 1 }, config),
      S2: logWithTerms([1], { term: 3, commit: 1 }, config),
      S3: logWithTerms([1], { term: 3, commit: 1 }, config),
      S4: logWithTerms([1], { term: 3, commit: 1 }, config),
      S5: logWithTerms([1, 3], { term: 3, commit: 1 }, config),
    };
    // One entry per append, so a follower can hold (2, 2) without S1's no-op of term 4 after it.
    const c = new ManualCluster({ ids, initial, core: { maxEntriesPerAppend: 1, checkQuorum: false } });
    c.campaign('S1');
    c.deliverAll(all(ofType('preVote', 'preVoteResp', 'vote', 'voteResp'), (m) => m.from !== 'S5' && m.to !== 'S5'));
    expect(c.leader()).toBe('S1');
    expect(c.log('S1')).toBe('1/1 2/2 3/4');
    return c;
  }

  test('Figure 8: a leader does not commit an old-term entry by counting replicas', () => {
    const c = figure8();
    const mark = c.trace.length;
    // S2 and S3 take (2, 2) but not the no-op (3, 4): the no-op appends to them are lost.
    c.deliver(all(ofType('append'), to('S2', 'S3')));
    c.deliver(all(ofType('appendResp'), from('S2', 'S3')));
    c.deliver(all(ofType('append'), to('S2', 'S3')));
    c.deliver(all(ofType('appendResp'), from('S2', 'S3')));
    c.drop(all(ofType('append'), to('S2', 'S3')));
    expect(c.traceFrom(mark, messagesOnly)).toMatchInlineSnapshot(`
      "S1→S2 append t4 prev=2/2 [3/4] c=1
      S1→S3 append t4 prev=2/2 [3/4] c=1
      S2→S1 appendResp t4 reject at=2 hint=2/0
      S3→S1 appendResp t4 reject at=2 hint=2/0
      S1→S2 append t4 prev=1/1 [2/2] c=1
      S1→S3 append t4 prev=1/1 [2/2] c=1
      S2→S1 appendResp t4 ok match=2
      S3→S1 appendResp t4 ok match=2
      drop S1→S2 append t4 prev=2/2 [3/4] c=1
      drop S1→S3 append t4 prev=2/2 [3/4] c=1"
    `);
    // (2, 2) is on S1, S2, S3: a majority. Still not committed: it is not of S1's term.
    expect([c.log('S2'), c.log('S3')]).toEqual(['1/1 2/2', '1/1 2/2']);
    expect(c.status('S1').commit).toBe(1);
    // Why: S1 crashes, and S5 (last term 3) wins votes from S2, S3, S4 and overwrites index 2.
    c.crash('S1');
    c.queue = [];
    c.campaign('S5'); // its pre-vote for term 4 fails, but the replies teach it term 4
    c.deliverAll();
    c.campaign('S5');
    c.deliverAll();
    expect(c.leader()).toBe('S5');
    expect([c.log('S2'), c.log('S3'), c.log('S4')]).toEqual(['1/1 2/3 3/5', '1/1 2/3 3/5', '1/1 2/3 3/5']);
  });

  test('Figure 8 (e): the old-term entry commits with the first entry of the leader\'s term', () => {
    const c = figure8();
    c.deliverAll(to('S1', 'S2', 'S3'));
    // (3, 4) is on S1, S2, S3: committing it commits (2, 2) before it, and S5 can no longer win.
    expect(c.status('S1').commit).toBe(3);
    expect([c.log('S2'), c.log('S3')]).toEqual(['1/1 2/2 3/4', '1/1 2/2 3/4']);
    c.crash('S1');
    c.queue = [];
    c.campaign('S5');
    c.deliverAll();
    c.campaign('S5');
    c.deliverAll();
    expect(c.status('S5').role).not.toBe('leader');
  });
});

describe('pre-vote and check-quorum', () => {
  test('§9.6 pre-vote: a partitioned member rejoining does not depose a healthy leader', () => {
    const c = elected(THREE, {}, 1);
    const term = c.status('n1').term;
    c.isolate('n3');
    c.run(60); // n3 keeps timing out; its pre-votes go nowhere, so its term never grows
    expect(c.status('n3').term).toBe(term);
    c.heal();
    c.run(5);
    expect(c.leader()).toBe('n1');
    expect(c.status('n1').term).toBe(term);
    expect(c.status('n3').leader).toBe('n1');
  });

  test('§9.6 a member back with a higher term (pre-vote off while cut off) deposes the leader once, and the cluster recovers', () => {
    const c = elected(THREE, {}, 1);
    c.isolate('n3');
    c.crash('n3');
    // n3 runs without pre-vote while cut off, so each timeout bumps its term.
    c.node('n3').options = { ...c.node('n3').options, preVote: false };
    c.restart('n3');
    c.run(60);
    const isolatedTerm = c.status('n3').term;
    expect(isolatedTerm).toBeGreaterThan(c.status('n1').term);
    c.propose('n1', 'c2');
    c.deliverAll(); // committed on n1, n2 while n3 is away
    c.heal();
    c.run(40);
    // The leader had to learn the higher term and step down; n3's stale log cannot win, so n1 or n2 leads.
    const leader = c.leader();
    expect(leader === 'n1' || leader === 'n2').toBe(true);
    expect(c.status(leader!).term).toBeGreaterThan(isolatedTerm);
    const index = c.propose(leader!, 'c3');
    c.run(3);
    for (const id of THREE) expect(c.node(id).machine.applied, id).toBeGreaterThanOrEqual(index);
  });

  test('check-quorum: a leader cut off from its majority steps down within two election timeouts', () => {
    const c = elected(THREE);
    c.isolate('n1');
    let ticks = 0;
    while (c.status('n1').role === 'leader' && ticks < 100) {
      c.tick('n1');
      ticks++;
    }
    expect(c.status('n1').role).toBe('follower');
    expect(ticks).toBeLessThanOrEqual(2 * 10);
  });

  test('§4.2.3 a removed member that never learned it was removed cannot disrupt the cluster', () => {
    const c = elected(THREE, {}, 1);
    c.isolate('n3'); // n3 will miss its own removal
    c.node('n1').proposeConfigChange({ type: 'remove', id: 'n3' });
    c.flush();
    c.deliverAll();
    expect(c.status('n1').config.voters).toEqual(['n1', 'n2']);
    const term = c.status('n1').term;
    c.heal();
    c.run(60); // n3 keeps campaigning with its old configuration
    expect(c.leader()).toBe('n1');
    expect(c.status('n1').term).toBe(term);
  });
});

describe('ReadIndex (§6.4)', () => {
  test('a new leader answers no read until it has committed an entry of its term', () => {
    const c = elected(THREE, { checkQuorum: false }, 1);
    c.crash('n1');
    c.queue = [];
    c.campaign('n2');
    c.deliverAll(ofType('preVote', 'preVoteResp', 'vote', 'voteResp'));
    expect(c.leader()).toBe('n2');
    c.read('n2', 101);
    c.deliverAll(ofType('heartbeat', 'heartbeatResp')); // leadership confirmed, but nothing of term 2 committed
    expect(c.readStates.get('n2')).toEqual([]);
    c.deliverAll(); // the no-op commits; then a heartbeat round confirms the read
    const noop = c.status('n2').commit;
    expect(c.readStates.get('n2')).toEqual([{ context: 101, index: noop }]);
  });

  test('a deposed leader in a minority cannot confirm a read', () => {
    const c = elected(THREE, { checkQuorum: false }, 1);
    c.isolate('n1');
    c.read('n1', 201);
    c.run(40); // n2 and n3 elect a new leader and move on; n1's heartbeats go nowhere
    expect(c.readStates.get('n1')!.filter((r) => r.context === 201 && r.index > 0)).toEqual([]);
    expect(c.status('n1').role).toBe('leader'); // without check-quorum it does not know it is deposed
    const leader = ['n2', 'n3'].find((id) => c.status(id).role === 'leader');
    expect(leader).toBeDefined();
    c.propose(leader!, 'after');
    c.heal();
    c.run(5); // n1 learns the new term, steps down and fails the read (index 0): the client retries
    expect(c.readStates.get('n1')).toEqual([{ context: 201, index: 0 }]);
  });

  test("a follower's read goes through the leader", () => {
    const c = elected(THREE, {}, 2);
    const mark = c.trace.length;
    c.read('n3', 301);
    c.deliverAll();
    expect(c.readStates.get('n3')).toEqual([{ context: 301, index: c.status('n1').commit }]);
    expect(c.traceFrom(mark, messagesOnly)).toMatchInlineSnapshot(`
      "n3→n1 readIndex t1 ctx=301
      n1→n2 heartbeat t1 c=3 round=1
      n1→n3 heartbeat t1 c=3 round=1
      n2→n1 heartbeatResp t1 round=1
      n3→n1 heartbeatResp t1 round=1
      n1→n3 readIndexResp t1 ctx=301 index=3"
    `);
  });
});

describe('membership', () => {
  test('learners replicate but neither vote nor count toward commit', () => {
    const ids = ['n1', 'n2', 'n3', 'n4'];
    const c = new ManualCluster({ ids, config: { voters: THREE, learners: ['n4'] } });
    c.campaign('n1');
    c.deliverAll(to('n1', 'n2', 'n3')); // n4 gets nothing yet
    expect(c.leader()).toBe('n1');
    const index = c.propose('n1', 'c1');
    c.deliverAll(to('n1', 'n4')); // only the learner has it
    expect(c.log('n4')).toContain(`${index}/`);
    expect(c.status('n1').commit).toBeLessThan(index);
    c.deliverAll(); // now n2 and n3 too
    expect(c.status('n1').commit).toBe(index);
    expect(c.status('n4').role).toBe('learner');
    expect(c.node('n4').machine.applied).toBe(index);
    c.isolate('n4');
    c.run(60); // a learner never campaigns
    expect(c.status('n4').role).toBe('learner');
    expect(c.status('n4').term).toBe(c.status('n1').term);
  });

  test('§4.1 single-server changes: add a learner, promote it, remove the leader', () => {
    const ids = ['n1', 'n2', 'n3', 'n4'];
    const c = new ManualCluster({ ids, config: { voters: THREE, learners: [] } });
    // n4 starts empty and knows no configuration: it waits to be added.
    c.node('n4').crash(0);
    c.node('n4').store.crash(0);
    c.campaign('n1');
    c.deliverAll();
    c.propose('n1', 'c1');
    c.deliverAll();
    const change = (type: 'addLearner' | 'promote' | 'remove', id: string) => {
      const r = c.node(c.leader()!).proposeConfigChange({ type, id });
      expect(r.ok, `${type} ${id}`).toBe(true);
      c.flush();
      c.run(3);
    };
    c.restart('n4');
    change('addLearner', 'n4');
    expect(c.status('n4').role).toBe('learner');
    expect(c.node('n4').machine.applied).toBe(c.status('n1').commit);
    change('promote', 'n4');
    expect(c.status('n1').config.voters).toEqual(['n1', 'n2', 'n3', 'n4']);
    change('remove', 'n1');
    // The leader leaves once its removal commits, and the other three elect a leader among them.
    expect(c.status('n1').role).toBe('follower');
    c.run(40);
    const leader = c.leader();
    expect(['n2', 'n3', 'n4']).toContain(leader);
    expect(c.status(leader!).config.voters).toEqual(['n2', 'n3', 'n4']);
    // The removed member knows it was removed: it never campaigns, and the new term holds.
    const term = c.status(leader!).term;
    c.run(60);
    expect(c.status(leader!).term).toBe(term);
    expect(c.status('n1').role).toBe('follower');
  });
});

describe('regressions found by the simulator', () => {
  test('seed 100: compacting below a snapshot that just arrived (not yet through a Ready) is a no-op', () => {
    const c = elected(THREE, {}, 2);
    const oldApplied = c.node('n3').machine.applied;
    c.isolate('n3');
    for (let i = 3; i <= 6; i++) c.propose('n1', `c${i}`);
    c.deliverAll();
    for (const id of ['n1', 'n2']) c.node(id).compact(c.node(id).machine.applied);
    c.heal();
    // Heartbeats until the leader notices n3 is stuck behind its compacted log and sends a snapshot.
    for (let i = 0; i < 10 && !c.queue.some((m) => m.type === 'snapshot'); i++) {
      c.tick('n1');
      c.deliverAll((m) => m.type !== 'snapshot');
    }
    const snapshot = c.queue.find((m) => m.type === 'snapshot');
    expect(snapshot).toBeDefined();
    c.queue = c.queue.filter((m) => m !== snapshot);
    // The snapshot is stepped in, and before its Ready runs, the runtime compacts at what it applied.
    c.node('n3').deliver(snapshot!, c.node('n1').store.snapshotImage());
    expect(() => c.node('n3').compact(oldApplied)).not.toThrow();
    c.flush();
    c.deliverAll();
    expect(c.node('n3').machine.applied).toBe(c.status('n1').commit);
  });

  test('seed 1604: a member votes for a candidate missing from its own (stale) configuration', () => {
    // n1 added n4 as a learner, promoted it and removed n2, so its configuration is {n1, n4}; n4
    // got only entry 1 and still knows no configuration. n1 needs n4's vote, and must get it.
    const founding: ConfigState = { voters: ['n1', 'n2'], learners: [] };
    const configEntry = (index: number, config: ConfigState): Entry => ({ index, term: 1, type: 'config', data: encodeConfig(config) });
    const n1 = logWithTerms([1], { term: 1, commit: 1 }, founding);
    const c = new ManualCluster({
      ids: ['n1', 'n2', 'n4'],
      initial: {
        n1: { ...n1, entries: [...n1.entries, configEntry(2, { voters: ['n1', 'n2'], learners: ['n4'] }), configEntry(3, { voters: ['n1', 'n2', 'n4'], learners: [] }), configEntry(4, { voters: ['n1', 'n4'], learners: [] })] },
        n2: logWithTerms([1], { term: 1, commit: 1 }, founding),
        n4: logWithTerms([1], { term: 1, commit: 1 }, { voters: [], learners: [] }),
      },
    });
    c.crash('n2');
    c.campaign('n1');
    c.deliverAll();
    expect(c.leader()).toBe('n1');
    expect(c.status('n4').config.voters).toEqual(['n1', 'n4']);
  });

  test('seed 646: a vote a member rejects does not restart its election timer (§5.2)', () => {
    const c = elected(THREE, { preVote: false, checkQuorum: false });
    c.isolate('n2');
    c.propose('n1', 'c1');
    c.deliverAll(); // n2 misses c1: its log is stale
    c.crash('n3');
    c.crash('n1');
    c.queue = [];
    c.restart('n1');
    c.heal();
    // n2 campaigns every 9 ticks, more often than any election timeout; n1 must still time out and win.
    let ticks = 0;
    while (c.status('n1').role !== 'leader' && ticks < 40) {
      ticks++;
      if (ticks % 9 === 0) c.campaign('n2');
      c.tick('n1');
      c.deliverAll();
    }
    expect(c.status('n1').role).toBe('leader');
    expect(ticks).toBeLessThan(2 * 10);
  });

  test('seed 1110: a candidate in an old term learns the current term from the rejection', () => {
    const config = { voters: THREE, learners: [] };
    const c = new ManualCluster({
      ids: THREE,
      core: { preVote: false },
      initial: {
        n1: logWithTerms([1], { term: 5 }, config),
        n2: logWithTerms([1], { term: 3 }, config),
        n3: logWithTerms([1], { term: 5 }, config),
      },
    });
    const mark = c.trace.length;
    c.campaign('n2');
    c.deliverAll();
    expect(c.traceFrom(mark, messagesOnly)).toMatchInlineSnapshot(`
      "n2→n1 vote t4 last=1/1
      n2→n3 vote t4 last=1/1
      n1→n2 voteResp t5 rejected
      n3→n2 voteResp t5 rejected"
    `);
    expect(c.status('n2').term).toBe(5);
  });
});
