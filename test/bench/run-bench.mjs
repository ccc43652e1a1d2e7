#!/usr/bin/env node
// flotilla's benchmark (issue 7): flotilla against etcd 3.4 on the same machine, in the same run,
// loaded by the same generator (wrk), alternating A/B/A/B so machine noise hits both; and (issue
// 6) flotilla over time: a member rejoining by snapshot, a fourth member joining a cluster holding
// 1,000,000 keys, disk use over a long write run (lib/durability.mjs).
//
//   node test/bench/run-bench.mjs            the full run (about 35-45 minutes on 2 cores, within
//                                            a budget it enforces); rewrites docs/benchmarks.md,
//                                            docs/bench-chart.svg and docs/bench-durability.svg
//   node test/bench/run-bench.mjs --only=rejoin,disk
//                                            those parts alone; the page keeps the other
//                                            sections' figures from the results embedded in it
//   node test/bench/run-bench.mjs --quick    a smoke run in a few minutes; writes to a temp dir
//
// It imports nothing from src/: it starts `node bin/flotilla.js serve` processes (build first:
// `npx tsc -p tsconfig.build.json`), `etcd` processes and a bare Fastify server on 127.0.0.1, in
// temp dirs, and stops exactly those processes (by PID) when it ends. Flags: see USAGE below.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { prepareBuild } from './lib/build.mjs';
import { BareServer, EtcdCluster, FlotillaCluster, preload } from './lib/clusters.mjs';
import { diskPart, joinPart, rejoinPart } from './lib/durability.mjs';
import { loadUniqueKeys } from './lib/load.mjs';
import { mergeResults, PARTS } from './lib/merge.mjs';
import { startProbe } from './lib/probe.mjs';
import { cleanup, cpuSeconds, installExitHandlers, keepTempDirs, makeTempDir, memoryOf, run, sleep, which } from './lib/proc.mjs';
import { renderDurabilitySvg } from './lib/report-durability.mjs';
import { renderMarkdown, renderSvg, resultsFromMarkdown, sizeLabel } from './lib/report.mjs';
import { runWrk, wrkVersion } from './lib/wrk.mjs';

const REPO = resolve(import.meta.dirname, '../..');

const USAGE = `usage: node test/bench/run-bench.mjs [--quick] [options]

  --quick               short runs, fewer points, small sizes (a smoke run in a few minutes);
                        output goes to a temp dir unless --out is given
  --out=DIR             where benchmarks.md, bench-chart.svg and bench-durability.svg go (full
                        run: docs/)
  --seconds=N           seconds per measured run (full 8, quick 3)
  --rounds=N            A/B rounds per point (full 3, quick 1)
  --keys=N              keys held for the RSS and restart measurements (full 1000000, quick 5000)
  --load-budget=S       at most this many seconds to load those keys (full 900, quick 60); in a
                        full run it is also cut so the whole run stays within --total-budget
  --total-budget=S      the whole run's time budget (full: 1500 s = 25 min for main, sizes,
                        five, million and raft, plus the planned time of rejoin, join and disk)
  --only=LIST           a subset of: main,sizes,five,million,join,rejoin,disk,raft (default: all).
                        The page keeps the figures of the parts not run (and of parts that fail)
                        from the results embedded in the page it replaces, each with its date;
                        join reuses the cluster the million part loaded when both run
  --rejoin-writes=N     rejoin: writes while the member is down (full 200000, quick 5000)
  --disk-seconds=S      disk: length of the write run (full 600, quick 30)
  --fresh               do not keep any figures from the page being replaced
  --ref=GIT_REF         measure that commit: git archive it into a temp dir and build it there
                        (default: a copy of the current dist/, taken at the start, so a rebuild
                        by someone else during the run cannot change what is measured)
  --build-dir=DIR       measure a tree built elsewhere (DIR/bin, DIR/dist, DIR/package.json,
                        DIR/node_modules), e.g. an experimental patch, without touching the repo
  --note=TEXT           add TEXT to the page's notes (repeatable; also with --render-only)
  --no-etcd             flotilla alone (also what happens when etcd is missing and cannot be installed)
  --no-install          never apt-get install etcd-server / wrk
  --keep-temp           keep the temp dirs (data and member logs) for inspection
  --render-only[=FILE]  measure nothing: redraw benchmarks.md and the chart (in --out, default
                        docs/) from the results embedded in FILE (default docs/benchmarks.md)
  --help`;

// ------------------------------------------------------------------ options

