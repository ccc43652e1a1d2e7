// The page sections and the chart for the rejoin, join and disk parts (issue 6).
import { COLORS, renderChart } from './chart.mjs';

const n0 = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const ms = (v) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) : '—');
const sec = (msv) => (Number.isFinite(msv) ? `${(msv / 1000).toFixed(1)} s` : '—');
const s1 = (s) => (Number.isFinite(s) ? `${s.toFixed(1)} s` : '—');
const mib = (b) => (Number.isFinite(b) ? `${(b / 1048576).toFixed(1)} MiB` : '—');
const verdict = (ok) => `**${ok ? 'met' : 'not met'}**`;

function mdTable(header, rows, alignLeft = [0]) {
  const align = header.map((_, i) => (alignLeft.includes(i) ? '---' : '---:'));
  return [`| ${header.join(' | ')} |`, `|${align.join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function duration(s) {
  if (s < 60) return `${Math.round(s)} s`;
  return Math.round(s % 60) === 0 ? `${Math.floor(s / 60)} min` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/** Did the rejoin part meet issue 6's goal: by snapshot, identical data, serving afterwards? */
export function rejoinMet(r) {
  return r.identical && r.viaSnapshot && r.servesAfter && r.load.loaded >= r.writes;
}

/** Did the join part meet its goal: caught up, voter, removal done, writes never stopped? */
export function joinMet(j) {
  const errors = (j.during?.errors ?? 1) + (j.removal?.wrk?.errors ?? 1) + (j.baseline?.errors ?? 0);
  return j.joinSeconds !== null && j.removal?.status === 200 && errors === 0 && j.longestStallS <= 2 && j.hash?.identical === true;
}

/** What happened when n4 did not catch up while the writes went on. */
function stuckStory(j) {
  const n = j.snapshotInstalls?.length ?? 0;
  const sends = (j.leaderSnapshotSends ?? []).map((x) => x.ms).filter(Number.isFinite);
  const avgSend = sends.length ? sends.reduce((a, b) => a + b, 0) / sends.length : NaN;
  const installedBefore = (j.snapshotInstalls ?? []).filter((x) => x.at <= j.writesStoppedAt);
  const perSnapshot = n > 1 ? (installedBefore.at(-1).at - installedBefore[0].at) / Math.max(1, installedBefore.length - 1) : NaN;
  const lines = [
    `- **n4 did not catch up while the writes went on.** In the ${s1(j.writesStoppedAt)} it was given, it installed ${installedBefore.length} snapshot${installedBefore.length === 1 ? '' : 's'} ` +
      `of the leader’s state, one after another (at indexes ${installedBefore.map((x) => n0(x.index)).join(', ')}` +
      (Number.isFinite(perSnapshot) ? `; one every ${s1(perSnapshot)}` : '') +
      (Number.isFinite(avgSend) ? `, each taking the leader ${sec(avgSend)} to send` : '') +
      `), and was never promoted: by the time a snapshot was installed, the leader, taking ${n0(j.during?.rps)} writes/s, had compacted its log ` +
      `past the snapshot’s index (it keeps 5,000 entries after a compaction: ${Number.isFinite(5000 / j.during?.rps) ? `${(5000 / j.during.rps).toFixed(1)} s` : 'a few seconds'} of writes at that rate), so the next append needed yet another snapshot.`,
  ];
  if (j.afterWritesStopped) {
    const later = (j.snapshotInstalls ?? []).filter((x) => x.at > j.writesStoppedAt);
    lines.push(`- **Once the writes stopped**, n4 was a voter ${s1(j.afterWritesStopped.voter)} later and caught up ${s1(j.afterWritesStopped.caughtUp)} later ` +
      `(${s1(Math.max(j.events.voter, j.events.caughtUp))} after it started)` +
      (later.length ? `, after ${later.length} more snapshot${later.length === 1 ? '' : 's'} (at ${later.map((x) => n0(x.index)).join(', ')}): the one in flight when the writes stopped was already stale too.` : '.'));
  } else lines.push('- Even with the writes stopped, n4 did not become a caught-up voter (see the notes).');
  return lines;
}

export function renderRejoin(r, stampLine) {
  const out = [
    '## A member rejoins by snapshot after missing many writes',
    '',
    ...stampLine,
    `Issue 6: a member stopped while ${n0(r.writes)} writes land rejoins by snapshot and ends up with exactly the leader’s data. ` +
      `A fresh 3-member flotilla (${r.flags.length ? `\`${r.flags.join(' ')}\`` : 'default flags: the log is compacted every 10,000 entries, 5,000 kept'}); ` +
      `follower ${r.member} killed with ${r.stopSignal}; then ${n0(r.writes)} unique keys of 100 bytes written on the leader ${r.leader} by wrk ` +
      `(flotilla-load mode, ${r.connections} connections), and 100 overwrites and deletes of them; then ${r.member} started again with its old data dir. ` +
      'Caught up = its `/v1/status` `appliedIndex` reaches the leader’s `commitIndex` taken after the last write. ' +
      'How it caught up is read from its log (`installed a snapshot`) and the leader’s (`snapshot installed by follower`). ' +
      'Then every key, value and revision on each member, read from that member alone (`GET /v1/kv?prefix=&limit=1000&after=…&consistency=stale`, page by page), ' +
      'is hashed in key order (SHA-256, as `test/cluster/snapshot-catchup.test.ts` does).',
    '',
    mdTable(['', ''], [
      ['writes while it was down', `${n0(r.load.loaded)} committed in ${s1(r.load.seconds)} (${n0(r.load.rate)}/s, ${r.load.errors} errors), then ${r.edits} overwrites and deletes`],
      ['behind when restarted', `${n0(r.behind)} entries (it had applied ${n0(r.appliedAtStop)}; the leader’s commit index was ${n0(r.leaderCommit)})`],
      ['client port answering', sec(r.listenMs)],
      ['`/health` 200', sec(r.healthMs)],
      ['**caught up** (applied the leader’s commit index)', `**${sec(r.caughtUpMs)}** after the start`],
      [
        'by InstallSnapshot',
        r.viaSnapshot
          ? `yes: snapshot at index ${n0(r.snapshotIndex)} installed ${sec(r.snapshotInstalls.at(-1).atMs)} after the start` +
            (r.leaderSendMs?.length ? ` (the leader’s send took ${sec(r.leaderSendMs.at(-1))})` : '') +
            `, then ${n0(r.entriesAfterSnapshot)} log entries`
          : '**no** (it caught up from the log)',
      ],
      [`key space on the leader ${r.leader}`, `${n0(r.leaderHash.keys)} keys, sha256 \`${r.leaderHash.hash.slice(0, 16)}…\``],
      [`key space on ${r.member}`, `${n0(r.memberHash.keys)} keys, sha256 \`${r.memberHash.hash.slice(0, 16)}…\``],
      ['identical', r.identical ? '**yes**' : '**NO**'],
      ['serves afterwards', r.servesAfter ? 'yes (a write on the leader read back from it, linearizable)' : '**no**'],
    ], [0, 1]),
    '',
    `- **Goal** (rejoins by snapshot with exactly the leader’s data, key by key): ${verdict(rejoinMet(r))}.`,
    '',
  ];
  return out;
}

