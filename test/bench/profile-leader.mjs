#!/usr/bin/env node
// Where does a flotilla leader spend its time under load? Starts a 3-member flotilla with every
// member under `node --cpu-prof`, loads the leader with wrk, stops the members (SIGTERM writes the
// profiles) and summarizes the leader's profile: self time by area and the top functions. Also
// reports CPU per thread (main JS thread vs libuv pool, where LevelDB works, vs V8's GC helpers)
// and the leader's own metrics (fsync time, entries per synced batch).
//
//   node test/bench/profile-leader.mjs [--op=put|get|stale] [--connections=64] [--seconds=20]
//                                      [--value-bytes=100] [--ref=GIT_REF | --build-dir=DIR] [--out=DIR]
//
// Without --ref it profiles a copy of the current dist/; with --ref, that commit built for the run.
//
// The .cpuprofile files are kept in DIR (default: a new /tmp/flotilla-prof-* dir); open the
// leader's in Chrome DevTools (Performance → Load profile) for the flame chart.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { prepareBuild } from './lib/build.mjs';
import { FlotillaCluster, preload } from './lib/clusters.mjs';
import { cleanup, http, installExitHandlers, sleep } from './lib/proc.mjs';
import { runWrk } from './lib/wrk.mjs';

const REPO = resolve(import.meta.dirname, '../..');

function parseArgs(argv) {
  const o = { op: 'put', connections: 64, seconds: 20, out: null, valueBytes: 100, ref: null };
  for (const a of argv) {
    const [k, v] = a.split('=');
    if (k === '--op') o.op = v;
    else if (k === '--connections') o.connections = Number(v);
    else if (k === '--seconds') o.seconds = Number(v);
    else if (k === '--value-bytes') o.valueBytes = Number(v);
    else if (k === '--out') o.out = resolve(v);
    else if (k === '--ref') o.ref = v;
    else if (k === '--build-dir') o.buildDir = resolve(v);
    else throw new Error(`unknown option ${a}`);
  }
  o.out ??= join('/tmp', `flotilla-prof-${Date.now()}`);
  return o;
}

/** CPU ticks per thread name of a process, from /proc/PID/task/TID/stat (utime + stime). */
function threadTicks(pid) {
  const out = new Map();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      out.set(`${tid}:${comm}`, ticks);
    } catch {
      /* thread ended */
    }
  }
  return out;
}

/** Node 20 names every thread "node": the main thread is the one whose id is the process id. */
function threadGroup(tid, comm, pid) {
  if (Number(tid) === pid) return 'main thread (JS: HTTP, Raft, apply; GC pauses)';
  if (/ProfEvntProc/.test(comm)) return 'the profiler itself';
  return 'other threads (libuv pool: LevelDB reads, writes, fsync; V8 GC and compiler helpers)';
}

