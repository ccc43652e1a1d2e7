#!/usr/bin/env node
// Where does a put at one connection spend its time, and what makes the slow ones slow? Starts a
// 3-member flotilla whose members log every GC pause (lib/gc-log-preload.mjs), warms it up, then
// runs wrk at one connection while tcpdump records the client port and the peer ports. For every
// request it finds, on the wire: the request reaching the leader, the appends leaving for the
// followers, the followers' replies, the answer. It prints
//  - wrk's figures beside the wire's (wrk corrects for coordinated omission; see wire-latency.mjs);
//  - three segments: request → first append sent, append → first follower reply, first reply →
//    answer (the leader's own log write, the apply and the answer; or waiting for a core);
//  - for the requests slower than --slow-ms: how many overlapped a GC pause on the leader, only on
//    a follower, or none, and which segment was the largest;
//  - what the quantiles would be if the leader could answer 0.3 ms after the second follower's
//    reply whatever its own log write (the dissertation's §10.2.1 allows counting a majority of
//    followers alone; flotilla waits for its own write, see docs/architecture.md);
//  - with --list, every slow request and the pauses beside it.
//
//   node test/bench/put1-timeline.mjs [--seconds=12] [--slow-ms=2.5] [--warm-up=4] [--value-bytes=100] [--list]
//
// Needs tcpdump and the right to capture on the loopback interface (root). A follower's reply is
// the first packet from its connection to the leader's peer port after the append left; a reply
// to an earlier heartbeat that arrives just then is counted as the acknowledgement, so a few
// segments are off by one message.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { captureScratchDir, PAYLOAD_ONLY, startCapture } from './lib/capture.mjs';
import { FlotillaCluster, preload } from './lib/clusters.mjs';
import { cleanup, installExitHandlers, makeTempDir } from './lib/proc.mjs';
import { runWrk } from './lib/wrk.mjs';

const REPO = resolve(import.meta.dirname, '../..');
const KEYS = 10_000;
/** What the leader needs after the second reply: the apply and the answer (their median). */
const ANSWER_AFTER_REPLY_MS = 0.3;

function parseArgs(argv) {
  const o = { seconds: 12, slowMs: 2.5, warmUp: 4, valueBytes: 100, list: false };
  for (const a of argv) {
    const [k, v] = a.split('=');
    if (k === '--list') o.list = true;
    else if (k === '--seconds' && Number(v) >= 1 && Number(v) <= 120) o.seconds = Number(v);
    else if (k === '--slow-ms' && Number(v) > 0) o.slowMs = Number(v);
    else if (k === '--warm-up' && Number(v) >= 0 && Number(v) <= 60) o.warmUp = Number(v);
    else if (k === '--value-bytes' && Number.isInteger(Number(v)) && Number(v) >= 1 && Number(v) <= 65536) o.valueBytes = Number(v);
    else throw new Error(`unknown option ${a} (see the head of this file)`);
  }
  return o;
}

/**
 * One record per answered request from `tcpdump -tt -q -nn` lines: { in, appends: Map(port →
 * time), replies: Map(source port → first reply after the appends), out }.
 */
function requestsFrom(text, leader, followers) {
  const requests = [];
  let cur = null;
  for (const line of text.split('\n')) {
    const m = /^(\d+\.\d+) IP [\d.]+\.(\d+) > [\d.]+\.(\d+): tcp (\d+)/.exec(line);
    if (!m || m[4] === '0') continue;
    const at = Number(m[1]) * 1000;
    const from = Number(m[2]);
    const to = Number(m[3]);
    if (to === leader.clientPort) {
      cur = { in: at, appends: new Map(), replies: new Map(), out: NaN };
      requests.push(cur);
    } else if (cur === null || !Number.isNaN(cur.out)) {
      continue;
    } else if (from === leader.clientPort) {
      cur.out = at;
    } else if (followers.some((f) => f.peerPort === to)) {
      if (!cur.appends.has(to)) cur.appends.set(to, at);
    } else if (to === leader.peerPort && cur.appends.size > 0 && !cur.replies.has(from)) {
      cur.replies.set(from, at);
    }
  }
  return requests.filter((r) => !Number.isNaN(r.out) && r.appends.size === followers.length && r.replies.size > 0);
}

