// The long-running measurements of issue 6: a member that missed many writes rejoins by snapshot
// with exactly the leader's data (rejoin); a fourth member joins a cluster holding many keys while
// writes go on, then an original member is removed (join); disk use over a long write run with
// compaction on (disk). Each part takes the run's ctx ({ options, results, notes, build,
// running, say, repo, loaded }) and stores its figures in ctx.results.<part>.
import { readFileSync, statSync } from 'node:fs';
import { FlotillaCluster } from './clusters.mjs';
import { stateHash } from './kvhash.mjs';
import { formatDuration, loadUniqueKeys } from './load.mjs';
import { http, memoryOf, run, sleep } from './proc.mjs';
import { runWrk } from './wrk.mjs';

const n0 = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const s2 = (msv) => (Number.isFinite(msv) ? `${(msv / 1000).toFixed(2)} s` : '—');
const mibs = (b) => (Number.isFinite(b) ? (b / 1048576).toFixed(1) : '—');

function describe(r) {
  const err = r.errors > 0 ? `, ${n0(r.errors)} errors ${JSON.stringify(r.errorDetail)}` : '';
  return `${n0(r.rps)} req/s, p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms${err}`;
}

/** The figures of a wrk run worth keeping (not its raw output). */
function wrkFigures(r) {
  return {
    rps: r.rps, requests: r.requests, seconds: r.seconds, errors: r.errors, errorDetail: r.errorDetail,
    p50Ms: r.p50Ms, p90Ms: r.p90Ms, p99Ms: r.p99Ms, p999Ms: r.p999Ms, maxMs: r.maxMs, command: r.command,
  };
}

/** The JSON log lines a member wrote after byte `offset` of its log file. */
function logLinesSince(file, offset) {
  let text = '';
  try {
    text = readFileSync(file).subarray(offset).toString('utf8');
  } catch {
    return [];
  }
  const out = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      /* a line cut by a crash */
    }
  }
  return out;
}

function fileSize(file) {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** The member whose own status says it leads, or null (asks only running members). */
async function findLeader(cluster) {
  for (const m of cluster.members) {
    if (!m.child) continue;
    const s = await cluster.status(m);
    if (s?.role === 'leader') return m;
  }
  return null;
}

async function waitForLeader(cluster, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    cluster.checkAlive();
    const l = await findLeader(cluster);
    if (l) return l;
    await sleep(200);
  }
  throw new Error(`no flotilla leader within ${timeoutMs / 1000} s`);
}

/** A request that follows 307s (a write sent where the leader was a moment ago). */
async function httpFollow(method, url, options = {}) {
  let target = url;
  for (let hop = 0; hop < 5; hop++) {
    const r = await http(method, target, options);
    const loc = r.status === 307 ? r.headers.get('location') : null;
    if (!loc) return r;
    target = loc;
  }
  return http(method, target, options);
}

function dropRunning(ctx, cluster) {
  const i = ctx.running.indexOf(cluster);
  if (i >= 0) ctx.running.splice(i, 1);
}

// ------------------------------------------------------------------ rejoin

/**
 * Stop a follower hard, write `options.rejoinWrites` unique keys on the leader (with overwrites
 * and deletes), start the follower again: time until it has applied the leader's commit index,
 * check from its log that it got there by InstallSnapshot, and compare a digest of the whole key
 * space on both.
 */