function parseArgs(argv) {
  const o = { onlyGiven: false, quick: false, out: null, seconds: null, rounds: null, keys: null, loadBudget: null, totalBudget: null, ref: null, buildDir: null, notes: [], only: null, etcd: true, install: true, keepTemp: false, rejoinWrites: null, diskSeconds: null, fresh: false };
  for (const a of argv) {
    const [k, v] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const num = () => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${k} needs a positive number`);
      return n;
    };
    switch (k) {
      case '--quick': o.quick = true; break;
      case '--out': o.out = resolve(v ?? ''); break;
      case '--seconds': o.seconds = num(); break;
      case '--rounds': o.rounds = Math.round(num()); break;
      case '--keys': o.keys = Math.round(num()); break;
      case '--load-budget': o.loadBudget = num(); break;
      case '--total-budget': o.totalBudget = num(); break;
      case '--only': {
        o.only = new Set((v ?? '').split(',').filter(Boolean));
        const unknown = [...o.only].filter((p) => !PARTS.includes(p));
        if (unknown.length > 0 || o.only.size === 0) throw new Error(`--only takes a list out of ${PARTS.join(',')}${unknown.length ? ` (not: ${unknown.join(',')})` : ''}`);
        o.onlyGiven = true;
        break;
      }
      case '--rejoin-writes': o.rejoinWrites = Math.round(num()); break;
      case '--disk-seconds': o.diskSeconds = num(); break;
      case '--fresh': o.fresh = true; break;
      case '--no-etcd': o.etcd = false; break;
      case '--ref': o.ref = v; break;
      case '--build-dir': o.buildDir = resolve(v ?? ''); break;
      case '--note': o.notes.push(v ?? ''); break;
      case '--no-install': o.install = false; break;
      case '--keep-temp': o.keepTemp = true; break;
      case '--render-only': o.renderOnly = resolve(v ?? join(REPO, 'docs/benchmarks.md')); break;
      case '--help': case '-h': process.stdout.write(USAGE + '\n'); process.exit(0); break;
      default: throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  o.seconds ??= o.quick ? 3 : 8;
  o.rounds ??= o.quick ? 1 : 3;
  o.keys ??= o.quick ? 5_000 : 1_000_000;
  o.loadBudget ??= o.quick ? 60 : 900;
  o.keySpace = o.quick ? 2_000 : 10_000;
  o.only ??= new Set(PARTS);
  o.rejoinWrites ??= o.quick ? 5_000 : 200_000;
  o.diskSeconds ??= o.quick ? 30 : 600;
  o.totalBudget ??= (o.quick ? 600 : 1500) + plannedSeconds(o, ['join', 'rejoin', 'disk']);
  return o;
}

/**
 * Seconds set aside for those of `parts` the run will do: join (a baseline, the catch-up and the
 * removal, and hashing both members' key spaces), rejoin (the writes, the catch-up, the hashing),
 * disk (its write run). The million load is cut so that these still fit in the total budget.
 */
function plannedSeconds(o, parts) {
  const est = {
    join: o.quick ? 120 : 600,
    rejoin: o.quick ? 60 : 60 + o.rejoinWrites / 1500,
    disk: o.diskSeconds + 45,
  };
  return parts.filter((p) => o.only.has(p)).reduce((a, p) => a + (est[p] ?? 0), 0);
}

// ------------------------------------------------------------------ progress

const T0 = performance.now();
function clock() {
  const s = Math.floor((performance.now() - T0) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}
function say(msg) {
  process.stdout.write(`[${clock()}] ${msg}\n`);
}
const n0 = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const ms = (v) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) : '—');
function describe(r) {
  const err = r.errors > 0 ? `, ${n0(r.errors)} errors ${JSON.stringify(r.errorDetail)}` : '';
  const cpu = Number.isFinite(r.cpuUsPerReq) ? `, ${n0(r.cpuUsPerReq)} µs CPU/req (${r.cpuCores.toFixed(2)} cores)` : '';
  const probe = r.probe ? `; probe p50 ${ms(r.probe.p50Ms)} ms, p99 ${ms(r.probe.p99Ms)} ms, max ${ms(r.probe.maxMs)} ms` : '';
  return `${n0(r.rps)} req/s, p50 ${ms(r.p50Ms)} ms, p99 ${ms(r.p99Ms)} ms${cpu}${err}${probe}`;
}

// ------------------------------------------------------------------ environment

async function ensureTools(options, notes) {
  const missing = [];
  if (!(await which('wrk'))) missing.push('wrk');
  if (options.etcd && !(await which('etcd'))) missing.push('etcd-server');
  if (missing.length > 0 && options.install && process.getuid?.() === 0 && (await which('apt-get'))) {
    say(`installing ${missing.join(', ')} from Debian (apt-get install -y ${missing.join(' ')}) ...`);
    let r = await run('apt-get', ['install', '-y', '-q', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.code !== 0) {
      await run('apt-get', ['update', '-q']);
      r = await run('apt-get', ['install', '-y', '-q', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    }
    if (r.code !== 0) say(`apt-get install failed: ${r.stderr.trim().split('\n').slice(-2).join(' / ')}`);
  }
  if (!(await which('wrk'))) throw new Error('wrk is required (Debian: apt-get install wrk)');
  const etcdBin = options.etcd ? await which('etcd') : null;
  if (options.etcd && !etcdBin) notes.push('etcd is not installed and could not be installed: flotilla alone was measured.');
  if (!options.etcd) notes.push('Run with --no-etcd: flotilla alone was measured.');
  return { etcdBin };
}

async function machineInfo() {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  const df = await run('df', ['-T', tmpdir()]);
  const dfLine = df.stdout.trim().split('\n')[1]?.split(/\s+/) ?? [];
  return {
    cores: cpus().length,
    model,
    ramBytes: totalmem(),
    kernel: release(),
    disk: dfLine.length > 1 ? `${dfLine[1]} on ${dfLine[0]} (${tmpdir()})` : tmpdir(),
    loadStart: loadavg().map((l) => +l.toFixed(2)),
  };
}

async function versions(etcdBin, build) {
  const pkg = (name) => {
    try {
      return JSON.parse(readFileSync(join(REPO, 'node_modules', name, 'package.json'), 'utf8')).version;
    } catch {
      return 'unknown';
    }
  };
  const etcd = etcdBin ? /etcd Version: (\S+)/.exec((await run(etcdBin, ['--version'])).stdout)?.[1] ?? 'unknown' : null;
  return {
    node: process.version,
    etcd,
    wrk: await wrkVersion(),
    fastify: pkg('fastify'),
    classicLevel: pkg('classic-level'),
    flotillaCommit: build.commit,
    flotillaDirty: build.dirty,
    flotillaBuild: build.source,
  };
}

// ------------------------------------------------------------------ measuring

function mean(xs) {
  const v = xs.filter(Number.isFinite);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
}

/** Summarize rounds: throughput and latencies are the mean of the rounds; min/max show spread. */
function summarize(rounds) {
  if (!rounds || rounds.length === 0) return null;
  return {
    rps: mean(rounds.map((r) => r.rps)),
    rpsMin: Math.min(...rounds.map((r) => r.rps)),
    rpsMax: Math.max(...rounds.map((r) => r.rps)),
    p50Ms: mean(rounds.map((r) => r.p50Ms)),
    p99Ms: mean(rounds.map((r) => r.p99Ms)),
    ...(rounds.every((r) => r.probe)
      ? {
          probe: {
            connections: PROBE_CONNECTIONS,
            requests: rounds.reduce((a, r) => a + r.probe.requests, 0),
            p50Ms: mean(rounds.map((r) => r.probe.p50Ms)),
            p99Ms: mean(rounds.map((r) => r.probe.p99Ms)),
            maxMs: Math.max(...rounds.map((r) => r.probe.maxMs)),
          },
        }
      : {}),
    cpuUsPerReq: mean(rounds.map((r) => r.cpuUsPerReq)),
    cpuCores: mean(rounds.map((r) => r.cpuCores)),
    errors: rounds.reduce((a, r) => a + r.errors, 0),
    requests: rounds.reduce((a, r) => a + r.requests, 0),
    rounds,
  };
}

/** CPU seconds used so far by every process of a cluster (or server). */
function clusterCpu(cluster) {
  return cluster.pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0);
}

/** CPU of all the system's processes during the run: per request (µs) and in cores. */
function addCpu(r, cpu0, cpu1) {
  const used = cpu1 - cpu0;
  r.cpuUsPerReq = r.requests > 0 ? (used * 1e6) / r.requests : NaN;
  r.cpuCores = used / r.seconds;
}

/** A system under test: what wrk hits, which modes, and how to check the leader did not move. */
function systemsFor(flotilla, etcd) {
  const list = [{ id: 'flotilla', cluster: flotilla, modes: { put: 'flotilla-put', get: 'flotilla-get', stale: 'flotilla-get-stale' } }];
  if (etcd) list.push({ id: 'etcd', cluster: etcd, modes: { put: 'etcd-put', get: 'etcd-get', stale: 'etcd-get-serializable' } });
  return list;
}

/**
 * One wrk run against a system's leader. For puts, the store revision before and after (read by
 * a sentinel write) must have moved by at least the successful answers: otherwise answers were
 * not committed writes (a redirect, say) and the run is flagged.
 */
async function measure(sys, { op, connections, seconds, keys, valueBytes = 100, probe = 0 }, notes, label) {
  sys.cluster.checkAlive();
  const leader = await sys.cluster.leader();
  const rev0 = op === 'put' ? await sys.cluster.revision(leader) : NaN;
  const cpu0 = clusterCpu(sys.cluster);
  // With a probe, `probe` of the connections are the probe's (lib/probe.mjs), the rest wrk's.
  const prober = probe > 0 ? startProbe({ url: leader.clientUrl, system: sys.id, op, connections: probe, keys, valueBytes }) : null;
  const r = await runWrk({ repo: REPO, url: leader.clientUrl, mode: sys.modes[op], connections: connections - probe, seconds, valueBytes, keys });
  if (prober) {
    r.probe = await prober.stop();
    r.rps += r.probe.requests / r.seconds;
    r.requests += r.probe.requests;
    r.errors += r.probe.errors;
  }
  addCpu(r, cpu0, clusterCpu(sys.cluster));
  const after = await sys.cluster.leader();
  if (after !== leader) notes.push(`${label}: the ${sys.id} leader moved from ${leader.name} to ${after.name} during the run.`);
  if (op === 'put') {
    const rev1 = await sys.cluster.revision(after);
    r.committed = rev1 - rev0 - 1;
    const ok = r.requests - r.errorDetail.status - (r.probe?.errors ?? 0);
    if (!(r.committed >= ok * 0.99)) notes.push(`${label}: ${sys.id} answered ${ok} writes but its revision moved by ${r.committed}.`);
  }
  if (r.errors > 0) notes.push(`${label}: ${sys.id} had ${r.errors} errors ${JSON.stringify(r.errorDetail)}.`);
  return r;
}

/** At 64 connections and more, this many of them are a latency probe's (lib/probe.mjs). */
const PROBE_CONNECTIONS = 4;

const MAIN_POINTS = [
  { id: 'put-1', label: 'put, 1 connection', op: 'put', connections: 1, issue: { rps: 1375, p50Ms: 0.7, p99Ms: 1.5 } },
  { id: 'put-64', label: 'put, 64 connections', op: 'put', connections: 64, issue: { rps: 7900, p50Ms: 6.9, p99Ms: 17.6 } },
  { id: 'put-256', label: 'put, 256 connections', op: 'put', connections: 256, issue: { rps: 9700, p50Ms: 24.8, p99Ms: 50.1 } },
  { id: 'get-64', label: 'linearizable get, 64 connections', op: 'get', connections: 64, issue: { rps: 12000, p50Ms: 4.9, p99Ms: 12.5 } },
  { id: 'stale-64', label: 'stale get, 64 connections (etcd: serializable)', op: 'stale', connections: 64, goalRps: 50_000 },
];

async function mainPoints(ctx) {
  const { options, results, notes } = ctx;
  say(`starting a 3-member flotilla${ctx.etcdBin ? ', a 3-member etcd' : ''}, a bare Fastify server and a bare node:http server ...`);
  const dir = await makeTempDir('misc');
  const flotilla = await FlotillaCluster.start({ size: 3, repo: ctx.build.dir });
  const etcd = ctx.etcdBin ? await EtcdCluster.start({ size: 3, etcdBin: ctx.etcdBin }) : null;
  const bare = await BareServer.fastify({ repo: REPO, dir });
  const bareHttp = await BareServer.http({ repo: REPO, dir });
  ctx.running.push(flotilla, bare, bareHttp, ...(etcd ? [etcd] : []));
  say(`flotilla leader ${(await flotilla.leader()).name}${etcd ? `, etcd leader ${(await etcd.leader()).name}` : ''}`);
  const systems = systemsFor(flotilla, etcd);
  for (const sys of systems) {
    say(`${sys.id}: writing the ${n0(options.keySpace)} keys once (so every read finds its key), then a warm-up run ...`);
    const t = performance.now();
    await preload(sys.cluster, options.keySpace, 100);
    say(`${sys.id}: preloaded in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const w = await runWrk({ repo: REPO, url: (await sys.cluster.leader()).clientUrl, mode: sys.modes.put, connections: 64, seconds: options.quick ? 1 : 4, keys: options.keySpace });
    say(`${sys.id}: warm-up ${describe(w)}`);
  }
  const points = !options.only.has('main') ? [] : options.quick ? MAIN_POINTS.filter((p) => p.id !== 'put-256') : MAIN_POINTS;
  if (points.length > 0) results.points = [];
  let step = 0;
  const total = points.length + 1;
  for (const p of points) {
    step++;
    const rounds = { flotilla: [], etcd: [] };
    for (let r = 1; r <= options.rounds; r++) {
      for (const sys of systems) {
        const label = `${p.label} · ${sys.id} · round ${r}/${options.rounds}`;
        const probe = p.connections >= 64 ? PROBE_CONNECTIONS : 0;
        const res = await measure(sys, { op: p.op, connections: p.connections, seconds: options.seconds, keys: options.keySpace, probe }, notes, p.label);
        rounds[sys.id].push(res);
        say(`(${step}/${total}) ${label}: ${describe(res)}`);
      }
    }
    results.points.push({ ...p, flotilla: summarize(rounds.flotilla), etcd: summarize(rounds.etcd), command: rounds.flotilla[0]?.command });
  }
  step++;
  // The Node ceilings, alternating like the points: a bare Fastify app taking a tiny PUT, and a
  // bare node:http server answering a GET as a stale read does; and that server at one
  // connection, whose p99 is the floor under any p99 at one connection on this machine.
  const bareRounds = { fastify: [], http: [], http1: [] };
  const references = [
    { id: 'fastify', server: bare, mode: 'bare-put', connections: 64, label: 'bare Fastify 5, tiny PUT, 64 connections' },
    { id: 'http', server: bareHttp, mode: 'bare-get', connections: 64, label: 'bare node:http, GET answering 100 bytes, 64 connections' },
    { id: 'http1', server: bareHttp, mode: 'bare-get', connections: 1, label: 'bare node:http, GET answering 100 bytes, 1 connection' },
  ];
  for (let r = 1; r <= (points.length > 0 ? options.rounds : 0); r++) {
    for (const ref of references) {
      const cpu0 = clusterCpu(ref.server);
      const res = await runWrk({ repo: REPO, url: ref.server.url, mode: ref.mode, connections: ref.connections, seconds: options.seconds, keys: options.keySpace });
      addCpu(res, cpu0, clusterCpu(ref.server));
      bareRounds[ref.id].push(res);
      say(`(${step}/${total}) ${ref.label} · round ${r}/${options.rounds}: ${describe(res)}`);
    }
  }
  if (bareRounds.fastify.length > 0) {
    results.bare = { label: references[0].label, issue: { rps: 75000, p50Ms: 0.8, p99Ms: 2.6 }, ...summarize(bareRounds.fastify) };
    results.bareGet = { label: references[1].label, ...summarize(bareRounds.http) };
    results.bareGet1 = { label: references[2].label, ...summarize(bareRounds.http1) };
  }

  if (options.only.has('sizes')) await valueSizes(ctx, systems);
  if (points.length > 0) results.idleRss = {
    flotilla: flotilla.pids().map((pid) => memoryOf(pid)),
    etcd: etcd ? etcd.pids().map((pid) => memoryOf(pid)) : [],
  };
  say('stopping the 3-member clusters ...');
  await Promise.all([flotilla.stop(), bare.stop(), bareHttp.stop(), etcd?.stop()]);
  ctx.running.length = 0;
}

