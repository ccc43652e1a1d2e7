// Turning a run's results into docs/benchmarks.md (tables, goals, notes) and the SVG chart.
import { COLORS, renderChart } from './chart.mjs';
import { PARTS } from './merge.mjs';
import { durabilitySummary, renderDisk, renderJoin, renderRejoin } from './report-durability.mjs';

export function sizeLabel(bytes) {
  if (bytes >= 1048576) return `${bytes / 1048576} MiB`;
  if (bytes >= 1024) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

const n0 = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const ms = (v) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) : '—');
const mib = (b) => (Number.isFinite(b) ? `${(b / 1048576).toFixed(0)} MiB` : '—');
const sec = (msv) => (Number.isFinite(msv) ? `${(msv / 1000).toFixed(2)} s` : '—');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');

/** Did flotilla meet the issue's goal at this point? ≥ 1.0× etcd's throughput with p99 no worse. */
function verdict(p) {
  const f = p.flotilla;
  if (!f) return '—';
  if (p.goalRps) return f.rps >= p.goalRps ? `met (≥ ${n0(p.goalRps)}/s)` : `not met (goal ${n0(p.goalRps)}/s)`;
  const e = p.etcd;
  if (!e) return '—';
  const tp = f.rps >= e.rps;
  const lat = f.p99Ms <= e.p99Ms;
  if (tp && lat) return f.rps >= 1.5 * e.rps ? 'met, ≥ 1.5×' : 'met';
  const missed = `not met (${[tp ? null : 'throughput', lat ? null : 'p99'].filter(Boolean).join(', ')})`;
  // wrk's p99 decides; when the probe beside it (lib/probe.mjs), whose connections are open before
  // the run, saw it the other way, say so (the first requests of wrk's new connections, see below).
  if (tp && !lat && f.probe && e.probe && f.probe.p99Ms <= e.probe.p99Ms) return `${missed}; met by the probe's p99`;
  return missed;
}

/** The lowest and highest p99 over a summary's rounds, as "a–b". */
function p99Range(s) {
  const p99s = s.rounds.map((r) => r.p99Ms);
  return `${ms(Math.min(...p99s))}–${ms(Math.max(...p99s))}`;
}

function spread(s) {
  if (!s || s.rounds.length < 2) return '';
  return ` (${n0(s.rpsMin)}–${n0(s.rpsMax)})`;
}

function mainRows(results) {
  const rows = (results.points ?? []).map((p) => ({
    label: p.label,
    f: p.flotilla,
    e: p.etcd,
    ratio: ratio(p.flotilla?.rps, p.etcd?.rps),
    goal: verdict(p),
  }));
  if (results.bare) rows.push({ label: `${results.bare.label} (reference)`, f: results.bare, e: null, ratio: '—', goal: '(the Node ceiling)' });
  if (results.bareGet) rows.push({ label: `${results.bareGet.label} (reference)`, f: results.bareGet, e: null, ratio: '—', goal: '(node:http alone, for a read)' });
  if (results.bareGet1) rows.push({ label: `${results.bareGet1.label} (reference)`, f: results.bareGet1, e: null, ratio: '—', goal: '(the p99 floor at one connection)' });
  return rows;
}