export function renderJoin(j, stampLine) {
  const e = j.events;
  const phases = [
    ['before: 3 members', j.baseline],
    [j.caughtUpUnderWrites === false ? `during n4’s join, until writes stopped (${s1(j.during?.seconds)}, not caught up)` : `during n4’s join and catch-up (${s1(j.during?.seconds)})`, j.during],
    [`around the removal of ${j.removal?.member ?? '—'} (DELETE at ${s1(j.removal?.at)})`, j.removal?.wrk],
  ].filter(([, r]) => r);
  const errs = (r) => (r.errors > 0 ? `${n0(r.errors)} ${JSON.stringify(r.errorDetail)}` : '0');
  const snap = j.viaSnapshot
    ? `InstallSnapshot at index ${n0(j.snapshotInstalls.at(-1).index)}, installed at ${s1(j.snapshotInstalls.at(-1).at)}` +
      (j.leaderSnapshotSends?.length ? ` (the leader’s send took ${sec(j.leaderSnapshotSends.at(-1).ms)})` : '')
    : 'no snapshot (from the log alone)';
  const out = [
    `## A fourth member joins a cluster holding ${n0(j.keysHeld)} keys`,
    '',
    ...stampLine,
    `Issue 6: on a cluster holding ${n0(j.keysHeld)} keys${j.reusedMillion ? ' (the cluster of the “Holding … keys” section: the keys are loaded once for both)' : ' (loaded for this part by wrk, 256 connections)'}, ` +
      `a fourth member n4 is started with a fresh data dir and \`serve --join ${'<leader client URL>'}\`, catches up and becomes a voter; ` +
      'then an original member is removed; the cluster keeps serving writes throughout. ' +
      `wrk writes on the leader ${j.leader} all along (put, ${j.connections} connections, 100-byte values, random keys out of ${n0(j.writeKeys)}): ` +
      'a baseline run first, then one run from the start of n4 until it is a voter and caught up (it has applied everything the leader had committed ' +
      'half a second earlier: under a steady stream of writes a member is always a few entries behind), ' +
      `then one during which an original follower is removed with \`DELETE /v1/cluster/members/NAME\`. The leader’s commit index is sampled every ${j.sampleMs} ms.`,
    '',
    mdTable(
      ['phase', 'req/s', 'p50 / p99 ms', 'max ms', 'errors'],
      phases.map(([label, r]) => [label, n0(r.rps), `${ms(r.p50Ms)} / ${ms(r.p99Ms)}`, ms(r.maxMs), errs(r)]),
    ),
    '',
    ...(j.caughtUpUnderWrites === false
      ? stuckStory(j)
      : [
          `- **Time for n4 to catch up and become a voter: ${s1(j.joinSeconds)}** from its start. Along the way (seconds after it started): ` +
            `client port answering ${s1(e.listening)}, listed as a learner ${s1(e.learner)}, ${snap}, ` +
            `promoted to voter ${s1(e.voter)}, caught up (within half a second of the leader) ${s1(e.caughtUp)}` +
            (Number.isFinite(e.caughtUpStrict) ? `, applied the very commit index the leader had just reported ${s1(e.caughtUpStrict)}.` : '.'),
        ]),
    `- **Write throughput during ${j.caughtUpUnderWrites === false ? 'n4’s attempts to catch up' : 'the catch-up'}**: ${n0(j.during?.rps)} req/s (p99 ${ms(j.during?.p99Ms)} ms) against ${n0(j.baseline?.rps)} req/s ` +
      `(p99 ${ms(j.baseline?.p99Ms)} ms) before it: ${j.baseline?.rps > 0 ? `${((j.during.rps / j.baseline.rps) * 100).toFixed(0)} %` : '—'} of the baseline.`,
    j.removal
      ? `- **Removal of ${j.removal.member}**: answered ${j.removal.status} in ${ms(j.removal.ms)} ms; members afterwards ` +
        `${(j.removal.membersAfter ?? []).map((m) => `${m.name}${m.voter ? '' : ' (learner)'}`).join(', ')}; ` +
        `writes around it ${n0(j.removal.wrk.rps)} req/s (p99 ${ms(j.removal.wrk.p99Ms)} ms).`
      : '- The removal did not happen (see the failures below).',
    `- **Writes never stalled** while wrk ran${j.caughtUpUnderWrites === false ? ' (the pause above was the harness’s own)' : ''}: the longest stretch over which the leader’s commit index did not move was ${s1(j.longestStallS)} (sampled every ${j.sampleMs} ms); ` +
      `wrk errors over the three runs: ${n0((j.baseline?.errors ?? 0) + (j.during?.errors ?? 0) + (j.removal?.wrk?.errors ?? 0))}.`,
    j.hash?.identical !== undefined
      ? `- n4’s key space afterwards, hashed as in the rejoin section: ${n0(j.hash.joinerKeys)} keys \`${j.hash.joinerHash.slice(0, 16)}…\` against the leader’s ` +
        `${n0(j.hash.leaderKeys)} keys \`${j.hash.leaderHash.slice(0, 16)}…\`: **${j.hash.identical ? 'identical' : 'DIFFERENT'}**.`
      : `- n4’s key space could not be compared: ${j.hash?.error ?? 'not done'}.`,
    j.rssJoinerCaughtUp
      ? `- RSS of n4 as the write run it caught up under ended (before anything scanned the keys): ${mib(j.rssJoinerCaughtUp.rss)}; ` +
        `at the end, after serving the hash’s scan of the whole key space: ${mib(j.rssJoiner?.rss)}` +
        (j.rssLeaderEnd ? ` (the leader ${j.rssLeaderEnd.name}, which served the same scan: ${mib(j.rssLeaderEnd.rss)})` : '') +
        '. Unlike the founding members’ figures, taken at rest, these come straight after heavy allocation: V8 lets its heap grow to several times ' +
        'what is live before it collects, and a scan also maps LevelDB’s table files into the process.'
      : `- RSS of n4 at the end: ${mib(j.rssJoiner?.rss)}.`,
    `- **Goal** (n4 catches up and becomes a voter while writes go on, an original member is removed, writes go on throughout, n4 holds the leader’s data): ${verdict(joinMet(j))}.`,
    '',
    '![write rate on the leader while n4 joins and an original member is removed](bench-durability.svg)',
    '',
  ];
  return out;
}