async function valueSizes(ctx, systems) {
  const { options, results, notes } = ctx;
  const sizes = options.quick ? [100, 4096] : [100, 4096, 65536, 1048576];
  const seconds = options.quick ? 2 : Math.max(3, Math.round(options.seconds * 0.75));
  // Two rounds per size, alternating like the main points: one sample per system swung by ±10 %
  // from run to run, more than the differences it was meant to show.
  const rounds = options.quick ? 1 : 2;
  results.valueSizes = [];
  for (const bytes of sizes) {
    const measured = Object.fromEntries(systems.map((sys) => [sys.id, []]));
    for (let r = 1; r <= rounds; r++) {
      for (const sys of systems) {
        const res = await measure(sys, { op: 'put', connections: 1, seconds, valueBytes: bytes, keys: options.keySpace }, notes, `put ${sizeLabel(bytes)}`);
        measured[sys.id].push(res);
        say(`value size ${sizeLabel(bytes)}, put, 1 connection · ${sys.id} · round ${r}/${rounds}: ${describe(res)}`);
      }
    }
    results.valueSizes.push({ bytes, ...Object.fromEntries(systems.map((sys) => [sys.id, summarize(measured[sys.id])])) });
  }
  results.valueSizesSeconds = seconds;
  results.valueSizesRounds = rounds;
}

