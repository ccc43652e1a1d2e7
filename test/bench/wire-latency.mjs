#!/usr/bin/env node
// Where does wrk's tail come from? Runs wrk against a server while tcpdump records the server's
// client port, then times every request on the wire: from the request's first packet to the
// answer's first packet, both as the kernel saw them. The wire time leaves out the load
// generator's own delays; wrk's figures also add requests it never sent (below). It prints both,
// and the first request of each connection apart from the rest.
//
//   node test/bench/wire-latency.mjs [--system=flotilla|etcd|bare-http] [--op=put|get]
//                                    [--connections=256] [--seconds=10] [--rounds=2]
//
// Needs tcpdump and the right to capture on the loopback interface (root). The capture is
// written under /dev/shm when it exists, so it adds no disk writes beside the members' fsyncs.
//
// What it showed (docs/benchmarks.md, "put at 256 connections: where wrk's p99 comes from"):
//  - wrk corrects its latency figures for coordinated omission: after a run it adds, for each
//    request that took more than twice the mean interval between a connection's requests,
//    the requests that connection would have sent meanwhile, with latencies stepping down
//    from the slow one's (wg/wrk, stats_correct). A few hundred slow requests move its p99.
//  - On a loaded Node server those are the first requests of the 252 connections wrk opens at
//    once: libuv 1.46 (Node 20) accepts one connection per turn of the event loop, and a turn
//    with 250 busy connections takes milliseconds, so the last connections wait hundreds of
//    milliseconds for their first answer. Bare node:http shows the same.
import { resolve } from 'node:path';
import { captureScratchDir, PAYLOAD_ONLY, startCapture } from './lib/capture.mjs';
import { BareServer, EtcdCluster, FlotillaCluster, preload } from './lib/clusters.mjs';
import { cleanup, installExitHandlers, makeTempDir, which } from './lib/proc.mjs';
import { runWrk } from './lib/wrk.mjs';

const REPO = resolve(import.meta.dirname, '../..');
const KEYS = 10_000;
const SLOW_MS = 100;

function parseArgs(argv) {
  const o = { system: 'flotilla', op: 'put', connections: 256, seconds: 10, rounds: 2 };
  for (const a of argv) {
    const [k, v] = a.split('=');
    if (k === '--system' && ['flotilla', 'etcd', 'bare-http'].includes(v)) o.system = v;
    else if (k === '--op' && ['put', 'get'].includes(v)) o.op = v;
    else if (['--connections', '--seconds', '--rounds'].includes(k) && Number(v) >= 1) o[k.slice(2)] = Number(v);
    else throw new Error(`unknown option ${a} (see the head of this file)`);
  }
  return o;
}

/** Starts the server under test; returns what wrk hits and how to stop it. */
async function startSystem(o, dir) {
  if (o.system === 'bare-http') {
    const server = await BareServer.http({ repo: REPO, dir });
    return { url: server.url, mode: 'bare-get', stop: () => server.stop() };
  }
  const etcdBin = o.system === 'etcd' ? await which('etcd') : null;
  if (o.system === 'etcd' && !etcdBin) throw new Error('etcd is not installed (apt-get install etcd-server)');
  const cluster = etcdBin ? await EtcdCluster.start({ size: 3, etcdBin }) : await FlotillaCluster.start({ size: 3, repo: REPO });
  const leader = await cluster.leader();
  console.log(`${o.system}: leader ${leader.name}; writing the ${KEYS} keys once ...`);
  await preload(cluster, KEYS, 100);
  return { url: leader.clientUrl, mode: `${o.system}-${o.op}`, stop: () => cluster.stop() };
}

/**
 * Request and answer times per connection, from `tcpdump -tt -q` lines: on a connection with one
 * request in flight, a request is the first payload packet to the server after an answer, and
 * its answer the first payload packet back. Returns one { ms, first } per answered request.
 */
