// Processes, ports and temp dirs the benchmark owns. Everything started here is recorded by PID
// and stopped by PID on exit (normal, Ctrl-C or crash); nothing else is ever signalled.
import { spawn } from 'node:child_process';
import { createWriteStream, readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();
/** @type {Set<string>} */
const tempDirs = new Set();
let keepTemp = false;

export function keepTempDirs(keep) {
  keepTemp = keep;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A fresh directory under the OS temp dir, removed on exit. */
export async function makeTempDir(label) {
  const dir = await mkdtemp(join(tmpdir(), `flotilla-bench-${label}-`));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir) {
  if (keepTemp) return;
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** Ask the OS for a free loopback port (bind port 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Start a long-running child whose output goes to logFile. The child is tracked and killed by PID
 * at exit. Returns the ChildProcess with an `exited` promise ({ code, signal }).
 */
export function startChild(command, args, { cwd, logFile, env } = {}) {
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(command, args, { cwd, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  children.add(child);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
    child.once('error', (err) => {
      children.delete(child);
      log.write(`spawn error: ${err.message}\n`);
      resolve({ code: -1, signal: null, error: err });
    });
  });
  child.logFile = logFile;
  return child;
}

/** SIGTERM one child we started; SIGKILL it if it has not exited after graceMs. */
export async function stopChild(child, graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exited;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const r = await child.exited;
  clearTimeout(timer);
  return r;
}

/** Run a command to completion, collecting its output (for wrk, etcd --version, git, ...). */
export function run(command, args, { cwd, timeoutMs = 0, onLine, onSpawn, env } = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.on('data', (d) => {
      const s = d.toString();
      stdout += s;
      if (onLine) {
        partial += s;
        const lines = partial.split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) onLine(line);
      }
    });
    child.stderr.on('data', (d) => (stderr += d.toString()));
    const timer = timeoutMs > 0 ? setTimeout(() => child.kill('SIGKILL'), timeoutMs) : null;
    child.once('error', (err) => {
      children.delete(child);
      if (timer) clearTimeout(timer);
      resolve({ code: -1, signal: null, stdout, stderr: stderr + err.message, child });
    });
    child.once('close', (code, signal) => {
      children.delete(child);
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, child });
    });
    onSpawn?.(child);
  });
}

/** Is a program on PATH? */
export async function which(program) {
  const r = await run('sh', ['-c', `command -v ${program}`]);
  return r.code === 0 ? r.stdout.trim() : null;
}

/** CPU time (user + system) a process has used so far, in seconds, from /proc/PID/stat. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/** VmRSS and VmHWM (peak) of a process, in bytes, from /proc. */
export function memoryOf(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  } catch {
    return { rss: NaN, peak: NaN };
  }
}

/** One HTTP request with a timeout; resolves to { status, body, json() } or { status: 0, error }. */
export async function http(method, url, { body, headers, timeoutMs = 3000 } = {}) {
  try {
    const res = await fetch(url, { method, body, headers, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text, json: () => JSON.parse(text) };
  } catch (err) {
    return { status: 0, error: err, body: '', json: () => null };
  }
}

/** Kill every child still running and remove every temp dir. Synchronous: safe in 'exit'. */
export function cleanupNow() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  children.clear();
  if (!keepTemp) for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** Graceful version: SIGTERM all our children, wait for them, then remove the temp dirs. */
export async function cleanup() {
  await Promise.all([...children].map((c) => (c.exited ? stopChild(c, 3000) : Promise.resolve(c.kill('SIGKILL')))));
  cleanupNow();
}

export function installExitHandlers() {
  process.once('exit', cleanupNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}: stopping the processes it started and removing its temp dirs\n`);
      cleanupNow();
      process.exit(130);
    });
  }
}