async function fiveMembers(ctx) {
  const { options, results, notes } = ctx;
  say(`starting a 5-member flotilla${ctx.etcdBin ? ' and a 5-member etcd' : ''} ...`);
  const flotilla = await FlotillaCluster.start({ size: 5, repo: ctx.build.dir });
  const etcd = ctx.etcdBin ? await EtcdCluster.start({ size: 5, etcdBin: ctx.etcdBin }) : null;
  ctx.running.push(flotilla, ...(etcd ? [etcd] : []));
  const systems = systemsFor(flotilla, etcd);
  for (const sys of systems) {
    await runWrk({ repo: REPO, url: (await sys.cluster.leader()).clientUrl, mode: sys.modes.put, connections: 64, seconds: 2, keys: options.keySpace });
  }
  const rounds = { flotilla: [], etcd: [] };
  const n = Math.max(1, options.rounds - 1);
  for (let r = 1; r <= n; r++) {
    for (const sys of systems) {
      const res = await measure(sys, { op: 'put', connections: 64, seconds: options.seconds, keys: options.keySpace }, notes, '5 members, put, 64 connections');
      rounds[sys.id].push(res);
      say(`5 members, put, 64 connections · ${sys.id} · round ${r}/${n}: ${describe(res)}`);
    }
  }
  results.five = { flotilla: summarize(rounds.flotilla), etcd: summarize(rounds.etcd) };
  await Promise.all([flotilla.stop(), etcd?.stop()]);
  ctx.running.length = 0;
}