/** The plain-text table printed at the end of a run. */
function textTable(results) {
  const rows = mainRows(results);
  const header = ['point', 'flotilla req/s', 'p50/p99 ms', 'etcd req/s', 'p50/p99 ms', 'ratio', 'goal'];
  const body = rows.map((r) => [
    r.label,
    n0(r.f?.rps),
    r.f ? `${ms(r.f.p50Ms)} / ${ms(r.f.p99Ms)}` : '—',
    n0(r.e?.rps),
    r.e ? `${ms(r.e.p50Ms)} / ${ms(r.e.p99Ms)}` : '—',
    r.ratio,
    r.goal,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = body.length > 0 ? [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)] : [];
  const m = results.million;
  if (m) {
    const maxRss = Math.max(...m.rssLoaded.map((r) => r.rss));
    out.push('');
    out.push(`holding ${n0(m.loaded)} keys: RSS per member ≤ ${mib(maxRss)} (goal ≤ 256 MiB); restart to serving ${sec(m.restart.healthMs)} (goal ≤ 5 s)`);
  }
  if (results.five?.flotilla) {
    out.push(`5 members, put, 64 connections: flotilla ${n0(results.five.flotilla.rps)} req/s, etcd ${n0(results.five.etcd?.rps)} req/s (${ratio(results.five.flotilla.rps, results.five.etcd?.rps)})`);
  }
  out.push(...durabilitySummary(results));
  return out.join('\n');
}

/** Numbers right-aligned; the first column (and a trailing "goal" column) left-aligned. */
function mdTable(header, rows) {
  const align = header.map((h, i) => (i === 0 || h === 'goal' ? '---' : '---:'));
  return [`| ${header.join(' | ')} |`, `|${align.join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function duration(s) {
  return s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`;
}

const utc = (iso) => iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
const PART_TITLES = {
  main: 'throughput and latency', sizes: 'latency by value size', five: 'five members', million: 'holding many keys',
  join: 'a fourth member joins', rejoin: 'rejoin by snapshot', disk: 'disk use over a long run', raft: 'Raft core micro-benchmark',
};

/**
 * The line under a section saying when (and, for figures kept from an earlier run, by which
 * command and build) it was measured, with the machine's load average: [] for pages without
 * per-part stamps.
 */
function stampLine(results, part) {
  const st = results.parts?.[part];
  if (!st) return [];
  const load = st.loadStart ? `load average ${st.loadStart.join(', ')} at its start${st.loadEnd ? `, ${st.loadEnd.join(', ')} at its end` : ''}` : '';
  const mode = st.mode === 'quick' ? ' (**--quick** smoke run, not for comparison)' : '';
  if (st.runStartedAt === results.startedAt) return [`_Measured ${utc(st.startedAt)}${mode}${load ? `; ${load}` : ''}._`, ''];
  return [
    `_Kept from an earlier run: measured ${utc(st.startedAt)}${mode} by \`${st.command}\`${st.build ? ` on flotilla ${st.build}` : ''}${load ? `; ${load}` : ''}._`,
    '',
  ];
}

export function renderMarkdown(results, { command, chartFile }) {
  const m = results.machine;
  const v = results.versions;
  const date = results.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  const o = results.options;
  const lines = [];
  const push = (...l) => lines.push(...l);

  const partRuns = PARTS.filter((p) => results.parts?.[p]).map((p) => ({ part: p, st: results.parts[p] }));
  const mixed = partRuns.some((r) => r.st.runStartedAt !== results.startedAt);
  const quick = results.mode === 'quick' ? ' (a **--quick** smoke run: short, fewer points, not for comparison)' : '';
  push(
    '# Benchmarks',
    '',
    '<!-- Generated by test/bench/run-bench.mjs: rerun it rather than editing this page by hand. -->',
    '',
    `flotilla against etcd on the same machine, in the same run, loaded by the same generator; and flotilla alone over ` +
      `time: a member rejoining by snapshot, a member joining a loaded cluster, disk use over a long write run. ` +
      (mixed
        ? `A run with \`--only\` replaces only the sections it measures and keeps the others, each marked with the run it comes from ` +
          `(table below); the latest run was **${date}**${quick}:`
        : `This page is rewritten by every full run; the figures below are from the run of **${date}**${quick}.`),
    '',
    '```sh',
    command,
    '```',
    '',
    `That run took ${duration(results.elapsedSeconds)}. Quick smoke run (a few minutes, output to a temp dir): ` +
      '`node test/bench/run-bench.mjs --quick`. Build first (`npx tsc -p tsconfig.build.json`); `--help` lists the options.',
    '',
  );
  if (mixed) {
    // The runs the sections come from, latest first, named A, B, ...
    const runs = [...new Map(partRuns.map(({ st }) => [st.runStartedAt, st])).values()].sort((x, y) => (x.runStartedAt < y.runStartedAt ? 1 : -1));
    const name = (st) => String.fromCharCode(65 + runs.findIndex((r) => r.runStartedAt === st.runStartedAt));
    push(
      `| section | measured | load average at its start | run |`,
      `|---|---|---:|---|`,
      ...partRuns.map(({ part, st }) => `| ${PART_TITLES[part]} | ${utc(st.startedAt)}${st.mode === 'quick' ? ' (quick)' : ''} | ${st.loadStart?.join(', ') ?? '—'} | ${name(st)} |`),
      '',
      ...runs.map((r) => `- **${name(r)}**${r.runStartedAt === results.startedAt ? ' (this run)' : ''}: \`${r.command}\`${r.build ? ` — flotilla ${r.build}` : ''}`),
      '',
    );
  }
  push(
    '## Machine and versions',
    '',
    `| | |`,
    `|---|---|`,
    `| date | ${date}${mixed ? ' (the latest run; each section gives its own)' : ''} |`,
    `| CPU | ${m.cores} cores, ${m.model} |`,
    `| RAM | ${(m.ramBytes / 1024 ** 3).toFixed(1)} GiB |`,
    `| kernel | Linux ${m.kernel} |`,
    `| disk (data dirs) | ${m.disk} |`,
    `| load average (1, 5, 15 min) | ${m.loadStart.join(', ')} at the start; ${m.loadEnd?.join(', ') ?? '—'} at the end |`,
    `| Node.js | ${v.node} |`,
    `| flotilla | ${v.flotillaBuild}; Fastify ${v.fastify}, classic-level ${v.classicLevel} |`,
    `| etcd | ${v.etcd ? `${v.etcd} (Debian \`etcd-server\`), HTTP/JSON gateway, fsync on (its default)` : 'not measured'} |`,
    `| load generator | ${v.wrk} |`,
    '',
  );

  const mo = { ...o, ...Object.fromEntries(Object.entries(results.parts?.main?.options ?? {}).filter(([, v]) => v !== undefined)) };
  push(
    '## Throughput and latency, flotilla beside etcd',
    '',
    ...stampLine(results, 'main'),
    `Each point ran ${mo.rounds} time${mo.rounds > 1 ? 's' : ''} on each system for ${mo.seconds} s, alternating flotilla, etcd, flotilla, etcd, ` +
      'so noise on the machine hits both; the figures are the means over the rounds (throughput range in brackets). ' +
      `3 members each, on 127.0.0.1, requests sent to the leader; 100-byte values; keys chosen at random out of ${mo.keySpace.toLocaleString('en-US')} ` +
      '(all of them written once before the first point); one request in flight per connection. ' +
      '**ratio** = flotilla’s throughput / etcd’s. **goal** (issue 7): ≥ 1.0× etcd’s throughput with p99 no worse (aiming for 1.5×); ' +
      'stale reads ≥ 50,000/s.',
    '',
  );
  if (mainRows(results).length === 0) push('Not run in this invocation.', '');
  const rows = mainRows(results).map((r) => [
    r.label,
    `${n0(r.f?.rps)}${spread(r.f)}`,
    r.f ? `${ms(r.f.p50Ms)} / ${ms(r.f.p99Ms)}` : '—',
    r.e ? `${n0(r.e.rps)}${spread(r.e)}` : '—',
    r.e ? `${ms(r.e.p50Ms)} / ${ms(r.e.p99Ms)}` : '—',
    r.ratio,
    r.goal,
  ]);
  if (rows.length > 0) {
    push(mdTable(['point', 'flotilla req/s', 'flotilla p50 / p99 ms', 'etcd req/s', 'etcd p50 / p99 ms', 'ratio', 'goal'], rows), '');
    const stale = (results.points ?? []).find((p) => p.op === 'stale' && p.goalRps);
    if (stale?.flotilla && results.bareGet) {
      push(
        `The stale-read goal against Node's HTTP server: a bare node:http server answering nothing but a fixed 100-byte 200 (\`test/bench/bare-http.mjs\`) ` +
          `took ${n0(results.bareGet.rps)}/s here, so ${n0(stale.goalRps)}/s is ${(stale.goalRps / results.bareGet.rps).toFixed(2)}× what one Node process answers through node:http on this machine; ` +
          `flotilla’s stale reads, served from one process as every member’s are but answered from the socket before node:http (\`src/api/front-door.ts\`), reached ${((stale.flotilla.rps / results.bareGet.rps) * 100).toFixed(0)} % of that figure.`,
        '',
      );
    }
    const single = (results.points ?? []).find((p) => p.op === 'put' && p.connections === 1);
    if (single?.flotilla && single.etcd && results.bareGet1) {
      const b = results.bareGet1;
      push(
        `The p99 floor at one connection: the same bare node:http server, with one connection, answered in ${ms(b.p50Ms)} ms at the median and ${ms(b.p99Ms)} ms at p99 ` +
          `(${p99Range(b)} over the rounds). ` +
          'That tail is the machine’s (scheduling and GC pauses on two cores shared by the load generator), before any server work; ' +
          `a put at one connection crosses three processes and two durable log writes, and its p99 came out at ${ms(single.flotilla.p99Ms)} ms for flotilla ` +
          `(${p99Range(single.flotilla)}) ` +
          `and ${ms(single.etcd.p99Ms)} ms for etcd (${p99Range(single.etcd)}).`,
        '',
      );
    }
    const probed = (results.points ?? []).filter((p) => p.flotilla?.probe);
    if (probed.length > 0) {
      const k = probed[0].flotilla.probe.connections;
      push(
        `**Latency as a probe saw it.** At 64 connections and more, ${k} of the connections are a probe's (\`test/bench/lib/probe.mjs\`: Node's own HTTP client, ` +
          'one request in flight on each, timing every request itself), the rest wrk\'s; the table above counts both in the throughput and gives wrk\'s latencies. ' +
          "Until the client port took more than one connection per turn of the event loop, the two disagreed at 256 connections, and only for flotilla, for a reason found with `test/bench/wire-latency.mjs` (tcpdump on the leader's client port, timing each request " +
          'from its packet to its answer\'s): wrk opens all its connections at once, and libuv 1.46 (Node 20) accepts one connection per turn of the event loop for each listening descriptor; ' +
          'on a leader already answering the first connections, a turn takes milliseconds, so the last connections waited 240-450 ms for their first answer ' +
          '(etcd, which accepts on a goroutine of its own: under 75 ms), while every later request took under 85 ms; ' +
          'wrk then corrects its figures for coordinated omission (for each request slower than twice the mean time between a connection\'s requests, it adds the ' +
          'requests that connection would have sent meanwhile: wg/wrk, `stats_correct`), so about 250 slow first requests raised its p99 by tens of milliseconds. ' +
          'Bare node:http shows it most plainly: every request after the first under 17 ms, first requests up to 650 ms, and wrk\'s p99 66-150 ms. ' +
          'A member now listens on four descriptors of the one socket (`src/api/acceptors.ts`, docs/architecture.md): first answers came within 49-133 ms, and wrk\'s p99 at 256 connections fell from 118 to 46 ms in a same-build A/B. '+
          'The probe\'s connections are open before wrk starts. It measures both systems the same way:',
        '',
        mdTable(
          ['point', 'flotilla probe p50 / p99 / max ms', 'etcd probe p50 / p99 / max ms', 'probe requests (flotilla, etcd)'],
          probed.map((p) => [
            p.label,
            `${ms(p.flotilla.probe.p50Ms)} / ${ms(p.flotilla.probe.p99Ms)} / ${ms(p.flotilla.probe.maxMs)}`,
            p.etcd?.probe ? `${ms(p.etcd.probe.p50Ms)} / ${ms(p.etcd.probe.p99Ms)} / ${ms(p.etcd.probe.maxMs)}` : '—',
            `${n0(p.flotilla.probe.requests)}, ${p.etcd?.probe ? n0(p.etcd.probe.requests) : '—'}`,
          ]),
        ),
        '',
      );
    }
    push(`![flotilla and etcd: throughput and p99 against connections](${chartFile})`, '');
  }

  const cpuRows = mainRows(results).filter((r) => Number.isFinite(r.f?.cpuUsPerReq));
  if (cpuRows.length > 0) {
    push(
      '### CPU per request',
      '',
      'CPU time (user + system, from `/proc`) of all the members together during each run, divided by the requests ' +
        'answered; and how many cores they kept busy. On a 2-core machine that also runs the load generator, CPU per ' +
        'request is what caps throughput once enough requests are in flight.',
      '',
      mdTable(
        ['point', 'flotilla µs/request', 'flotilla cores', 'etcd µs/request', 'etcd cores'],
        cpuRows.map((r) => [r.label, n0(r.f.cpuUsPerReq), r.f.cpuCores.toFixed(2), n0(r.e?.cpuUsPerReq), r.e ? r.e.cpuCores.toFixed(2) : '—']),
      ),
      '',
    );
  }

  const issuePoints = (results.points ?? []).filter((p) => p.issue);
  if (issuePoints.length > 0) {
    push(
      'For scale, the etcd figures quoted in issue 7 (the same set-up, measured earlier on a quieter 2-core machine): ' +
        issuePoints.map((p) => `${p.label} ~${n0(p.issue.rps)}/s (${p.issue.p50Ms} / ${p.issue.p99Ms} ms)`).join('; ') +
        (results.bare ? `; bare Fastify ~${n0(results.bare.issue.rps)}/s.` : '.') +
        ' Compare flotilla with the etcd column of the same run, not with these.',
      '',
    );
  }

  if (results.valueSizes?.length) {
    push(
      '## Latency by value size',
      '',
      ...stampLine(results, 'sizes'),
      `put, 1 connection, ${results.valueSizesRounds > 1 ? `${results.valueSizesRounds} rounds of ${results.valueSizesSeconds} s per system per size, alternating flotilla and etcd (means over the rounds)` : `${results.valueSizesSeconds} s per system per size`}, random keys out of ${mo.keySpace.toLocaleString('en-US')}, on the leader.`,
      '',
    );
    push(
      mdTable(
        ['value', 'flotilla req/s', 'flotilla p50 / p99 ms', 'etcd req/s', 'etcd p50 / p99 ms', 'ratio'],
        results.valueSizes.map((r) => [
          sizeLabel(r.bytes),
          n0(r.flotilla?.rps),
          r.flotilla ? `${ms(r.flotilla.p50Ms)} / ${ms(r.flotilla.p99Ms)}` : '—',
          n0(r.etcd?.rps),
          r.etcd ? `${ms(r.etcd.p50Ms)} / ${ms(r.etcd.p99Ms)}` : '—',
          ratio(r.flotilla?.rps, r.etcd?.rps),
        ]),
      ),
      '',
    );
  }

  if (results.five) {
    push('## Five members', '', ...stampLine(results, 'five'));
    if (results.five.skipped) push(`Skipped: ${results.five.skipped}.`, '');
    else {
      const f = results.five.flotilla;
      const e = results.five.etcd;
      push(
        `put, 64 connections, on the leader of a 5-member cluster (${f.rounds.length} A/B round${f.rounds.length > 1 ? 's' : ''} of ${results.parts?.five?.options?.seconds ?? o.seconds} s).`,
        '',
        mdTable(
          ['point', 'flotilla req/s', 'flotilla p50 / p99 ms', 'etcd req/s', 'etcd p50 / p99 ms', 'ratio'],
          [['put, 64 connections, 5 members', `${n0(f.rps)}${spread(f)}`, `${ms(f.p50Ms)} / ${ms(f.p99Ms)}`, e ? `${n0(e.rps)}${spread(e)}` : '—', e ? `${ms(e.p50Ms)} / ${ms(e.p99Ms)}` : '—', ratio(f.rps, e?.rps)]],
        ),
        '',
      );
    }
  }

  const mm = results.million;
  if (mm) {
    const maxRss = Math.max(...mm.rssLoaded.map((r) => r.rss));
    const full = mm.loaded >= mm.target;
    push(
      `## Holding ${n0(mm.loaded)} keys: memory and restart`,
      '',
      ...stampLine(results, 'million'),
      `A fresh 3-member flotilla was filled with ${n0(mm.loaded)} unique keys of ${mm.valueBytes} bytes by concurrent PUTs ` +
        `(wrk, ${mm.connections} connections, on the leader)${full ? '' : ` — **not the full ${n0(mm.target)}: loading stopped at its time budget of ${(mm.loadBudgetSeconds / 60).toFixed(1)} min, kept so the whole run fits in 25 minutes**`}. ` +
        `Loading took ${(mm.loadSeconds / 60).toFixed(1)} min (${n0(mm.loadRate)} keys/s, ${mm.loadErrors} errors).`,
      '',
      mdTable(
        ['member', 'RSS empty', `RSS holding the keys`, 'peak RSS (VmHWM)', 'data dir on disk'],
        mm.rssLoaded.map((r, i) => [r.name, mib(mm.rssEmpty[i]?.rss), mib(r.rss), mib(r.peak), mib(mm.diskBytes[i])]),
      ),
      '',
      `- **RSS per member holding the keys**: at most ${mib(maxRss)} — goal ≤ 256 MiB: **${maxRss <= 256 * 1048576 ? 'met' : 'not met'}**` +
        (full ? '.' : ` (at ${n0(mm.loaded)} keys, not ${n0(mm.target)}).`),
      `- **Restart to serving** (follower ${mm.restart.member}: SIGTERM, it stopped in ${sec(mm.restart.stopMs)}, then started again): ` +
        `client port answering after ${sec(mm.restart.listenMs)}, \`/health\` 200 (knows the leader, applying) after ` +
        `**${sec(mm.restart.healthMs)}**, first linearizable GET answered after ${sec(mm.restart.readMs)} — goal ≤ 5 s: ` +
        `**${mm.restart.healthMs <= 5000 ? 'met' : 'not met'}**.`,
      `- RSS of ${mm.rssRestarted.name} after the restart, serving: ${mib(mm.rssRestarted.rss)} (peak ${mib(mm.rssRestarted.peak)}).`,
      '',
    );
  }

  if (results.rejoin) push(...renderRejoin(results.rejoin, stampLine(results, 'rejoin')));
  if (results.join) push(...renderJoin(results.join, stampLine(results, 'join')));
  if (results.disk) push(...renderDisk(results.disk, stampLine(results, 'disk')));

  if (results.idleRss) {
    push(
      '## Memory after the throughput points',
      '',
      `RSS of each member after the throughput points (${mo.keySpace.toLocaleString('en-US')} keys, and the big values of the value-size runs): ` +
        `flotilla ${results.idleRss.flotilla.map((r) => mib(r.rss)).join(', ')}` +
        (results.idleRss.etcd.length ? `; etcd ${results.idleRss.etcd.map((r) => mib(r.rss)).join(', ')}` : '') +
        '.',
      '',
    );
  }

  push('## Raft core micro-benchmark', '', ...stampLine(results, 'raft'));
  const rb = results.raft;
  if (!rb) push('Not run in this invocation.', '');
  else if (rb.status === 'skipped') push(`Skipped: ${rb.reason}.`, '');
  else {
    push(
      `From \`${rb.file}\` (written by the Raft core's engineer): \`${rb.command}\` — ${rb.status}, ${rb.seconds.toFixed(0)} s` +
        (rb.note ? ` (${rb.note})` : '') +
        '. It drives 3 cores in one process with memory log stores and instant delivery: the ceiling of the algorithm alone, no disk, no network. Its output:',
      '',
      '```',
      rb.output,
      '```',
      '',
    );
  }

  if (results.failures?.length) {
    push('## Failures in this run', '');
    for (const f of results.failures) {
      const when = f.startedAt && f.startedAt !== results.startedAt ? ` (in the earlier run of ${utc(f.startedAt)})` : '';
      push(`- **${f.section}** did not complete${when}: ${f.message}`);
      if (f.detail) push('', '  ```', ...f.detail.split('\n').map((l) => `  ${l.trim()}`), '  ```');
    }
    push('');
  }

  if (results.notes?.length) {
    push('## Notes from this run', '', ...results.notes.map((n) => `- ${n}`), '');
  }
  for (const e of results.earlierNotes ?? []) {
    push(`## Notes from the earlier run of ${utc(e.startedAt)} (some of its figures are above)`, '', ...e.notes.map((n) => `- ${n}`), '');
  }

  push(
    '## How it is measured',
    '',
    '- `test/bench/run-bench.mjs` starts everything itself on 127.0.0.1 with free ports and data in temp dirs: ' +
      'flotilla members are `node bin/flotilla.js serve` processes with default flags (heartbeat 100 ms, election 1 s, log level info); ' +
      'etcd members are `etcd --enable-v2=false` with default flags (fsync on, heartbeat 100 ms, election 1 s) plus a larger backend quota ' +
      '(8 GiB, so the big-value runs cannot trip the 2 GiB default); the Node ceilings are `test/bench/bare-fastify.mjs` (a tiny PUT through Fastify) and `test/bench/bare-http.mjs` (a GET answered with 100 bytes by bare node:http). ' +
      'It stops exactly the processes it started, by PID, and removes its temp dirs.',
    '- The load generator is wrk (`-t2 -cN -dS --latency`, one request in flight per connection) with one script for both systems, ' +
      '`test/bench/wrk-kv.lua`: flotilla gets `PUT /v1/kv/KEY` with the raw value and `GET /v1/kv/KEY[?consistency=stale]`; etcd gets ' +
      '`POST /v3/kv/put` and `POST /v3/kv/range` (linearizable, or `"serializable":true` for the stale column) with base64 JSON bodies. ' +
      'Values are the same pseudo-random printable bytes for both. Throughput counts only successful answers.',
    '- The leader of each system is found before each run (`/v1/status`; etcd `/v3/maintenance/status`) and checked after it. ' +
      'For puts, the store revision is read before and after each run (by a sentinel write): it must have moved by at least the ' +
      'number of successful answers, so every counted answer was a committed write. Anything odd lands under "Notes" above.',
    '- Memory is VmRSS from `/proc/PID/status`. Restart time is from spawning the process to the first 200 from `/health`.',
    '- The rejoin, join and disk sections run flotilla alone, with default flags unless they say otherwise; catch-up is read from ' +
      '`/v1/status` (`commitIndex`, `appliedIndex`) and `/v1/cluster/members`, how a member caught up from the members’ own log lines, ' +
      'disk use with `du -sb` on each data dir.',
    '- A run with `--only=PARTS` measures those parts and keeps every other section’s figures from the results embedded at the ' +
      'bottom of the page it replaces (`--fresh` keeps none); each section carries its own date, command and load average.',
    '- Both systems share the machine with the load generator (wrk takes up to a core). Other work on the machine depresses ' +
      'both systems’ figures; the A/B alternation keeps the ratio fair, not the absolute numbers.',
    '',
  );
  // The raw results ride along, invisible, so `--render-only` can redraw this page and the chart.
  push(`<!-- ${RESULTS_MARK} ${JSON.stringify(slim(results)).replace(/--/g, '-\\u002d')} -->`, '');
  return { markdown: lines.join('\n'), table: textTable(results) };
}

