#!/usr/bin/env node
// Did a change move a number? Two flotilla builds, A and B, under the same wrk points, alternating
// A, B, A, B so noise on the machine hits both; prints throughput, p50/p99 and the CPU all three
// members used per request (the figure that matters on a 2-core machine shared with wrk).
//
//   node test/bench/ab-builds.mjs --a=REF --b=REF [--points=put-1,put-64,put-256,get-64,stale-64]
//                                 [--seconds=6] [--rounds=2] [--value-bytes=100]
//
// REF is a git commit (built in a temp dir with `git archive`, never touching the work tree) or
// `dist` for a copy of the current dist/. Example: --a=HEAD~3 --b=dist.
import { resolve } from 'node:path';
import { prepareBuild } from './lib/build.mjs';
import { FlotillaCluster, preload } from './lib/clusters.mjs';
import { cleanup, cpuSeconds, installExitHandlers, sleep } from './lib/proc.mjs';
import { runWrk } from './lib/wrk.mjs';

const REPO = resolve(import.meta.dirname, '../..');
const MODES = { put: 'flotilla-put', get: 'flotilla-get', stale: 'flotilla-get-stale' };

function parseArgs(argv) {
  const o = { a: null, b: null, points: ['put-1', 'put-64', 'put-256'], seconds: 6, rounds: 2, valueBytes: 100 };
  for (const arg of argv) {
    const [k, v] = arg.split('=');
    if (k === '--a') o.a = v;
    else if (k === '--b') o.b = v;
    else if (k === '--points') o.points = v.split(',');
    else if (k === '--seconds') o.seconds = Number(v);
    else if (k === '--rounds') o.rounds = Number(v);
    else if (k === '--value-bytes') o.valueBytes = Number(v);
    else throw new Error(`unknown option ${arg} (see the header of ${import.meta.filename})`);
  }
  if (!o.a || !o.b) throw new Error('--a=REF and --b=REF are required');
  for (const p of o.points) if (!/^(put|get|stale)-\d+$/.test(p)) throw new Error(`bad point ${p}`);
  if (!(o.seconds >= 1 && o.seconds <= 120) || !(o.rounds >= 1 && o.rounds <= 10)) throw new Error('--seconds 1..120, --rounds 1..10');
  if (!(Number.isInteger(o.valueBytes) && o.valueBytes >= 1 && o.valueBytes <= 1024 * 1024)) throw new Error('--value-bytes 1..1048576');
  return o;
}

async function measure(build, point, seconds, valueBytes) {
  const [op, conns] = point.split('-');
  const cluster = await FlotillaCluster.start({ size: 3, repo: build.dir });
  try {
    await preload(cluster, 10_000, 100); // the keys exist; puts replace them with --value-bytes values
    const leader = await cluster.leader();
    const pids = cluster.members.map((m) => m.child.pid);
    const before = pids.map(cpuSeconds);
    const w = await runWrk({ repo: REPO, url: leader.clientUrl, mode: MODES[op], connections: Number(conns), seconds, valueBytes, threads: Number(conns) === 1 ? 1 : 2 });
    const cpu = pids.map(cpuSeconds).reduce((sum, after, i) => sum + after - before[i], 0);
    return { rps: w.rps, p50: w.p50Ms, p99: w.p99Ms, errors: w.errors, usPerReq: (cpu * 1e6) / Math.max(1, w.requests) };
  } finally {
    await cluster.stop();
  }
}

async function main() {
  installExitHandlers();
  const o = parseArgs(process.argv.slice(2));
  const say = (s) => console.error(s);
  const builds = {};
  for (const side of ['a', 'b']) builds[side] = await prepareBuild(REPO, o[side] === 'dist' ? null : o[side], say);
  const rows = {};
  for (let round = 0; round < o.rounds; round++) {
    for (const point of o.points) {
      for (const side of ['a', 'b']) {
        const r = await measure(builds[side], point, o.seconds, o.valueBytes);
        (rows[`${point} ${side}`] ??= []).push(r);
        say(`round ${round + 1}/${o.rounds} ${point} ${side.toUpperCase()}: ${Math.round(r.rps)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(1)} ms, ${Math.round(r.usPerReq)} us CPU/req, ${r.errors} errors`);
        await sleep(300);
      }
    }
  }
  const mean = (xs, f) => xs.reduce((s, x) => s + f(x), 0) / xs.length;
  console.log(`A = ${builds.a.source}\nB = ${builds.b.source}\n`);
  console.log('| point | A req/s | B req/s | B/A | A p50 / p99 ms | B p50 / p99 ms | A us CPU/req | B us CPU/req |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const point of o.points) {
    const a = rows[`${point} a`];
    const b = rows[`${point} b`];
    const ra = mean(a, (x) => x.rps);
    const rb = mean(b, (x) => x.rps);
    console.log(
      `| ${point} | ${Math.round(ra)} | ${Math.round(rb)} | ${(rb / ra).toFixed(2)}x | ${mean(a, (x) => x.p50).toFixed(2)} / ${mean(a, (x) => x.p99).toFixed(1)} | ` +
        `${mean(b, (x) => x.p50).toFixed(2)} / ${mean(b, (x) => x.p99).toFixed(1)} | ${Math.round(mean(a, (x) => x.usPerReq))} | ${Math.round(mean(b, (x) => x.usPerReq))} |`,
    );
  }
  await cleanup();
}

main().catch(async (err) => {
  console.error(err instanceof Error ? err.stack : err);
  await cleanup();
  process.exit(1);
});