export async function rejoinPart(ctx) {
  const { options, notes, say } = ctx;
  const writes = options.rejoinWrites;
  // A small run must still make the leader compact past the stopped member: smaller thresholds.
  const flags = options.quick ? ['--snapshot-entries', '1000', '--snapshot-catchup-entries', '100'] : [];
  say(`rejoin: starting a fresh 3-member flotilla (${flags.length ? flags.join(' ') : 'default flags: compaction every 10,000 entries, 5,000 kept'}) ...`);
  const cluster = await FlotillaCluster.start({ size: 3, repo: ctx.build.dir, extraFlags: flags });
  ctx.running.push(cluster);
  const leader = await cluster.leader();
  const follower = cluster.members.find((m) => m !== leader);
  const out = { writes, flags, stopSignal: 'SIGKILL', connections: 64, leader: leader.name, member: follower.name };

  // One key every member holds before the stop.
  if (!(await cluster.put(leader.clientUrl, 'rejoin-seen-by-all', 'x'))) throw new Error('rejoin: the first write failed');
  const commit0 = (await cluster.status(leader))?.commitIndex ?? 1;
  const before = await waitStatus(cluster, follower, (s) => s.appliedIndex >= commit0, 10_000);
  out.appliedAtStop = before.appliedIndex;
  await cluster.killMember(follower, 'SIGKILL');
  say(`rejoin: ${follower.name} killed (SIGKILL) at applied index ${n0(before.appliedIndex)}; writing ${n0(writes)} unique keys on ${leader.name} (wrk, 64 connections) ...`);

  const load = await loadUniqueKeys({
    repo: ctx.repo, cluster, leader, target: writes, connections: 64, budgetS: options.quick ? 120 : 900, prefix: 'r', say,
  });
  out.load = { loaded: load.loaded, seconds: load.seconds, rate: load.rate, errors: load.errors };
  say(`rejoin: ${n0(load.loaded)} writes committed in ${formatDuration(load.seconds)} (${n0(load.rate)}/s, ${load.errors} errors)`);
  if (load.loaded < writes) notes.push(`rejoin: only ${n0(load.loaded)} of ${n0(writes)} writes were committed within the time budget.`);
  // Overwrites and deletes too, so the state to rebuild is not only inserts.
  let edits = 0;
  for (let i = 0; i < 100; i++) {
    const key = `r1-${String(i * 13).padStart(7, '0')}`;
    const r = i % 2 === 0
      ? await http('DELETE', `${leader.clientUrl}/v1/kv/${key}`, { timeoutMs: 10_000 })
      : await http('PUT', `${leader.clientUrl}/v1/kv/${key}`, { body: `again-${i}`, timeoutMs: 10_000 });
    if (r.status === 200) edits++;
  }
  out.edits = edits;
  const ls = await cluster.status(leader);
  if (!ls) throw new Error(`rejoin: ${leader.name} does not answer /v1/status`);
  out.leaderCommit = ls.commitIndex;
  out.behind = ls.commitIndex - before.appliedIndex;

  const followerLog = fileSize(follower.logFile);
  const leaderLog = fileSize(leader.logFile);
  say(`rejoin: restarting ${follower.name}, ${n0(out.behind)} entries behind the leader's commit index ${n0(ls.commitIndex)} ...`);
  const spawnedAt = Date.now();
  const t0 = performance.now();
  cluster.spawn(follower);
  const timing = { listenMs: NaN, healthMs: NaN, caughtUpMs: NaN };
  const deadline = t0 + (options.quick ? 120_000 : 900_000);
  for (let i = 0; performance.now() < deadline && i < 100_000; i++) {
    if (follower.child.exitCode !== null || follower.child.signalCode !== null) throw new Error(`${follower.name} exited while catching up; see ${follower.logFile}`);
    const s = await cluster.status(follower);
    if (s && Number.isNaN(timing.listenMs)) timing.listenMs = performance.now() - t0;
    if (s && Number.isNaN(timing.healthMs) && (await http('GET', `${follower.clientUrl}/health`, { timeoutMs: 1000 })).status === 200) {
      timing.healthMs = performance.now() - t0;
    }
    if (s && s.appliedIndex >= out.leaderCommit) {
      timing.caughtUpMs = performance.now() - t0;
      break;
    }
    await sleep(100);
  }
  Object.assign(out, timing);
  if (Number.isNaN(timing.caughtUpMs)) throw new Error(`${follower.name} did not reach the leader's commit index ${out.leaderCommit} in time; see ${follower.logFile}`);

  // How it caught up: from its own log since the restart, and the leader's.
  const installed = logLinesSince(follower.logFile, followerLog).filter((l) => l.msg === 'installed a snapshot');
  out.snapshotInstalls = installed.map((l) => ({ index: l.index, atMs: l.time - spawnedAt }));
  out.viaSnapshot = installed.length > 0;
  const sent = logLinesSince(leader.logFile, leaderLog).filter((l) => l.msg === 'snapshot installed by follower' && l.peer === follower.name);
  out.leaderSendMs = sent.map((l) => l.ms);
  out.snapshotIndex = installed.at(-1)?.index ?? null;
  out.entriesAfterSnapshot = out.snapshotIndex === null ? null : out.leaderCommit - out.snapshotIndex;
  say(
    `rejoin: ${follower.name} caught up in ${s2(timing.caughtUpMs)} (listening ${s2(timing.listenMs)}, healthy ${s2(timing.healthMs)}); ` +
      (out.viaSnapshot
        ? `by InstallSnapshot at index ${n0(out.snapshotIndex)} (installed ${s2(out.snapshotInstalls.at(-1).atMs)} after the start), then ${n0(out.entriesAfterSnapshot)} log entries`
        : 'WITHOUT a snapshot (from the log alone)'),
  );
  if (!out.viaSnapshot) notes.push(`rejoin: ${follower.name} caught up without installing a snapshot: the leader had not compacted past it.`);

  await sleep(300);
  say(`rejoin: hashing the whole key space on ${leader.name} and ${follower.name} ...`);
  const [a, b] = await Promise.all([stateHash(leader.clientUrl), stateHash(follower.clientUrl)]);
  out.leaderHash = { hash: a.hash, keys: a.keys, revision: a.revision, ms: a.ms };
  out.memberHash = { hash: b.hash, keys: b.keys, revision: b.revision, ms: b.ms };
  out.identical = a.hash === b.hash && a.keys === b.keys;
  say(`rejoin: ${leader.name} ${n0(a.keys)} keys ${a.hash.slice(0, 16)}…, ${follower.name} ${n0(b.keys)} keys ${b.hash.slice(0, 16)}… — ${out.identical ? 'IDENTICAL' : 'DIFFERENT'} (hashed in ${s2(Math.max(a.ms, b.ms))})`);
  if (!out.identical) notes.push(`rejoin: the rejoined member's data DIFFERS from the leader's (${b.keys} keys ${b.hash} against ${a.keys} keys ${a.hash}); logs kept with --keep-temp.`);

  // And it serves as a normal member afterwards.
  const w = await http('PUT', `${leader.clientUrl}/v1/kv/after-rejoin`, { body: 'y', timeoutMs: 10_000 });
  const g = await http('GET', `${follower.clientUrl}/v1/kv/after-rejoin`, { timeoutMs: 10_000 });
  out.servesAfter = w.status === 200 && g.status === 200 && g.body === 'y';
  ctx.results.rejoin = out;
  await cluster.stop();
  dropRunning(ctx, cluster);
}