const RESULTS_MARK = 'bench-results:';

/** The results without wrk's raw output (the figures are kept; the page stays small). */
function slim(results) {
  return JSON.parse(JSON.stringify(results, (k, v) => (k === 'raw' ? undefined : v)));
}

/** The results embedded in a page written by renderMarkdown, or null. */
export function resultsFromMarkdown(markdown) {
  const at = markdown.lastIndexOf(`<!-- ${RESULTS_MARK} `);
  if (at < 0) return null;
  const end = markdown.indexOf(' -->', at);
  return JSON.parse(markdown.slice(at + RESULTS_MARK.length + 5, end));
}

export function renderSvg(results) {
  const pts = results.points ?? [];
  const puts = pts.filter((p) => p.op === 'put');
  const cats = puts.map((p) => String(p.connections));
  const series = (field) => [
    { name: 'flotilla', color: COLORS.flotilla, values: puts.map((p) => p.flotilla?.[field] ?? null) },
    ...(puts.some((p) => p.etcd) ? [{ name: 'etcd', color: COLORS.etcd, values: puts.map((p) => p.etcd?.[field] ?? null) }] : []),
  ];
  const reads = pts.filter((p) => p.op !== 'put');
  const refs = [...(results.bare ? [{ cat: 'Fastify PUT', name: 'bare Fastify', r: results.bare }] : []), ...(results.bareGet ? [{ cat: 'node:http GET', name: 'bare node:http', r: results.bareGet }] : [])];
  const readCats = [...reads.map((p) => (p.op === 'get' ? 'linearizable get' : 'stale get')), ...refs.map((x) => x.cat)];
  const panels = [
    { kind: 'line', title: 'put throughput', yLabel: 'requests/s', xLabel: 'connections', categories: cats, series: series('rps') },
    { kind: 'line', title: 'put p99 latency', yLabel: 'p99 ms', xLabel: 'connections', categories: cats, series: series('p99Ms') },
    {
      kind: 'bar',
      title: 'reads at 64 connections (and the Node ceilings)',
      refLines: reads.some((p) => p.goalRps) ? [{ value: 50_000, label: 'goal for stale reads: 50k/s', color: COLORS.goal }] : [],
      yLabel: 'requests/s',
      categories: readCats,
      series: [
        { name: 'flotilla', color: COLORS.flotilla, values: [...reads.map((p) => p.flotilla?.rps ?? null), ...refs.map(() => null)] },
        { name: 'etcd', color: COLORS.etcd, values: [...reads.map((p) => p.etcd?.rps ?? null), ...refs.map(() => null)] },
        ...(refs.length > 0 ? [{ name: 'Node ceilings', color: COLORS.fastify, values: [...reads.map(() => null), ...refs.map((x) => x.r.rps)] }] : []),
      ],
    },
  ];
  if (results.valueSizes?.length) {
    panels.push({
      kind: 'bar',
      log: true,
      title: 'put p99 by value size (1 connection, log scale)',
      yLabel: 'p99 ms',
      categories: results.valueSizes.map((r) => sizeLabel(r.bytes)),
      series: [
        { name: 'flotilla', color: COLORS.flotilla, values: results.valueSizes.map((r) => r.flotilla?.p99Ms ?? null) },
        { name: 'etcd', color: COLORS.etcd, values: results.valueSizes.map((r) => r.etcd?.p99Ms ?? null) },
      ],
    });
  }
  const m = results.machine;
  const mainCommit = results.parts?.main?.commit ?? results.versions.flotillaCommit;
  return renderChart({
    title: 'flotilla beside etcd (3 members, 100-byte values, same machine, same run)',
    subtitle: `${(results.parts?.main?.startedAt ?? results.startedAt).slice(0, 10)} · ${m.cores} cores, ${m.model} · node ${results.versions.node} · etcd ${results.versions.etcd ?? '—'} · flotilla ${mainCommit}${(results.parts?.main?.mode ?? results.mode) === 'quick' ? ' · QUICK RUN' : ''}`,
    panels,
  });
}