function pairRequests(text, serverPort) {
  const connections = new Map();
  const answers = [];
  const toServer = `.${serverPort}`;
  for (const line of text.split('\n')) {
    const m = /^(\d+\.\d+) IP (\S+) > (\S+): tcp (\d+)/.exec(line);
    if (!m || m[4] === '0') continue;
    const at = Number(m[1]) * 1000;
    const inbound = m[3].endsWith(toServer);
    const client = inbound ? m[2] : m[3];
    let c = connections.get(client);
    if (!c) connections.set(client, (c = { sentAt: -1, answered: 0 }));
    if (inbound && c.sentAt < 0) c.sentAt = at;
    else if (!inbound && c.sentAt >= 0) {
      answers.push({ ms: at - c.sentAt, first: c.answered === 0, client });
      c.sentAt = -1;
      c.answered++;
    }
  }
  return { answers, connections };
}

function quantile(values, q) {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const ms = (v) => `${v.toFixed(1)} ms`;

async function main() {
  const o = parseArgs(process.argv.slice(2));
  installExitHandlers();
  const dir = await makeTempDir('wire');
  const captureDir = await captureScratchDir('wire', dir);
  try {
    const system = await startSystem(o, dir);
    const port = new URL(system.url).port;
    console.log(`${o.system}: warm-up, 64 connections, 4 s ...`);
    await runWrk({ repo: REPO, url: system.url, mode: system.mode, connections: 64, seconds: 4, keys: KEYS });
    for (let r = 1; r <= o.rounds; r++) {
      const capture = await startCapture({ dir: captureDir, name: `round-${r}`, filter: `tcp port ${port} and ${PAYLOAD_ONLY}`, logDir: dir });
      const w = await runWrk({ repo: REPO, url: system.url, mode: system.mode, connections: o.connections, seconds: o.seconds, keys: KEYS });
      const text = await capture.stop();
      const { answers, connections } = pairRequests(text, port);
      // etcd's HTTP gateway talks to its own gRPC server through the same port: connections
      // beyond wrk's, each carrying more answers than any of wrk's (it multiplexes them all).
      // Leave the busiest connections beyond wrk's count out. (A rule based on the median count,
      // as before, missed it at one connection, where half the connections are the gateway's.)
      const extra = Math.max(0, connections.size - o.connections);
      const byAnswers = [...connections].sort(([, a], [, b]) => b.answered - a.answered);
      const gateway = new Set(byAnswers.slice(0, extra).map(([k]) => k));
      const mine = answers.filter((a) => !gateway.has(a.client));
      const all = mine.map((a) => a.ms);
      const first = mine.filter((a) => a.first).map((a) => a.ms);
      const rest = mine.filter((a) => !a.first).map((a) => a.ms);
      const slow = mine.filter((a) => a.ms > SLOW_MS);
      console.log(`\nround ${r}/${o.rounds}: ${system.mode}, ${o.connections} connections, ${o.seconds} s`);
      console.log(`  wrk (corrected for coordinated omission): ${Math.round(w.rps)} req/s, p50 ${ms(w.p50Ms)}, p99 ${ms(w.p99Ms)}, max ${ms(w.maxMs)}`);
      console.log(`  on the wire, ${all.length} answers on ${connections.size - gateway.size} connections${gateway.size ? ` (${gateway.size} gateway connection left out)` : ''}: p50 ${ms(quantile(all, 0.5))}, p99 ${ms(quantile(all, 0.99))}, p999 ${ms(quantile(all, 0.999))}, max ${ms(quantile(all, 1))}`);
      console.log(`  first request of each connection (${first.length}): p50 ${ms(quantile(first, 0.5))}, max ${ms(quantile(first, 1))}`);
      console.log(`  every later request: p99 ${ms(quantile(rest, 0.99))}, p999 ${ms(quantile(rest, 0.999))}, max ${ms(quantile(rest, 1))}`);
      console.log(`  over ${SLOW_MS} ms: ${slow.length} requests, ${slow.filter((a) => a.first).length} of them first requests`);
    }
    await system.stop();
  } finally {
    await cleanup();
  }
}

main().catch(async (err) => {
  console.error(`wire-latency: ${err.message}`);
  await cleanup();
  process.exit(1);
});