async function waitStatus(cluster, m, pred, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await cluster.status(m);
    if (s && pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`${m.name}: status condition not met within ${timeoutMs / 1000} s`);
    await sleep(50);
  }
}

// ------------------------------------------------------------------ join

/**
 * On a cluster holding many keys (the million part's, when it ran just before; else one loaded
 * here), with wrk writing on the leader all along: a baseline, then a fourth member started with
 * `serve --join` until it is a voter and has applied the leader's commit index, then an original
 * follower removed with DELETE /v1/cluster/members/NAME. The leader's commit index is sampled
 * every half second throughout, for the write rate over time.
 */
export async function joinPart(ctx) {
  const { options, notes, say } = ctx;
  const connections = 64;
  let cluster;
  let keysHeld;
  let reused = false;
  if (ctx.loaded?.cluster) {
    ({ cluster, keys: keysHeld } = ctx.loaded);
    ctx.loaded = null;
    reused = true;
    cluster.checkAlive();
    say(`join: using the cluster the million part loaded (${n0(keysHeld)} keys)`);
  } else {
    say(`join: starting a fresh 3-member flotilla and loading ${n0(options.keys)} keys (wrk, 256 connections) ...`);
    cluster = await FlotillaCluster.start({ size: 3, repo: ctx.build.dir });
    ctx.running.push(cluster);
    const l = await cluster.leader();
    const load = await loadUniqueKeys({ repo: ctx.repo, cluster, leader: l, target: options.keys, connections: 256, budgetS: ctx.loadBudget(), prefix: 'm', say });
    keysHeld = load.loaded;
    say(`join: loaded ${n0(load.loaded)} keys in ${formatDuration(load.seconds)} (${n0(load.rate)}/s)`);
    if (!load.finished) notes.push(`join: loading stopped at its time budget after ${n0(load.loaded)} of ${n0(options.keys)} keys.`);
    await cluster.waitReady(60_000);
  }
  const leader = await waitForLeader(cluster, 30_000);
  const originals = cluster.members.slice();
  // budget: how long n4 may take to catch up while wrk writes; quiet: how long it then gets with
  // the writes stopped, if it had not.
  const seconds = options.quick ? { baseline: 5, removal: 9, budget: 120, quiet: 60 } : { baseline: 20, removal: 30, budget: 300, quiet: 300 };
  const out = { keysHeld, reusedMillion: reused, connections, writeKeys: options.keySpace, leader: leader.name, sampleMs: 500, events: {} };
  const tStart = performance.now();
  const at = () => (performance.now() - tStart) / 1000;
  const wrk = (secs, onSpawn) =>
    runWrk({ repo: ctx.repo, url: leader.clientUrl, mode: 'flotilla-put', connections, seconds: secs, keys: options.keySpace, onSpawn });

  // The sampler: the leader's commit index (the write rate), and the joiner's view.
  const timeline = [];
  let joiner = null;
  let joinT = NaN;
  let sampling = true;
  let current = leader;
  const ev = out.events;
  let prevCommit = null;
  const sampler = (async () => {
    for (let i = 0; sampling && i < 1_000_000; i++) {
      const tick = performance.now();
      let ls = await cluster.status(current);
      if (!ls || ls.role !== 'leader') {
        const l = await findLeader(cluster);
        if (l && l !== current) {
          notes.push(`join: leadership moved from ${current.name} to ${l.name} at ${at().toFixed(1)} s (wrk kept writing to ${leader.name}).`);
          current = l;
          ls = await cluster.status(current);
        }
      }
      const js = joiner?.child ? await cluster.status(joiner) : null;
      const view = joiner ? await cluster.clusterMembers(current) : null;
      const t = at();
      const mine = view?.find((x) => x.name === joiner.name);
      timeline.push([+t.toFixed(2), ls?.commitIndex ?? null, js?.appliedIndex ?? null]);
      if (joiner) {
        const since = +(t - joinT).toFixed(2);
        if (js && ev.listening === undefined) ev.listening = since;
        if (mine && ev.learner === undefined) ev.learner = since;
        if (mine?.voter && ev.voter === undefined) ev.voter = since;
        // Caught up, under a steady stream of writes: it has applied everything the leader had
        // committed one sample (half a second) earlier. (Strictly: at least the commit index the
        // leader reported just before this member's own status.)
        if (js && prevCommit !== null && js.appliedIndex >= prevCommit && ev.caughtUp === undefined) ev.caughtUp = since;
        if (js && ls && js.appliedIndex >= ls.commitIndex && ev.caughtUpStrict === undefined) ev.caughtUpStrict = since;
      }
      if (ls) prevCommit = ls.commitIndex;
      await sleep(Math.max(0, out.sampleMs - (performance.now() - tick)));
    }
  })();

  try {
    say(`join: baseline, put, ${connections} connections on ${leader.name} for ${seconds.baseline} s ...`);
    const baseline = await wrk(seconds.baseline);
    out.baseline = { ...wrkFigures(baseline), from: 0, to: at() };
    say(`join: baseline: ${describe(baseline)}`);

    // The fourth member joins while wrk writes.
    let wrkChild = null;
    const duringFrom = at();
    const during = wrk(seconds.budget, (c) => (wrkChild = c));
    await sleep(300); // wrk is connected and writing
    const joinerLogAt = 0;
    const leaderLogAt = fileSize(leader.logFile);
    const spawnedAt = Date.now();
    joinT = at();
    joiner = await cluster.spawnJoiner('n4', leader.clientUrl);
    out.joiner = { name: joiner.name, command: `node bin/flotilla.js serve --name n4 --data-dir DIR --listen-client-url ${joiner.clientUrl} --listen-peer-url ${joiner.peerUrl} --join ${leader.clientUrl}` };
    say(`join: started n4 with --join ${leader.clientUrl} (fresh data dir) while wrk writes; waiting until it is a voter and caught up ...`);
    let lastSay = at();
    const deadline = joinT + seconds.budget - 10;
    while (!(ev.voter !== undefined && ev.caughtUp !== undefined) && at() < deadline) {
      if (joiner.child.exitCode !== null || joiner.child.signalCode !== null) break;
      await sleep(250);
      if (at() - lastSay >= 10) {
        lastSay = at();
        const last = timeline.at(-1);
        say(`  ${(at() - joinT).toFixed(0)} s: leader commit ${n0(last?.[1])}, n4 applied ${n0(last?.[2])}; events so far ${JSON.stringify(ev)}`);
      }
    }
    wrkChild?.kill('SIGINT');
    const d = await during;
    // Its memory holding the keys, as the founding members' is taken: before anything scans them.
    if (joiner.child.exitCode === null && joiner.child.signalCode === null) out.rssJoinerCaughtUp = memoryOf(joiner.child.pid);
    out.during = { ...wrkFigures(d), from: duringFrom, to: at() };
    const ready = () => ev.voter !== undefined && ev.caughtUp !== undefined;
    const gone = () => joiner.child.exitCode !== null || joiner.child.signalCode !== null;
    out.caughtUpUnderWrites = ready();
    out.joinSeconds = ready() ? Math.max(ev.voter, ev.caughtUp) : null;
    say(`join: during the catch-up: ${describe(d)}; events (s after the start of n4) ${JSON.stringify(ev)}`);
    if (!ready() && !gone()) {
      // It did not make it while the writes went on: does it once they stop?
      out.writesStoppedAt = +(at() - joinT).toFixed(2);
      notes.push(`join: n4 was not a caught-up voter ${out.writesStoppedAt.toFixed(0)} s after it started, with writes going on (events: ${JSON.stringify(ev)}); the writes were stopped to see whether it then catches up.`);
      say(`join: n4 is not a caught-up voter after ${out.writesStoppedAt.toFixed(0)} s of writes; stopping the writes for up to ${seconds.quiet} s ...`);
      const quietEnd = at() + seconds.quiet;
      while (!ready() && !gone() && at() < quietEnd) await sleep(250);
      out.afterWritesStopped = ready() ? { voter: +(ev.voter - out.writesStoppedAt).toFixed(2), caughtUp: +(ev.caughtUp - out.writesStoppedAt).toFixed(2) } : null;
      say(`join: with the writes stopped: ${ready() ? `voter and caught up ${Math.max(ev.voter, ev.caughtUp).toFixed(1)} s after n4 started` : `still not, after ${seconds.quiet} s`}; events ${JSON.stringify(ev)}`);
    }
    const exited = gone();
    // The snapshots the joiner got, from its log and the leader's.
    const installed = logLinesSince(joiner.logFile, joinerLogAt).filter((l) => l.msg === 'installed a snapshot');
    out.snapshotInstalls = installed.map((l) => ({ index: l.index, at: (l.time - spawnedAt) / 1000 }));
    out.viaSnapshot = installed.length > 0;
    const leaderLines = logLinesSince(leader.logFile, leaderLogAt);
    out.leaderSnapshotSends = leaderLines.filter((l) => l.msg === 'snapshot installed by follower' && l.peer === joiner.name).map((l) => ({ index: l.index, ms: l.ms }));
    out.snapshotFailures = leaderLines.filter((l) => l.msg === 'snapshot to follower failed' && l.peer === joiner.name).map((l) => l.err);
    const promote = leaderLines.find((l) => l.msg === 'promoting caught-up learner to voter' && l.peer === joiner.name);
    if (promote) out.events.promotedLog = +((promote.time - spawnedAt) / 1000).toFixed(2);
    say(`join: n4 installed ${installed.length} snapshot${installed.length === 1 ? '' : 's'}${installed.length ? ` (at indexes ${installed.map((l) => n0(l.index)).join(', ')})` : ''}`);
    if (exited) throw new Error(`n4 exited while joining; see ${joiner.logFile}`);
    if (ev.voter === undefined) throw new Error(`n4 never became a voter (events ${JSON.stringify(ev)}); see ${joiner.logFile}`);

    // Remove an original follower while writes go on.
    const victim = originals.find((m) => m !== current && m !== leader && m.child);
    say(`join: removing the original member ${victim.name} (DELETE /v1/cluster/members/${victim.name}) during ${seconds.removal} s of writes ...`);
    const removalFrom = at();
    const removalRun = wrk(seconds.removal);
    await sleep((seconds.removal / 3) * 1000);
    const delT = at();
    const t1 = performance.now();
    const del = await httpFollow('DELETE', `${current.clientUrl}/v1/cluster/members/${victim.name}`, { timeoutMs: 10_000 });
    out.removal = { member: victim.name, status: del.status, answer: del.body.slice(0, 200), ms: performance.now() - t1, at: +(delT - removalFrom).toFixed(2) };
    const view = await cluster.clusterMembers(current);
    out.removal.membersAfter = view?.map((m) => ({ name: m.name, voter: m.voter })) ?? null;
    await cluster.stopMember(victim);
    cluster.forget(victim);
    const r = await removalRun;
    out.removal.wrk = { ...wrkFigures(r), from: removalFrom, to: at() };
    say(`join: DELETE ${victim.name} answered ${del.status} in ${s2(out.removal.ms)}; members now ${JSON.stringify(out.removal.membersAfter)}; writes during the removal run: ${describe(r)}`);
    if (del.status !== 200) notes.push(`join: DELETE /v1/cluster/members/${victim.name} answered ${del.status}: ${del.body.slice(0, 200)}`);
  } finally {
    sampling = false;
    await sampler;
  }
  out.timeline = timeline;
  // Writes never stopped: the longest stretch without the commit index moving while wrk ran.
  out.longestStallS = Math.max(
    longestStall(timeline, out.baseline?.from ?? 0, out.during?.to ?? 0),
    out.removal?.wrk ? longestStall(timeline, out.removal.wrk.from, out.removal.wrk.to) : 0,
  );

  // The joiner holds exactly the leader's data: stop writing, let it apply, hash both.
  const lead = (await findLeader(cluster)) ?? current;
  try {
    const target = (await cluster.status(lead))?.commitIndex;
    await waitStatus(cluster, joiner, (s) => s.appliedIndex >= target, 120_000);
    say(`join: hashing the whole key space on ${lead.name} and n4 (${n0(keysHeld)} + keys) ...`);
    const [a, b] = await Promise.all([stateHash(lead.clientUrl, { deadlineMs: 420_000 }), stateHash(joiner.clientUrl, { deadlineMs: 420_000 })]);
    out.hash = { leader: lead.name, leaderKeys: a.keys, leaderHash: a.hash, joinerKeys: b.keys, joinerHash: b.hash, identical: a.hash === b.hash && a.keys === b.keys, ms: Math.max(a.ms, b.ms) };
    say(`join: ${lead.name} ${n0(a.keys)} keys ${a.hash.slice(0, 16)}…, n4 ${n0(b.keys)} keys ${b.hash.slice(0, 16)}… — ${out.hash.identical ? 'IDENTICAL' : 'DIFFERENT'}`);
    if (!out.hash.identical) notes.push(`join: n4's data DIFFERS from the leader's after joining (${b.keys} keys ${b.hash} against ${a.keys} keys ${a.hash}).`);
  } catch (err) {
    out.hash = { error: err instanceof Error ? err.message : String(err) };
    notes.push(`join: could not compare n4's data with the leader's: ${out.hash.error}`);
  }
  out.rssJoiner = memoryOf(joiner.child.pid);
  // The scans of the whole key space grow a member's heap and map LevelDB's files: the leader, which
  // served the same scan, for comparison.
  if (lead.child) out.rssLeaderEnd = { name: lead.name, ...memoryOf(lead.child.pid) };
  ctx.results.join = out;
  await cluster.stop();
  dropRunning(ctx, cluster);
}