/** About a dozen rows out of the samples, evenly spaced in time, plus the one with the max. */
function pickRows(samples, want = 12) {
  const end = samples.at(-1)?.t ?? 0;
  const rows = [];
  for (let k = 0; k <= want; k++) {
    const t = (end * k) / want;
    const s = samples.reduce((best, x) => (Math.abs(x.t - t) < Math.abs(best.t - t) ? x : best), samples[0]);
    if (!rows.includes(s)) rows.push(s);
  }
  return rows;
}

export function renderDisk(d, stampLine) {
  const live = d.samples.filter((s) => !s.settled);
  const settled = d.samples.find((s) => s.settled);
  const when = (t) => (d.seconds < 180 ? `${Math.round(t)} s` : `${(t / 60).toFixed(1)} min`);
  const rows = pickRows(live).map((s) => [when(s.t), n0(s.writes), ...s.bytes.map(mib), ...s.rss.map(mib)]);
  if (settled) rows.push([`${when(settled.t)} (${d.sampleS} s after the writes)`, n0(settled.writes), ...settled.bytes.map(mib), ...settled.rss.map(mib)]);
  return [
    '## Disk use over a long write run, compaction on',
    '',
    ...stampLine,
    `Issue 6: disk use stays bounded over a long write run with compaction on. A fresh 3-member flotilla with default flags ` +
      `(log compacted every 10,000 entries, 5,000 kept); wrk puts on the leader for ${duration(d.seconds)} (${d.connections} connections, ` +
      `100-byte values, random keys out of ${n0(d.keySpace)}, so the live data stays small and everything else is log, snapshots and LevelDB garbage); ` +
      `each member’s data dir measured with \`du -sb\` every ${d.sampleS} s. The writes went at ${n0(d.wrk.rps)} req/s ` +
      `(p99 ${ms(d.wrk.p99Ms)} ms, ${d.wrk.errors} errors): ${n0(d.writes)} in all.`,
    '',
    mdTable(['time', 'writes so far', ...d.members.map((m) => `${m} data dir`), ...d.members.map((m) => `${m} RSS`)], rows),
    '',
    `- **Largest data dir**: ${mib(d.maxBytes)} (per member: ${d.maxPerMember.map((b, k) => `${d.members[k]} ${mib(b)}`).join(', ')}).`,
    `- **Plateau**: after the first tenth of the run, the largest data dir of the second half is ${mib(d.secondHalfMax)} against ` +
      `${mib(d.firstHalfMax)} in the first (${d.growth.toFixed(2)}×; the test is ≤ 1.25×, since LevelDB compactions make a sawtooth); ` +
      `least-squares slope over the second half ${d.slopeMiBPerMin.toFixed(2)} MiB/min.`,
    `- **Goal** (disk use stays bounded): ${verdict(d.bounded)}.`,
    '',
    '![data dir size of each member over the write run](bench-durability.svg)',
    '',
  ];
}

