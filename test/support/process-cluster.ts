import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';

/** The repository root (tests run from it) and the built CLI the contract names. */
export const REPO = resolve(import.meta.dirname, '../..');
export const CLI = join(REPO, 'bin/flotilla.js');

export interface MemberSpec {
  readonly name: string;
  readonly host: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
}

export interface ClusterOptions {
  readonly size?: number;
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  /**
   * One loopback address per member (127.0.0.11, .12, ...; the default), so partitions can be cut
   * per address, and so a member's port, picked by the OS and bound by the member a moment later,
   * cannot meanwhile become the local port of an outgoing connection: those are bound to
   * 127.0.0.1. With false, every member listens on 127.0.0.1.
   */
  readonly distinctHosts?: boolean;
  readonly extraFlags?: readonly string[];
  readonly env?: Record<string, string>;
  /**
   * The peer URL `--initial-cluster` gives for some members instead of the one they listen on
   * (say, a proxy in front of it): the URL the others use to reach them.
   */
  readonly advertisedPeerUrls?: Readonly<Record<string, string>>;
}

/** Ask the OS for a free port on host (bind port 0, read it, close). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolvePort(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Two different free ports on host (each freePort() closes its listener, so the OS may repeat one). */
async function freePorts(host: string): Promise<[number, number]> {
  const first = await freePort(host);
  for (let attempt = 0; attempt < 10; attempt++) {
    const second = await freePort(host);
    if (second !== first) return [first, second];
  }
  throw new Error(`no second free port on ${host}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `probe` every 100 ms until it gives something other than null (a throw counts as null). */
export async function waitFor<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await probe().catch(() => null);
    if (v !== null) return v;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A metric without labels from a member's GET /metrics; null if it is absent or the member does not answer. */
export async function metric(clientUrl: string, name: string): Promise<number | null> {
  const r = await http('GET', `${clientUrl}/metrics`).catch(() => null);
  const m = r ? new RegExp(`^${name} ([0-9.e+]+)$`, 'm').exec(r.body.toString('utf8')) : null;
  return m ? Number(m[1]) : null;
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json<T = unknown>(): T;
}

/** One HTTP request with a timeout; never throws for HTTP statuses, only for network errors. */
export async function http(
  method: string,
  url: string,
  options: { body?: string | Uint8Array; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpResult> {
  const res = await request(url, {
    method: method as 'GET',
    body: options.body,
    headers: options.headers,
    headersTimeout: options.timeoutMs ?? 10_000,
    bodyTimeout: options.timeoutMs ?? 10_000,
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, json: <T>() => JSON.parse(body.toString('utf8')) as T };
}

/** Follow 307s the way `curl -L` does (bounded). */
export async function httpFollow(
  method: string,
  url: string,
  options: { body?: string | Uint8Array; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpResult> {
  let target = url;
  for (let hop = 0; hop < 5; hop++) {
    const r = await http(method, target, options);
    if (r.status !== 307) return r;
    target = String(r.headers['location']);
  }
  throw new Error(`too many redirects from ${url}`);
}

/**
 * A cluster of real `flotilla serve` processes on loopback, each with its own temp data dir.
 * Only the processes it started are signalled, by PID; `destroy()` kills them and removes the dirs.
 */
export class ProcessCluster {
  readonly members: MemberSpec[];
  readonly #procs = new Map<string, ChildProcess>();
  readonly #logs = new Map<string, string[]>();
  /** Members a test signalled (SIGKILL, SIGTERM): their exits were asked for. */
  readonly #signalled = new Set<ChildProcess>();
  readonly #root: string;
  readonly #options: Required<Omit<ClusterOptions, 'env'>> & { env: Record<string, string> };

  private constructor(root: string, members: MemberSpec[], options: ClusterOptions) {
    this.#root = root;
    this.members = members;
    this.#options = {
      size: members.length,
      heartbeatMs: options.heartbeatMs ?? 50,
      electionMs: options.electionMs ?? 500,
      distinctHosts: options.distinctHosts ?? true,
      extraFlags: options.extraFlags ?? [],
      env: options.env ?? {},
      advertisedPeerUrls: options.advertisedPeerUrls ?? {},
    };
  }

  static async create(options: ClusterOptions = {}): Promise<ProcessCluster> {
    if (!existsSync(join(REPO, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `make build` first');
    const root = await mkdtemp(join(tmpdir(), 'flotilla-cluster-'));
    const size = options.size ?? 3;
    const members: MemberSpec[] = [];
    for (let i = 0; i < size; i++) {
      const host = options.distinctHosts === false ? '127.0.0.1' : `127.0.0.${i + 11}`;
      const [clientPort, peerPort] = await freePorts(host);
      members.push({
        name: `n${i + 1}`, host, clientPort, peerPort,
        clientUrl: `http://${host}:${clientPort}`, peerUrl: `http://${host}:${peerPort}`,
        dataDir: join(root, `n${i + 1}`),
      });
    }
    return new ProcessCluster(root, members, options);
  }

  get initialCluster(): string {
    return this.members.map((m) => `${m.name}=${this.#options.advertisedPeerUrls[m.name] ?? m.peerUrl}`).join(',');
  }

  /**
   * One more member (ports from the OS, an empty data dir under this cluster's root), not started:
   * start it with `start(name, { join: CLIENT_URL })`. Later restarts of founding members ignore
   * it (their data dirs hold their member lists).
   */
  async addMember(name: string): Promise<MemberSpec> {
    if (this.members.some((m) => m.name === name)) throw new Error(`member ${name} exists`);
    const host = this.#options.distinctHosts ? `127.0.0.${this.members.length + 11}` : '127.0.0.1';
    const [clientPort, peerPort] = await freePorts(host);
    const spec: MemberSpec = {
      name, host, clientPort, peerPort,
      clientUrl: `http://${host}:${clientPort}`, peerUrl: `http://${host}:${peerPort}`,
      dataDir: join(this.#root, name),
    };
    this.members.push(spec);
    return spec;
  }

  member(name: string): MemberSpec {
    const m = this.members.find((x) => x.name === name);
    if (!m) throw new Error(`no member ${name}`);
    return m;
  }

  async startAll(): Promise<void> {
    for (const m of this.members) this.start(m.name);
    await this.waitForLeader(15_000, true);
  }

  /** Start a member; with `join`, as a new member asking the cluster at that client URL to add it. */
  start(name: string, options: { join?: string } = {}): void {
    const m = this.member(name);
    const o = this.#options;
    const args = [
      CLI, 'serve', '--name', m.name, '--data-dir', m.dataDir,
      '--listen-client-url', m.clientUrl, '--listen-peer-url', m.peerUrl,
      ...(options.join ? ['--join', options.join] : ['--initial-cluster', this.initialCluster]),
      '--heartbeat-interval', String(o.heartbeatMs), '--election-timeout', String(o.electionMs),
      '--log-level', 'info', ...o.extraFlags,
    ];
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
    const log = this.#logs.get(name) ?? [];
    this.#logs.set(name, log);
    const keep = (chunk: Buffer) => {
      log.push(chunk.toString('utf8'));
      if (log.length > 2000) log.splice(0, log.length - 2000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.#procs.set(name, child);
  }

  pid(name: string): number | undefined {
    return this.#procs.get(name)?.pid;
  }

  isRunning(name: string): boolean {
    const p = this.#procs.get(name);
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  /** Send a signal to one member we started; for SIGKILL/SIGTERM wait until it has exited. */
  async signal(name: string, sig: NodeJS.Signals): Promise<void> {
    const p = this.#procs.get(name);
    if (!p || !this.isRunning(name)) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    if (sig === 'SIGKILL' || sig === 'SIGTERM') this.#signalled.add(p);
    p.kill(sig);
    if (sig === 'SIGKILL' || sig === 'SIGTERM') {
      await Promise.race([exited, sleep(15_000)]);
      if (this.isRunning(name)) {
        p.kill('SIGKILL');
        await exited;
      }
    }
  }

  /**
   * SIGSTOP one member we started (it stays stopped until resume()). Unlike signal(), adds no
   * 'exit' listener, so a chaos run can pause members hundreds of times.
   */
  pause(name: string): void {
    if (this.isRunning(name)) this.#procs.get(name)?.kill('SIGSTOP');
  }

  /** SIGCONT one member we started; harmless if it was not stopped. */
  resume(name: string): void {
    if (this.isRunning(name)) this.#procs.get(name)?.kill('SIGCONT');
  }

  /** SIGCONT every member still running, e.g. before destroy(). */
  resumeAll(): void {
    for (const m of this.members) this.resume(m.name);
  }

  async kill(name: string): Promise<void> {
    await this.signal(name, 'SIGKILL');
  }

  async exitCode(name: string): Promise<number | null> {
    const p = this.#procs.get(name);
    if (!p) return null;
    if (p.exitCode !== null || p.signalCode !== null) return p.exitCode;
    return new Promise((r) => p.once('exit', (code) => r(code)));
  }

  /** How a member we started ended: null while it runs; else its exit code or the signal that ended it. */
  exitStatus(name: string): { code: number | null; signal: NodeJS.Signals | null } | null {
    const p = this.#procs.get(name);
    if (!p || (p.exitCode === null && p.signalCode === null)) return null;
    return { code: p.exitCode, signal: p.signalCode };
  }

  logs(name: string): string {
    return (this.#logs.get(name) ?? []).join('');
  }

  async status(name: string): Promise<{ role: string; leader: string | null; term: number; commitIndex: number; appliedIndex: number } | null> {
    try {
      const r = await http('GET', `${this.member(name).clientUrl}/v1/status`, { timeoutMs: 1000 });
      return r.status === 200 ? r.json() : null;
    } catch {
      return null;
    }
  }

  /** The member that says it is leader and that every other running member follows. */
  async leader(followedByAll = false): Promise<string | null> {
    const views = await Promise.all(
      this.members.filter((m) => this.isRunning(m.name)).map(async (m) => ({ name: m.name, s: await this.status(m.name) })),
    );
    const leaders = views.filter((v) => v.s?.role === 'leader');
    if (leaders.length !== 1) return null;
    const name = leaders[0].name;
    // With `followedByAll`, every running member must follow it (and so redirect to it) too.
    if (followedByAll && !views.every((v) => v.s?.leader === name)) return null;
    return name;
  }

  async waitForLeader(timeoutMs = 15_000, followedByAll = false): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const l = await this.leader(followedByAll);
      if (l) return l;
      await sleep(50);
    }
    throw new Error(`no leader within ${timeoutMs} ms\n${this.members.map((m) => `--- ${m.name}\n${this.logs(m.name).slice(-3000)}`).join('\n')}`);
  }

  /** Wait until every running member has applied at least `index`. */
  async waitForApplied(index: number, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const views = await Promise.all(this.members.filter((m) => this.isRunning(m.name)).map((m) => this.status(m.name)));
      if (views.every((v) => v !== null && v.appliedIndex >= index)) return;
      await sleep(50);
    }
    throw new Error(`not every member applied ${index} within ${timeoutMs} ms`);
  }

  async destroy(): Promise<void> {
    // A member that ended by itself (a crash, an assertion) is a finding even when the test passed
    // or failed for another reason: print the end of its log, so the run shows why.
    for (const [name, p] of this.#procs) {
      if (this.#signalled.has(p) || (p.exitCode === null && p.signalCode === null)) continue;
      if (p.exitCode === 0) continue;
      process.stderr.write(`\n--- member ${name} exited by itself (code ${p.exitCode}, signal ${p.signalCode}); its log ends:\n${this.logs(name).slice(-4000)}\n`);
    }
    await Promise.all(this.members.map((m) => this.kill(m.name)));
    await rm(this.#root, { recursive: true, force: true });
  }
}