/** Seconds of the longest stretch, within [from, to], over which the sampled commit index did not move. */
function longestStall(timeline, from, to) {
  let longest = 0;
  let lastMove = null;
  let lastCommit = null;
  for (const [t, commit] of timeline) {
    if (t < from || t > to || commit === null) continue;
    if (lastCommit === null || commit > lastCommit) {
      lastCommit = commit;
      lastMove = t;
    } else longest = Math.max(longest, t - lastMove);
  }
  return +longest.toFixed(2);
}

// ------------------------------------------------------------------ disk

async function dirBytes(dir) {
  // du -sb DIR/* would miss nothing that matters; -s on the dir and on its db/ (LevelDB) subdir.
  const r = await run('du', ['-sb', dir, `${dir}/db`]);
  const [total, db] = r.stdout.trim().split('\n').map((l) => Number(l.split(/\s+/)[0]));
  return { total, db };
}

/**
 * A long write run with the default compaction flags: wrk puts over a fixed key space on the
 * leader; each member's data-dir size (and RSS) sampled every few seconds.
 */
export async function diskPart(ctx) {
  const { options, notes, say } = ctx;
  const seconds = options.diskSeconds;
  const sampleS = options.quick ? 2 : 5;
  say(`disk: starting a fresh 3-member flotilla (default flags) for a ${formatDuration(seconds)} write run (put, 64 connections, ${n0(options.keySpace)} keys), sampling data dirs every ${sampleS} s ...`);
  const cluster = await FlotillaCluster.start({ size: 3, repo: ctx.build.dir });
  ctx.running.push(cluster);
  const leader = await cluster.leader();
  const members = cluster.members.slice();
  const applied0 = (await cluster.status(leader)).appliedIndex;
  const out = { seconds, sampleS, connections: 64, keySpace: options.keySpace, valueBytes: 100, members: members.map((m) => m.name), leader: leader.name, samples: [] };
  const t0 = performance.now();
  let sampling = true;
  let lastSay = 0;
  const sample = async () => {
    const t = (performance.now() - t0) / 1000;
    const sizes = await Promise.all(members.map((m) => dirBytes(m.dataDir)));
    const s = await cluster.status(leader);
    const row = {
      t: +t.toFixed(1),
      writes: s ? s.appliedIndex - applied0 : null,
      bytes: sizes.map((x) => x.total),
      db: sizes.map((x) => x.db),
      rss: members.map((m) => memoryOf(m.child?.pid).rss),
    };
    out.samples.push(row);
    return row;
  };
  const sampler = (async () => {
    for (let i = 0; sampling && i < 100_000; i++) {
      const tick = performance.now();
      const row = await sample();
      if (row.t - lastSay >= (options.quick ? 10 : 60)) {
        lastSay = row.t;
        say(`  ${formatDuration(row.t)}: ${n0(row.writes)} writes; data dirs ${row.bytes.map((b, k) => `${members[k].name} ${mibs(b)} MiB`).join(', ')}`);
      }
      await sleep(Math.max(0, sampleS * 1000 - (performance.now() - tick)));
    }
  })();
  let r;
  try {
    r = await runWrk({ repo: ctx.repo, url: leader.clientUrl, mode: 'flotilla-put', connections: 64, seconds, keys: options.keySpace });
  } finally {
    sampling = false;
    await sampler;
  }
  out.wrk = wrkFigures(r);
  out.writes = out.samples.at(-1)?.writes ?? null;
  await sleep(sampleS * 1000);
  const settled = await sample();
  settled.settled = true;
  const rev = await cluster.revision(leader);
  out.revision = rev;
  Object.assign(out, analyseDisk(out.samples.filter((x) => !x.settled), members.length));
  say(
    `disk: ${n0(out.writes)} writes in ${formatDuration(seconds)} (${describe(r)}); max data dir ${mibs(out.maxBytes)} MiB; ` +
      `max of the first half ${mibs(out.firstHalfMax)} MiB, second half ${mibs(out.secondHalfMax)} MiB (${out.growth.toFixed(2)}×) — ${out.bounded ? 'BOUNDED' : 'STILL GROWING'}`,
  );
  if (r.errors > 0) notes.push(`disk: wrk had ${r.errors} errors ${JSON.stringify(r.errorDetail)} during the write run.`);
  if (!out.bounded) notes.push(`disk: the data dirs were still growing at the end of the write run (second half max ${mibs(out.secondHalfMax)} MiB against ${mibs(out.firstHalfMax)} MiB in the first half; ${out.slopeMiBPerMin.toFixed(2)} MiB/min over the second half).`);
  ctx.results.disk = out;
  await cluster.stop();
  dropRunning(ctx, cluster);
}