const AREAS = [
  ['GC', (f) => f.functionName === '(garbage collector)'],
  ['idle', (f) => f.functionName === '(idle)'],
  ['VM/native (program)', (f) => f.functionName === '(program)'],
  ['HTTP: Fastify', (f) => /node_modules\/(fastify|@fastify|find-my-way|avvio|light-my-request|fast-json-stringify|fast-querystring|toad-cache|secure-json-parse|rfdc|process-warning|abstract-logging)\//.test(f.url)],
  ['HTTP: Node http/net', (f) => /^node:(_http|http|net|internal\/(http|stream|streams|net)|stream|internal\/js_stream)/.test(f.url)],
  ['peer transport: undici', (f) => /node_modules\/undici\//.test(f.url)],
  ['LevelDB (classic-level, abstract-level)', (f) => /node_modules\/(classic-level|abstract-level|level|level-transcoder|module-error|maybe-combine-errors|node-gyp-build)\//.test(f.url)],
  ['pino logging', (f) => /node_modules\/(pino|sonic-boom|thread-stream|on-exit-leak-free|quick-format-unescaped|fast-redact|safe-stable-stringify|atomic-sleep)\//.test(f.url)],
  ['metrics: prom-client', (f) => /node_modules\/(prom-client|tdigest|bintrees)\//.test(f.url)],
  ['zod', (f) => /node_modules\/zod\//.test(f.url)],
  ['raft core', (f) => /\/dist\/raft\//.test(f.url)],
  ['codec (transport/codec, kv/command, kv-record, level-format)', (f) => /\/dist\/(transport\/codec|kv\/command|kv\/kv-record|storage\/level-format|util\/bytes|storage\/crc32)/.test(f.url)],
  ['storage (level-storage)', (f) => /\/dist\/storage\//.test(f.url)],
  ['kv state machine', (f) => /\/dist\/kv\//.test(f.url)],
  ['transport (peer-client, peer-routes)', (f) => /\/dist\/transport\//.test(f.url)],
  ['member (loop, proposals, reads, metrics)', (f) => /\/dist\/member\//.test(f.url)],
  ['api routes (dist/api)', (f) => /\/dist\/api\//.test(f.url)],
  ['other flotilla (dist/)', (f) => /\/dist\//.test(f.url)],
  ['Node timers / promises / microtasks', (f) => /^node:internal\/(timers|process\/task_queues|async_hooks)/.test(f.url) || f.functionName === 'processTicksAndRejections'],
  ['Node: buffers / text / other internals', (f) => /^node:/.test(f.url)],
  ['native (no script)', (f) => f.url === ''],
  ['other JS', () => true],
];

function areaOf(frame) {
  return AREAS.find(([, test]) => test(frame))[0];
}

/** Self time (µs) per node of a .cpuprofile, from samples and timeDeltas. */
export function summarizeProfile(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    const dt = profile.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byArea = new Map();
  const byFunction = new Map();
  for (const [id, us] of self) {
    const f = byId.get(id).callFrame;
    const area = areaOf(f);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
    const short = f.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/');
    const key = `${f.functionName || '(anonymous)'}  ${short}${f.url ? `:${f.lineNumber + 1}` : ''}`;
    const prev = byFunction.get(key) ?? { us: 0, area };
    prev.us += us;
    byFunction.set(key, prev);
  }
  return { total, byArea, byFunction };
}

function pct(part, whole) {
  return `${((100 * part) / whole).toFixed(1).padStart(5)}%`;
}

function histogramMeans(metricsText) {
  const out = {};
  for (const name of ['flotilla_fsync_seconds', 'flotilla_ready_entries', 'flotilla_proposal_seconds']) {
    const sum = Number(new RegExp(`^${name}_sum(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(metricsText)?.[1]);
    const count = Number(new RegExp(`^${name}_count(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(metricsText)?.[1]);
    out[name] = { sum, count, mean: sum / count };
  }
  return out;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  installExitHandlers();
  mkdirSync(o.out, { recursive: true });
  const build = await prepareBuild(REPO, o.ref, (m) => console.log(m), o.buildDir);
  console.log(`profiling flotilla ${build.source}`);
  console.log(`starting 3 members under --cpu-prof (profiles in ${o.out}) ...`);
  const cluster = await FlotillaCluster.start({
    size: 3,
    repo: build.dir,
    nodeFlags: (m) => ['--cpu-prof', `--cpu-prof-dir=${join(o.out, m.name)}`],
  });
  const leader = await cluster.leader();
  const mode = { put: 'flotilla-put', get: 'flotilla-get', stale: 'flotilla-get-stale' }[o.op];
  console.log(`leader ${leader.name} (pid ${leader.child.pid}); ${o.op === 'put' ? '' : 'writing the 10,000 keys, '}warming up (3 s of the same load) ...`);
  // Reads need every key present; writes do not (and a preload would dominate a small run's profile).
  if (o.op !== 'put') await preload(cluster, 10_000, o.valueBytes);
  await runWrk({ repo: REPO, url: leader.clientUrl, mode, connections: o.connections, seconds: 3, valueBytes: o.valueBytes });
  const before = await http('GET', `${leader.clientUrl}/metrics`);
  const ticks0 = threadTicks(leader.child.pid);
  const pids = cluster.pids();
  const procTicks = () => pids.map((pid) => [...threadTicks(pid).values()].reduce((a, b) => a + b, 0));
  const all0 = procTicks();
  const t0 = performance.now();
  console.log(`profiling window: ${o.op}, ${o.connections} connections, ${o.seconds} s ...`);
  const r = await runWrk({ repo: REPO, url: leader.clientUrl, mode, connections: o.connections, seconds: o.seconds, valueBytes: o.valueBytes });
  const wall = (performance.now() - t0) / 1000;
  const ticks1 = threadTicks(leader.child.pid);
  const all1 = procTicks();
  const after = await http('GET', `${leader.clientUrl}/metrics`);
  console.log(`wrk: ${Math.round(r.rps)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, errors ${r.errors}`);
  await sleep(200);
  console.log('stopping the members (SIGTERM) so they write their profiles ...');
  await cluster.stop({ keepData: false });
  await cleanup();

  const lines = [];
  const log = (s = '') => {
    lines.push(s);
    console.log(s);
  };
  log(`flotilla ${build.source}`);
  log(`\n== leader ${leader.name}: ${o.op}, ${o.connections} connections, ${o.seconds} s: ${Math.round(r.rps)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms`);
  const groups = new Map();
  for (const [k, v] of ticks1) {
    const d = v - (ticks0.get(k) ?? 0);
    const [tid, ...comm] = k.split(':');
    const g = threadGroup(tid, comm.join(':'), leader.child.pid);
    groups.set(g, (groups.get(g) ?? 0) + d);
  }
  log(`\nCPU by thread during the window (${wall.toFixed(1)} s wall; 100% = one core):`);
  for (const [g, t] of [...groups].sort((a, b) => b[1] - a[1])) log(`  ${((t / 100 / wall) * 100).toFixed(0).padStart(4)}%  ${g}`);

  const perMember = all1.map((t, i) => (t - all0[i]) / 100);
  const totalCpu = perMember.reduce((a, b) => a + b, 0);
  log(`CPU of each member during the window: ${cluster.members.map((m, i) => `${m.name}${m === leader ? ' (leader)' : ''} ${((perMember[i] / wall) * 100).toFixed(0)}%`).join(', ')}` +
    `; all members: ${((totalCpu * 1e6) / r.requests).toFixed(0)} µs CPU per request`);
  if (before.status === 200 && after.status === 200) {
    const a = histogramMeans(before.body);
    const b = histogramMeans(after.body);
    const d = (n) => ({ count: b[n].count - a[n].count, mean: (b[n].sum - a[n].sum) / (b[n].count - a[n].count) });
    const fs = d('flotilla_fsync_seconds');
    const re = d('flotilla_ready_entries');
    const pr = d('flotilla_proposal_seconds');
    log(`\nleader metrics during the window: ${fs.count} synced batches (${(fs.count / wall).toFixed(0)}/s), mean ${(fs.mean * 1000).toFixed(2)} ms each;` +
      ` ${re.mean.toFixed(1)} entries per persisted batch; proposal→apply mean ${(pr.mean * 1000).toFixed(2)} ms`);
  }

  const follower = cluster.members.find((m) => m !== leader);
  for (const [m, role, top] of [[leader, 'leader', 30], [follower, 'follower', 15]]) {
    const dir = join(o.out, m.name);
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) {
      log(`no .cpuprofile in ${dir}`);
      continue;
    }
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    const { total, byArea, byFunction } = summarizeProfile(profile);
    const busy = total - (byArea.get('idle') ?? 0);
    log(`\n${role} ${m.name} profile ${join(dir, file)}: ${(total / 1e6).toFixed(1)} s sampled (whole run: start, warm-up, window), ${(busy / 1e6).toFixed(1)} s not idle`);
    log('\nself time by area (share of non-idle main-thread time):');
    for (const [area, us] of [...byArea].sort((a, b) => b[1] - a[1])) {
      if (area === 'idle' || us / busy < 0.002) continue;
      log(`  ${pct(us, busy)}  ${(us / 1000).toFixed(0).padStart(7)} ms  ${area}`);
    }
    log(`  (idle: ${(((byArea.get('idle') ?? 0) / total) * 100).toFixed(1)}% of the sampled time)`);
    log(`\ntop ${top} functions by self time (${role}):`);
    for (const [k, v] of [...byFunction].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1].us - a[1].us).slice(0, top)) {
      log(`  ${pct(v.us, busy)}  ${k}   [${v.area}]`);
    }
  }
  writeFileSync(join(o.out, 'summary.txt'), lines.join('\n') + '\n');
  console.log(`\nsummary written to ${join(o.out, 'summary.txt')}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