function formatDuration(s) {
  return s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${s.toFixed(1)} s`;
}

/**
 * Seconds a key load may take now: --load-budget, cut so that the run stays within its total
 * budget, leaving about 3 minutes for the load's own aftermath and the planned time of `after`.
 */
function loadBudgetNow(options, after) {
  const elapsedS = (performance.now() - T0) / 1000;
  return Math.max(30, Math.min(options.loadBudget, options.totalBudget - elapsedS - 180 - plannedSeconds(options, after)));
}

async function duBytes(dir) {
  const r = await run('du', ['-sb', dir]);
  return Number(r.stdout.split(/\s+/)[0]);
}

/**
 * Fill a fresh 3-member flotilla with `keys` unique 100-byte keys by concurrent PUTs (wrk, 128
 * connections), within the load budget; then record each member's RSS, restart a follower and
 * time it to serving, and record its RSS again.
 */
async function million(ctx) {
  const { options, results, notes } = ctx;
  const target = options.keys;
  say(`starting a fresh 3-member flotilla to hold ${n0(target)} keys ...`);
  const flotilla = await FlotillaCluster.start({ size: 3, repo: ctx.build.dir });
  ctx.running.push(flotilla);
  const leader = await flotilla.leader();
  const out = { target, valueBytes: 100 };
  out.rssEmpty = flotilla.members.map((m) => ({ name: m.name, ...memoryOf(m.child.pid) }));
  const connections = 256;
  // Keep the whole run within its budget: leave about 3 minutes for the restart and the rest, and
  // the planned time of the parts after this one.
  const loadBudget = loadBudgetNow(options, ['join', 'rejoin', 'disk']);
  out.loadBudgetSeconds = loadBudget;
  out.connections = connections;
  say(`loading ${n0(target)} keys into flotilla with wrk (${connections} connections, unique keys, budget ${formatDuration(loadBudget)}) ...`);
  const load = await loadUniqueKeys({ repo: REPO, cluster: flotilla, leader, target, connections, budgetS: loadBudget, prefix: 'm', say });
  if (!load.finished) notes.push(`Loading stopped at its time budget (${formatDuration(loadBudget)}), after ${n0(load.loaded)} of ${n0(target)} keys.`);
  out.loadSeconds = load.seconds;
  out.loaded = load.loaded;
  out.loadRate = load.rate;
  out.loadErrors = load.errors;
  say(`loaded ${n0(out.loaded)} keys in ${formatDuration(out.loadSeconds)} (${n0(out.loadRate)} keys/s, ${load.errors} errors)`);
  if (out.loaded < target) notes.push(`Only ${n0(out.loaded)} of ${n0(target)} keys were loaded within the budget.`);
  await flotilla.waitReady(60_000);
  await sleep(5000); // let followers apply and the heaps settle
  out.rssLoaded = flotilla.members.map((m) => ({ name: m.name, ...memoryOf(m.child.pid) }));
  out.diskBytes = await Promise.all(flotilla.members.map((m) => duBytes(m.dataDir)));
  say(`RSS holding ${n0(out.loaded)} keys: ${out.rssLoaded.map((r) => `${r.name} ${mib(r.rss)} MiB (peak ${mib(r.peak)})`).join(', ')}`);

  const follower = flotilla.members.find((m) => m !== leader);
  say(`restarting follower ${follower.name} (SIGTERM, then start again) ...`);
  const stop = await flotilla.stopMember(follower);
  const probeKey = '__bench_sentinel'; // written (by revision()) after the load: a key it must hold
  const timing = await flotilla.startAndTime(follower, probeKey);
  out.restart = { member: follower.name, stopMs: stop.stopMs, exit: stop.code ?? stop.signal, ...timing };
  say(
    `${follower.name}: stopped in ${(stop.stopMs / 1000).toFixed(2)} s; after start: listening ${(timing.listenMs / 1000).toFixed(2)} s, ` +
      `healthy ${(timing.healthMs / 1000).toFixed(2)} s, first linearizable read ${(timing.readMs / 1000).toFixed(2)} s`,
  );
  await sleep(3000);
  out.rssRestarted = { name: follower.name, ...memoryOf(follower.child.pid) };
  say(`RSS of ${follower.name} after the restart: ${mib(out.rssRestarted.rss)} MiB (peak ${mib(out.rssRestarted.peak)})`);
  results.million = out;
  if (options.only.has('join')) {
    // The join part goes on with this cluster, so the keys are loaded once.
    ctx.loaded = { cluster: flotilla, keys: out.loaded };
    return;
  }
  await flotilla.stop();
  ctx.running.length = 0;
}

function findFile(dir, pattern) {
  if (!existsSync(dir)) return null;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const found = findFile(path, pattern);
      if (found) return found;
    } else if (pattern.test(entry.name)) return path;
  }
  return null;
}

function mib(bytes) {
  return Number.isFinite(bytes) ? (bytes / 1048576).toFixed(0) : '—';
}

/**
 * The Raft core micro-benchmark belongs to the core's engineer; run whatever file they provide
 * (named like raft-bench under test/bench/ or test/sim/), or say why it was skipped.
 */
async function raftBench(ctx) {
  const found = [];
  for (const d of ['test/bench', 'test/sim']) {
    const abs = join(REPO, d);
    if (!existsSync(abs)) continue;
    for (const f of readdirSync(abs)) if (/raft[-_.]?bench/i.test(f)) found.push(join(d, f));
  }
  if (found.length === 0) {
    ctx.results.raft = { status: 'skipped', reason: 'no file named like raft-bench under test/bench/ or test/sim/ yet' };
    say(`Raft core micro-benchmark: skipped (${ctx.results.raft.reason})`);
    return;
  }
  const file = found.sort()[0];
  const head = readFileSync(join(REPO, file), 'utf8').split('\n').slice(0, 40);
  // The command its author wrote in the file's header: a comment line that starts with node, npx
  // or npm (optionally after "Run:"); else one chosen by the file's extension.
  const declared = head
    .map((l) => l.replace(/^\s*(\/\/|\/?\*+|#)?\s*/, '').replace(/^(run|usage):\s*/i, '').replace(/^`|`$/g, '').trim())
    .find((l) => /^(node|npx|npm)\s/.test(l));
  let command;
  if (declared) command = declared;
  else if (/\.(mjs|js)$/.test(file)) command = `node ${file}`;
  else if (/\.bench\.ts$/.test(file)) command = `npx vitest bench --run ${file}`;
  else if (/\.test\.ts$/.test(file)) command = `npx vitest run ${file}`;
  else {
    ctx.results.raft = { status: 'skipped', reason: `found ${file} but no command to run it (no node/npx line in its header)` };
    say(`Raft core micro-benchmark: skipped (${ctx.results.raft.reason})`);
    return;
  }
  say(`Raft core micro-benchmark (${file}): ${command} ...`);
  const t = performance.now();
  const echo = (l) => process.stdout.write(`    ${l}\n`);
  let r = await run('sh', ['-c', command], { cwd: REPO, timeoutMs: 300_000, onLine: echo });
  let note = '';
  // The header's output path may be stale: if the build step worked but the script is not where it
  // says, run the compiled file wherever the build put it.
  const missing = /Cannot find module '([^']+raft-bench\.js)'/.exec(r.stderr)?.[1];
  if (r.code !== 0 && missing) {
    const compiled = findFile(join(REPO, 'test-results'), /^raft-bench\.js$/);
    if (compiled) {
      note = `the header's command could not find ${relative(REPO, missing)}; ran ${relative(REPO, compiled)}, which its build step had written`;
      say(`  ${note}`);
      r = await run(process.execPath, [compiled], { cwd: REPO, timeoutMs: 300_000, onLine: echo });
    }
  }
  const output = (r.stdout + (r.code === 0 ? '' : r.stderr)).replace(/\x1b\[[0-9;]*m/g, '').trim().split('\n').slice(-40).join('\n');
  ctx.results.raft = { status: r.code === 0 ? 'ran' : 'failed', command, file, note, exit: r.code, seconds: (performance.now() - t) / 1000, output };
}