/**
 * Bounded or still growing: the samples after a warm-up (the first tenth) are split into halves;
 * the run plateaus when the largest data dir of the second half is at most 1.25× that of the first
 * (LevelDB compactions make the size a sawtooth, so the maxima are compared, not the ends). The
 * least-squares slope of the largest member over the second half is reported beside it.
 */
export function analyseDisk(samples, count) {
  const largest = (s) => Math.max(...s.bytes.filter(Number.isFinite));
  const maxBytes = Math.max(...samples.map(largest));
  const perMember = Array.from({ length: count }, (_, k) => Math.max(...samples.map((s) => s.bytes[k]).filter(Number.isFinite)));
  const end = samples.at(-1)?.t ?? 0;
  const warm = samples.filter((s) => s.t >= end * 0.1);
  const mid = end * 0.1 + (end * 0.9) / 2;
  const first = warm.filter((s) => s.t < mid);
  const second = warm.filter((s) => s.t >= mid);
  const firstHalfMax = first.length ? Math.max(...first.map(largest)) : NaN;
  const secondHalfMax = second.length ? Math.max(...second.map(largest)) : NaN;
  const growth = secondHalfMax / firstHalfMax;
  let slope = NaN;
  if (second.length >= 2) {
    const xs = second.map((s) => s.t / 60);
    const ys = second.map((s) => largest(s) / 1048576);
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
    const my = ys.reduce((a, b) => a + b, 0) / ys.length;
    const num = xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0);
    const den = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
    slope = den > 0 ? num / den : NaN;
  }
  return { maxBytes, maxPerMember: perMember, firstHalfMax, secondHalfMax, growth, slopeMiBPerMin: slope, bounded: Number.isFinite(growth) && growth <= 1.25 };
}