const MEMBER_COLORS = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#6b7280'];

/** docs/bench-durability.svg: disk use over the write run, and the write rate during the join. */
export function renderDurabilitySvg(results) {
  const d = results.disk;
  const j = results.join;
  const panels = [];
  if (d) {
    const live = d.samples.filter((s) => !s.settled);
    panels.push({
      kind: 'xy',
      title: `data dir per member, ${duration(d.seconds)} of writes`,
      xLabel: 'minutes',
      yLabel: 'MiB on disk',
      series: d.members.map((name, k) => ({
        name,
        color: MEMBER_COLORS[k % MEMBER_COLORS.length],
        points: live.map((s) => [s.t / 60, s.bytes[k] / 1048576]),
      })),
    });
  } else panels.push({ kind: 'xy', title: 'data dir per member (not measured)', xLabel: 'minutes', yLabel: 'MiB', series: [] });
  if (j?.timeline?.length) {
    const t0 = j.timeline.find((x) => x[1] !== null)?.[0] ?? 0;
    const pts = [];
    // The commit rate over 1-second windows (the samples are every half second).
    let prev = null;
    for (const [t, c] of j.timeline) {
      if (c === null) continue;
      if (prev && t - prev[0] >= 0.95) {
        pts.push([(prev[0] + t) / 2 - t0, (c - prev[1]) / (t - prev[0])]);
        prev = [t, c];
      } else if (!prev) prev = [t, c];
    }
    const joinT = j.during ? j.during.from + 0.3 - t0 : null;
    const markers = [];
    if (joinT !== null) {
      markers.push({ x: joinT, label: 'n4 starts' });
      const snaps = j.snapshotInstalls ?? [];
      snaps.forEach((x, k) => markers.push({ x: joinT + x.at, label: k === 0 ? (snaps.length > 1 ? `${snaps.length} snapshots in` : 'snapshot in') : '', color: '#9ca3af' }));
      if (Number.isFinite(j.writesStoppedAt)) markers.push({ x: joinT + j.writesStoppedAt, label: 'writes stopped' });
      if (Number.isFinite(j.events.voter)) markers.push({ x: joinT + j.events.voter, label: 'voter' });
    }
    if (j.removal?.wrk) markers.push({ x: j.removal.wrk.from + j.removal.at - t0, label: `${j.removal.member} removed` });
    panels.push({
      kind: 'xy',
      title: `write rate while n4 joins (${n0(j.keysHeld)} keys held)`,
      xLabel: 'seconds',
      yLabel: 'commits/s on the leader',
      series: [{ name: 'leader commit rate', color: COLORS.flotilla, points: pts }],
      markers,
    });
  } else panels.push({ kind: 'xy', title: 'write rate while a member joins (not measured)', xLabel: 'seconds', yLabel: 'commits/s', series: [] });
  const stamp = (p) => results.parts?.[p]?.startedAt?.slice(0, 10);
  const dates = [...new Set(['disk', 'join'].map(stamp).filter(Boolean))].join(', ');
  const m = results.machine;
  return renderChart({
    title: 'flotilla over time: disk use with compaction on, and writes while a member joins',
    subtitle: `${dates || results.startedAt.slice(0, 10)} · ${m.cores} cores, ${m.model} · node ${results.versions.node}`,
    panels,
  });
}