// ------------------------------------------------------------------ main

/** For a crashed member: the fatal/error lines of its log (the error names the log file). */
function failureDetail(err) {
  const file = /see (\S+\.log)/.exec(err instanceof Error ? err.message : '')?.[1];
  if (!file || !existsSync(file)) return '';
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => /"level":(50|60)|Error|error:/.test(l));
  return lines.slice(-3).map((l) => `    ${l.slice(0, 600)}`).join('\n');
}

/** An argument as a shell would need it typed. */
function shellQuote(arg) {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function writeReport(results, outDir, command) {
  mkdirSync(outDir, { recursive: true });
  const { markdown, table } = renderMarkdown(results, { command, chartFile: 'bench-chart.svg' });
  writeFileSync(join(outDir, 'benchmarks.md'), markdown);
  writeFileSync(join(outDir, 'bench-chart.svg'), renderSvg(results));
  if (results.join || results.disk) writeFileSync(join(outDir, 'bench-durability.svg'), renderDurabilitySvg(results));
  return table;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (options.renderOnly) {
    const results = resultsFromMarkdown(readFileSync(options.renderOnly, 'utf8'));
    if (!results) throw new Error(`${options.renderOnly} holds no embedded results`);
    results.notes = [...(results.notes ?? []), ...options.notes];
    const outDir = options.out ?? join(REPO, 'docs');
    process.stdout.write(writeReport(results, outDir, results.command) + '\n');
    say(`redrew ${join(outDir, 'benchmarks.md')} and bench-chart.svg from ${options.renderOnly}`);
    return;
  }
  installExitHandlers();
  keepTempDirs(options.keepTemp);
  const notes = [...options.notes];
  const results = { mode: options.quick ? 'quick' : 'full', startedAt: new Date().toISOString(), options: { ...options, only: [...options.only] } };
  say(`flotilla benchmark, ${results.mode} run (${options.seconds} s per run, ${options.rounds} A/B round${options.rounds > 1 ? 's' : ''} per point)`);
  const build = await prepareBuild(REPO, options.ref, say, options.buildDir);
  const { etcdBin } = await ensureTools(options, notes);
  results.machine = await machineInfo();
  results.versions = await versions(etcdBin, build);
  say(
    `machine: ${results.machine.cores} cores (${results.machine.model}), ${(results.machine.ramBytes / 1024 ** 3).toFixed(0)} GiB, ` +
      `Linux ${results.machine.kernel}; load average ${results.machine.loadStart.join(' ')}`,
  );
  say(`versions: node ${results.versions.node}, etcd ${results.versions.etcd ?? '(none)'}, ${results.versions.wrk}, flotilla ${results.versions.flotillaCommit}${results.versions.flotillaDirty ? ' (+ uncommitted changes)' : ''}`);
  if (results.machine.loadStart[0] > results.machine.cores) {
    const ab = ['main', 'sizes', 'five'].some((p) => options.only.has(p));
    notes.push(
      `The machine was busy when the run started (load average ${results.machine.loadStart.join(', ')} on ${results.machine.cores} cores): absolute figures ` +
        (ab ? 'are depressed; the A/B ratios are the meaningful part.' : '(throughput, latency, catch-up times) are depressed; each section gives the load average during it.'),
    );
  }
  const ctx = {
    options, results, notes, etcdBin, build, running: [], say, repo: REPO, loaded: null,
    loadBudget: () => loadBudgetNow(options, ['rejoin', 'disk']),
  };
  results.failures = [];
  results.parts = {};
  results.attempted = [];
  // A section that fails (a member crashed, say) is reported, and the run goes on to the next.
  // Each part that completes is stamped with its own start, load average and build.
  const section = async (name, parts, fn) => {
    const ran = parts.filter((p) => options.only.has(p));
    results.attempted.push(...ran);
    const stamp = {
      startedAt: new Date().toISOString(),
      runStartedAt: results.startedAt,
      mode: results.mode,
      loadStart: loadavg().map((l) => +l.toFixed(2)),
      build: build.source,
      commit: build.commit,
      options: { seconds: options.seconds, rounds: options.rounds, keySpace: options.keySpace },
    };
    const t = performance.now();
    try {
      await fn(ctx);
      for (const p of ran) {
        results.parts[p] = { ...stamp, loadEnd: loadavg().map((l) => +l.toFixed(2)), seconds: (performance.now() - t) / 1000 };
      }
    } catch (err) {
      const detail = failureDetail(err);
      results.failures.push({ section: name, parts: ran, startedAt: results.startedAt, message: err instanceof Error ? err.message : String(err), detail });
      say(`${name}: FAILED: ${err instanceof Error ? err.message : String(err)}${detail ? `\n${detail}` : ''}`);
      await Promise.all(ctx.running.map((c) => c.stop().catch(() => {})));
      ctx.running.length = 0;
      ctx.loaded = null;
    }
  };
  try {
    if (options.only.has('main') || options.only.has('sizes')) await section('throughput points', ['main', 'sizes'], mainPoints);
    if (options.only.has('five')) {
      if (options.quick && !options.onlyGiven) {
        results.five = { skipped: 'skipped in --quick mode' };
        say('5 members: skipped in --quick mode');
      }
      else await section('5 members', ['five'], fiveMembers);
    }
    if (options.only.has('million')) await section(`${n0(options.keys)} keys`, ['million'], million);
    if (options.only.has('join')) await section('a fourth member joins', ['join'], joinPart);
    if (ctx.loaded) {
      await ctx.loaded.cluster.stop();
      ctx.running.length = 0;
      ctx.loaded = null;
    }
    if (options.only.has('rejoin')) await section('rejoin by snapshot', ['rejoin'], rejoinPart);
    if (options.only.has('disk')) await section('disk use over a long write run', ['disk'], diskPart);
    if (options.only.has('raft')) await section('Raft core micro-benchmark', ['raft'], raftBench);
  } finally {
    await Promise.all(ctx.running.map((c) => c.stop().catch(() => {})));
    await cleanup();
  }
  results.machine.loadEnd = loadavg().map((l) => +l.toFixed(2));
  results.finishedAt = new Date().toISOString();
  results.elapsedSeconds = (performance.now() - T0) / 1000;
  results.notes = notes;

  const outDir = options.out ?? (options.quick ? join(tmpdir(), 'flotilla-bench-quick') : join(REPO, 'docs'));
  results.command = ['node test/bench/run-bench.mjs', ...process.argv.slice(2).map(shellQuote)].join(' ');
  for (const p of Object.values(results.parts)) p.command = results.command;
  // The sections this run did not measure keep their figures from the page it replaces.
  const previous = join(outDir, 'benchmarks.md');
  if (!options.fresh && existsSync(previous)) {
    const old = resultsFromMarkdown(readFileSync(previous, 'utf8'));
    const kept = mergeResults(results, old);
    if (kept.length > 0) say(`kept from ${previous} (run of ${old.startedAt}): ${kept.join(', ')}`);
  }
  delete results.attempted;
  const table = writeReport(results, outDir, results.command);
  process.stdout.write(`\n${table}\n`);
  for (const f of results.failures) process.stdout.write(`FAILED: ${f.section}: ${f.message}\n`);
  for (const n of notes) process.stdout.write(`note: ${n}\n`);
  const rel = relative(process.cwd(), outDir);
  const shown = rel === '' ? '.' : rel.startsWith('..') ? outDir : rel;
  say(`done in ${formatDuration(results.elapsedSeconds)}; wrote ${join(shown, 'benchmarks.md')}, ${join(shown, 'bench-chart.svg')}${results.join || results.disk ? ` and ${join(shown, 'bench-durability.svg')}` : ''}`);
}

main().catch((err) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
