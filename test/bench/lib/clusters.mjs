// A flotilla cluster (N `node bin/flotilla.js serve` processes) and an etcd cluster (N `etcd`
// processes), both on 127.0.0.1 with free ports and data in temp dirs, with the same small
// interface: start, wait for a leader, find the leader's client URL, write a sentinel to read the
// store revision, restart a member, stop.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, http, makeTempDir, removeTempDir, sleep, startChild, stopChild } from './proc.mjs';

const HOST = '127.0.0.1';
const SENTINEL_KEY = '__bench_sentinel';

async function allocateMembers(size, prefix, dir) {
  const members = [];
  for (let i = 1; i <= size; i++) {
    const clientPort = await freePort();
    const peerPort = await freePort();
    members.push({
      name: `${prefix}${i}`,
      clientPort,
      peerPort,
      clientUrl: `http://${HOST}:${clientPort}`,
      peerUrl: `http://${HOST}:${peerPort}`,
      dataDir: join(dir, `${prefix}${i}`),
      logFile: join(dir, `${prefix}${i}.log`),
      child: null,
    });
  }
  return members;
}

async function waitFor(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await probe();
    if (r) return r;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Spawns a cluster and waits for it. freePort() finds a port free, but another process may take
 * it before the member binds it (two clusters start side by side here, and every outgoing
 * connection takes an ephemeral port): a member that lost that race exits with EADDRINUSE. Then
 * the cluster is stopped and started again on new ports, up to 3 times.
 */
async function startRetryingPorts(spawnCluster, tries = 3) {
  for (let attempt = 1; ; attempt++) {
    const cluster = await spawnCluster();
    try {
      await cluster.waitReady();
      return cluster;
    } catch (err) {
      const lostRace = cluster.members.some((m) => {
        try {
          return /EADDRINUSE|address already in use/.test(readFileSync(m.logFile, 'utf8'));
        } catch {
          return false;
        }
      });
      if (!lostRace || attempt >= tries) throw err;
      await cluster.stop();
    }
  }
}

class Cluster {
  constructor(kind, members, dir) {
    this.kind = kind;
    this.members = members;
    this.dir = dir;
  }

  /** Fail loudly (with the log's tail) if a member died. */
  checkAlive() {
    for (const m of this.members) {
      if (m.child && (m.child.exitCode !== null || m.child.signalCode !== null)) {
        throw new Error(`${this.kind} member ${m.name} exited (${m.child.exitCode ?? m.child.signalCode}); see ${m.logFile}`);
      }
    }
  }

  pids() {
    return this.members.map((m) => m.child?.pid).filter((p) => p !== undefined);
  }

  async stop({ keepData = false } = {}) {
    await Promise.all(this.members.map((m) => (m.child ? stopChild(m.child, 8000) : null)));
    if (!keepData) removeTempDir(this.dir);
  }

  async stopMember(m) {
    const t0 = performance.now();
    const r = await stopChild(m.child, 15_000);
    m.child = null;
    return { ...r, stopMs: performance.now() - t0 };
  }
}

export class FlotillaCluster extends Cluster {
  /** @param {{ size: number, repo: string, extraFlags?: string[], nodeFlags?: (m) => string[] }} options */
  static start({ size, repo, extraFlags = [], nodeFlags = () => [] }) {
    return startRetryingPorts(async () => {
      const dir = await makeTempDir(`flotilla${size}`);
      const members = await allocateMembers(size, 'n', dir);
      const cluster = new FlotillaCluster('flotilla', members, dir);
      cluster.repo = repo;
      cluster.extraFlags = extraFlags;
      cluster.initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
      for (const m of members) cluster.spawn(m, nodeFlags(m));
      return cluster;
    });
  }

  spawn(m, nodeFlags = []) {
    const args = [
      ...nodeFlags,
      join(this.repo, 'bin/flotilla.js'),
      'serve',
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-url', m.clientUrl,
      '--listen-peer-url', m.peerUrl,
      ...(m.join ? ['--join', m.join] : ['--initial-cluster', this.initialCluster]),
      ...this.extraFlags,
    ];
    m.child = startChild(process.execPath, args, { cwd: this.repo, logFile: m.logFile });
    return m.child;
  }

  /**
   * Start a new member with a fresh data dir that asks the cluster at `joinUrl` to add it
   * (`serve --join`). It becomes one of this.members (so stop() stops it).
   */
  async spawnJoiner(name, joinUrl) {
    const clientPort = await freePort();
    const peerPort = await freePort();
    const m = {
      name,
      clientPort,
      peerPort,
      clientUrl: `http://${HOST}:${clientPort}`,
      peerUrl: `http://${HOST}:${peerPort}`,
      dataDir: join(this.dir, name),
      logFile: join(this.dir, `${name}.log`),
      join: joinUrl,
      child: null,
    };
    this.members.push(m);
    this.spawn(m);
    return m;
  }

  /** Stop a member with a signal right away (SIGKILL: a crash) and wait for it to exit. */
  async killMember(m, signal = 'SIGKILL') {
    const t0 = performance.now();
    m.child.kill(signal);
    const r = await m.child.exited;
    m.child = null;
    return { ...r, stopMs: performance.now() - t0 };
  }

  /** Drop a member that was removed from the cluster (and stopped) from this.members. */
  forget(m) {
    this.members = this.members.filter((x) => x !== m);
  }

  /** GET /v1/cluster/members on a member: [{ name, peerUrl, clientUrl, voter }] or null. */
  async clusterMembers(m) {
    const r = await http('GET', `${m.clientUrl}/v1/cluster/members`, { timeoutMs: 2000 });
    return r.status === 200 ? r.json().members : null;
  }

  /** Every member healthy and all agreeing on one leader. */
  async waitReady(timeoutMs = 30_000) {
    return waitFor('a flotilla leader', timeoutMs, async () => {
      this.checkAlive();
      const statuses = await Promise.all(this.members.map((m) => http('GET', `${m.clientUrl}/v1/status`, { timeoutMs: 1000 })));
      if (statuses.some((s) => s.status !== 200)) return null;
      const views = statuses.map((s) => s.json());
      const leader = views[0].leader;
      if (!leader || views.some((v) => v.leader !== leader)) return null;
      const healths = await Promise.all(this.members.map((m) => http('GET', `${m.clientUrl}/health`, { timeoutMs: 1000 })));
      return healths.every((h) => h.status === 200) ? leader : null;
    });
  }

  async leader() {
    for (const m of this.members) {
      if (!m.child) continue;
      const s = await http('GET', `${m.clientUrl}/v1/status`, { timeoutMs: 2000 });
      if (s.status === 200 && s.json().role === 'leader') return m;
    }
    await this.waitReady();
    return this.leader();
  }

  /** The store revision, read by writing a sentinel key on the leader (so it is current). */
  async revision(leader) {
    const r = await http('PUT', `${leader.clientUrl}/v1/kv/${SENTINEL_KEY}`, { body: 'x', timeoutMs: 10_000 });
    if (r.status !== 200) return NaN;
    return r.json().revision;
  }

  /** Put one value (used to preload keys): true on 200. */
  async put(url, key, value) {
    const r = await http('PUT', `${url}/v1/kv/${key}`, { body: value, timeoutMs: 10_000 });
    return r.status === 200;
  }

  async status(m) {
    const r = await http('GET', `${m.clientUrl}/v1/status`, { timeoutMs: 2000 });
    return r.status === 200 ? r.json() : null;
  }

  /**
   * Restart a stopped member and time it: until its client port answers at all, until /health
   * says 200 (it knows a leader and is applying: serving), and until a linearizable read of
   * `probeKey` answers 200.
   */
  async startAndTime(m, probeKey, nodeFlags = []) {
    const t0 = performance.now();
    this.spawn(m, nodeFlags);
    const timings = { listenMs: NaN, healthMs: NaN, readMs: NaN };
    await waitFor(`${m.name} to serve`, 600_000, async () => {
      if (m.child.exitCode !== null) throw new Error(`${m.name} exited during restart; see ${m.logFile}`);
      const elapsed = performance.now() - t0;
      if (Number.isNaN(timings.listenMs)) {
        const s = await http('GET', `${m.clientUrl}/v1/status`, { timeoutMs: 500 });
        if (s.status === 0) return null;
        timings.listenMs = elapsed;
      }
      if (Number.isNaN(timings.healthMs)) {
        const h = await http('GET', `${m.clientUrl}/health`, { timeoutMs: 500 });
        if (h.status !== 200) return null;
        timings.healthMs = performance.now() - t0;
      }
      const g = await http('GET', `${m.clientUrl}/v1/kv/${probeKey}`, { timeoutMs: 2000 });
      if (g.status !== 200) return null;
      timings.readMs = performance.now() - t0;
      return true;
    });
    return timings;
  }
}

export class EtcdCluster extends Cluster {
  /** @param {{ size: number, etcdBin: string }} options */
  static start({ size, etcdBin }) {
    return startRetryingPorts(async () => {
      const dir = await makeTempDir(`etcd${size}`);
      const members = await allocateMembers(size, 'e', dir);
      const cluster = new EtcdCluster('etcd', members, dir);
      cluster.etcdBin = etcdBin;
      cluster.initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
      for (const m of members) cluster.spawn(m);
      return cluster;
    });
  }

  spawn(m) {
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientUrl,
      '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl,
      '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', this.initialCluster,
      '--initial-cluster-state', existsSync(m.dataDir) ? 'existing' : 'new',
      '--initial-cluster-token', 'flotilla-bench',
      '--enable-v2=false',
      // Room for the value-size runs (MVCC keeps history until compaction; the default quota is 2 GiB).
      '--quota-backend-bytes', String(8 * 1024 ** 3),
      '--logger', 'zap',
      '--log-level', 'warn',
    ];
    m.child = startChild(this.etcdBin, args, { logFile: m.logFile });
    return m.child;
  }

  async #statuses() {
    return Promise.all(
      this.members.map((m) => (m.child ? http('POST', `${m.clientUrl}/v3/maintenance/status`, { body: '{}', timeoutMs: 1000 }) : null)),
    );
  }

  async waitReady(timeoutMs = 30_000) {
    return waitFor('an etcd leader', timeoutMs, async () => {
      this.checkAlive();
      const statuses = await this.#statuses();
      if (statuses.some((s) => s === null || s.status !== 200)) return null;
      const views = statuses.map((s) => s.json());
      const leader = views[0].leader;
      if (!leader || leader === '0' || views.some((v) => v.leader !== leader)) return null;
      // A write proves the cluster commits (the gateway is up and a quorum is there).
      const lead = this.members[views.findIndex((v) => v.header.member_id === leader)];
      if (!lead) return null;
      return Number.isFinite(await this.revision(lead)) ? leader : null;
    });
  }

  async leader() {
    const statuses = await this.#statuses();
    for (let i = 0; i < statuses.length; i++) {
      const s = statuses[i];
      if (s && s.status === 200) {
        const v = s.json();
        if (v.header.member_id === v.leader) return this.members[i];
      }
    }
    await this.waitReady();
    return this.leader();
  }

  async revision(leader) {
    const body = JSON.stringify({ key: Buffer.from(SENTINEL_KEY).toString('base64'), value: 'eA==' });
    const r = await http('POST', `${leader.clientUrl}/v3/kv/put`, { body, timeoutMs: 10_000 });
    if (r.status !== 200) return NaN;
    return Number(r.json().header.revision);
  }

  async put(url, key, value) {
    const body = JSON.stringify({ key: Buffer.from(key).toString('base64'), value: Buffer.from(value).toString('base64') });
    const r = await http('POST', `${url}/v3/kv/put`, { body, timeoutMs: 10_000 });
    return r.status === 200;
  }
}