/** Lines for the plain-text summary printed at the end of a run. */
export function durabilitySummary(results) {
  const out = [];
  const r = results.rejoin;
  if (r) out.push(`rejoin after ${n0(r.load.loaded)} writes: caught up in ${sec(r.caughtUpMs)}, ${r.viaSnapshot ? 'by snapshot' : 'WITHOUT a snapshot'}, ${n0(r.memberHash.keys)} keys, data ${r.identical ? 'identical' : 'DIFFERENT'} (${r.memberHash.hash.slice(0, 16)}…)`);
  const j = results.join;
  if (j) out.push(`join with ${n0(j.keysHeld)} keys: ${j.caughtUpUnderWrites === false ? `NOT caught up while writing (${j.snapshotInstalls.length} snapshots in ${s1(j.writesStoppedAt)}); ${j.afterWritesStopped ? `voter ${s1(j.afterWritesStopped.voter)} after the writes stopped` : 'not even after the writes stopped'}` : `voter and caught up after ${s1(j.joinSeconds)}`}; writes ${n0(j.baseline?.rps)} req/s before, ${n0(j.during?.rps)} during (p99 ${ms(j.baseline?.p99Ms)} → ${ms(j.during?.p99Ms)} ms); removal ${j.removal?.status ?? '—'}; longest stall ${s1(j.longestStallS)}`);
  const d = results.disk;
  if (d) out.push(`disk over ${duration(d.seconds)} (${n0(d.writes)} writes): max data dir ${mib(d.maxBytes)}, second half / first half ${d.growth.toFixed(2)}× — ${d.bounded ? 'bounded' : 'STILL GROWING'}`);
  return out;
}