function quantile(sorted, q) {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function describe(values) {
  const s = Float64Array.from(values.filter((v) => Number.isFinite(v))).sort();
  return `p50 ${quantile(s, 0.5).toFixed(2)}, p90 ${quantile(s, 0.9).toFixed(2)}, p99 ${quantile(s, 0.99).toFixed(2)}, p999 ${quantile(s, 0.999).toFixed(2)}, max ${quantile(s, 1).toFixed(2)} ms`;
}

function readPauses(dir, members, leader) {
  const pauses = [];
  for (const file of readdirSync(dir)) {
    const pid = Number(/^gc-(\d+)\.txt$/.exec(file)?.[1]);
    const m = members.find((x) => x.child?.pid === pid);
    if (!m) continue;
    for (const line of readFileSync(join(dir, file), 'utf8').trim().split('\n')) {
      const [start, ms, kind] = line.split(' ');
      pauses.push({ who: m === leader ? 'leader' : m.name, start: Number(start), end: Number(start) + Number(ms), ms: Number(ms), kind });
    }
  }
  return pauses;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  installExitHandlers();
  const dir = await makeTempDir('timeline');
  const shm = await captureScratchDir('timeline', dir);
  process.env.FLOTILLA_BENCH_GC_LOG_DIR = shm;
  try {
    const cluster = await FlotillaCluster.start({ size: 3, repo: REPO, nodeFlags: () => ['--import', join(REPO, 'test/bench/lib/gc-log-preload.mjs')] });
    const leader = await cluster.leader();
    const followers = cluster.members.filter((m) => m !== leader);
    console.log(`leader ${leader.name}; writing the ${KEYS} keys once, then ${o.warmUp} s of warm-up at 64 connections ...`);
    await preload(cluster, KEYS, o.valueBytes);
    if (o.warmUp > 0) await runWrk({ repo: REPO, url: leader.clientUrl, mode: 'flotilla-put', connections: 64, seconds: o.warmUp, keys: KEYS, valueBytes: o.valueBytes });
    const ports = cluster.members.flatMap((m) => [`port ${m.clientPort}`, `port ${m.peerPort}`]).join(' or ');
    const capture = await startCapture({ dir: shm, name: 'capture', filter: `(${ports}) and ${PAYLOAD_ONLY}`, logDir: dir });
    const w = await runWrk({ repo: REPO, url: leader.clientUrl, mode: 'flotilla-put', connections: 1, seconds: o.seconds, keys: KEYS, threads: 1, valueBytes: o.valueBytes });
    const text = await capture.stop();
    const requests = requestsFrom(text, leader, followers);
    const pauses = readPauses(shm, cluster.members, leader);
    await cluster.stop();

    const firstAppend = (r) => Math.min(...r.appends.values());
    const replies = (r) => [...r.replies.values()].sort((a, b) => a - b);
    console.log(`\nwrk (corrected for coordinated omission): ${Math.round(w.rps)} req/s, p50 ${w.p50Ms.toFixed(2)}, p99 ${w.p99Ms.toFixed(2)}, p999 ${w.p999Ms.toFixed(2)}, max ${w.maxMs.toFixed(2)} ms`);
    console.log(`on the wire, ${requests.length} requests: ${describe(requests.map((r) => r.out - r.in))}`);
    console.log(`  request → first append   ${describe(requests.map((r) => firstAppend(r) - r.in))}`);
    console.log(`  append → first reply     ${describe(requests.map((r) => replies(r)[0] - firstAppend(r)))}`);
    console.log(`  first reply → answer     ${describe(requests.map((r) => r.out - replies(r)[0]))}`);

    const slow = requests.filter((r) => r.out - r.in > o.slowMs);
    const overlap = (r) => pauses.filter((p) => p.end > r.in && p.start < r.out);
    const counts = { leader: 0, follower: 0, none: 0 };
    const largest = { 'request → append': 0, 'append → reply': 0, 'reply → answer': 0 };
    for (const r of slow) {
      const hits = overlap(r);
      counts[hits.some((p) => p.who === 'leader') ? 'leader' : hits.length > 0 ? 'follower' : 'none']++;
      const seg = [firstAppend(r) - r.in, replies(r)[0] - firstAppend(r), r.out - replies(r)[0]];
      largest[Object.keys(largest)[seg.indexOf(Math.max(...seg))]]++;
    }
    console.log(`\n${slow.length} requests over ${o.slowMs} ms: ${counts.leader} overlapped a GC pause of the leader, ${counts.follower} only a follower's, ${counts.none} none`);
    console.log(`  largest segment: ${Object.entries(largest).map(([k, n]) => `${k} ${n}`).join(', ')}`);
    for (const who of ['leader', ...followers.map((f) => f.name)]) {
      const mine = pauses.filter((p) => p.who === who && p.start >= requests[0]?.in && p.start <= requests.at(-1)?.out);
      const kinds = [...new Set(mine.map((p) => p.kind))].map((k) => {
        const of = mine.filter((p) => p.kind === k);
        return `${k} ${of.length} (${of.reduce((s, p) => s + p.ms, 0).toFixed(0)} ms, longest ${Math.max(...of.map((p) => p.ms)).toFixed(1)})`;
      });
      console.log(`  GC pauses of ${who} during the run: ${kinds.join(', ') || 'none'}`);
    }
    const whatIf = requests.map((r) => {
      const both = replies(r)[followers.length - 1];
      return r.replies.size < followers.length ? r.out - r.in : Math.min(r.out - r.in, both + ANSWER_AFTER_REPLY_MS - r.in);
    });
    console.log(`\nif the leader answered ${ANSWER_AFTER_REPLY_MS} ms after both followers' replies, whatever its own log write: ${describe(whatIf)}`);
    if (o.list) {
      console.log('');
      for (const r of slow) {
        const gc = overlap(r).map((p) => `${p.who} ${p.kind} at +${(p.start - r.in).toFixed(1)} for ${p.ms.toFixed(1)} ms`);
        console.log(`  at ${((r.in - requests[0].in) / 1000).toFixed(3)} s, ${(r.out - r.in).toFixed(2)} ms: append +${(firstAppend(r) - r.in).toFixed(2)}, replies +${replies(r).map((t) => (t - r.in).toFixed(2)).join(' +')}${gc.length ? ` | ${gc.join('; ')}` : ''}`);
      }
    }
  } finally {
    await cleanup();
  }
}

main().catch(async (err) => {
  console.error(`put1-timeline: ${err.message}`);
  await cleanup();
  process.exit(1);
});