/** Write key00000..key{count-1} once, so reads never hit an absent key. */
export async function preload(cluster, count, valueBytes) {
  const leader = await cluster.leader();
  const value = 'p'.repeat(valueBytes);
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      if (!(await cluster.put(leader.clientUrl, `key${String(i).padStart(5, '0')}`, value))) failed++;
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  if (failed > 0) throw new Error(`${cluster.kind}: ${failed} preload writes failed`);
}

/** A reference server of ours (test/bench/bare-*.mjs) on a free port: the Node ceilings. */
export class BareServer {
  /** @param {{ repo: string, dir: string, script: string, probe: (url: string) => Promise<boolean> }} options */
  static async start({ repo, dir, script, probe }) {
    const port = await freePort();
    const server = new BareServer();
    server.url = `http://${HOST}:${port}`;
    server.child = startChild(process.execPath, [join(repo, 'test/bench', script), String(port)], {
      cwd: repo,
      logFile: join(dir, script.replace(/\.mjs$/, '.log')),
    });
    await waitFor(script, 15_000, async () => {
      if (server.child.exitCode !== null) throw new Error(`${script} exited`);
      return probe(server.url);
    });
    return server;
  }

  /** The bare Fastify 5 app that takes a tiny PUT (bare-fastify.mjs). */
  static fastify({ repo, dir }) {
    return BareServer.start({ repo, dir, script: 'bare-fastify.mjs', probe: async (url) => (await http('PUT', `${url}/v1/kv/x`, { body: 'x', timeoutMs: 500 })).status === 200 });
  }

  /** The bare node:http server that answers a GET with 100 bytes (bare-http.mjs). */
  static http({ repo, dir }) {
    return BareServer.start({ repo, dir, script: 'bare-http.mjs', probe: async (url) => (await http('GET', `${url}/v1/kv/x`, { timeoutMs: 500 })).status === 200 });
  }

  pids() {
    return [this.child.pid];
  }

  async stop() {
    await stopChild(this.child);
  }
}
