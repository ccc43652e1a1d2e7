// Running wrk with test/bench/wrk-kv.lua and reading its result. wrk keeps one request in flight
// per connection; -t2 uses both cores' worth of generator threads (at most one per connection).
import { join } from 'node:path';
import { run } from './proc.mjs';

/**
 * @returns {Promise<{ rps: number, requests: number, seconds: number, errors: number,
 *   errorDetail: object, p50Ms: number, p90Ms: number, p99Ms: number, p999Ms: number, maxMs: number, meanMs: number, raw: string }>}
 */
export async function runWrk({ repo, url, mode, connections, seconds, valueBytes = 100, keys = 10_000, prefix = 'key', threads, timeoutS = 10, onSpawn }) {
  const t = threads ?? Math.min(2, connections);
  const script = join(repo, 'test/bench/wrk-kv.lua');
  const args = [
    `-t${t}`,
    `-c${connections}`,
    `-d${seconds}s`,
    `--timeout`, `${timeoutS}s`,
    '--latency',
    '-s', script,
    url,
    '--', mode, String(valueBytes), String(keys), prefix, String(t),
  ];
  const r = await run('wrk', args, { timeoutMs: (seconds + 60) * 1000, onSpawn });
  const line = r.stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (!line) throw new Error(`wrk ${args.join(' ')} gave no result (exit ${r.code ?? r.signal}): ${r.stderr || r.stdout}`);
  const j = JSON.parse(line.slice('WRK_JSON '.length));
  const sec = j.durationUs / 1e6;
  const errors = j.errors.connect + j.errors.read + j.errors.write + j.errors.status + j.errors.timeout;
  const ms = (us) => us / 1000;
  return {
    // Only successful answers count: an error status is not a served request.
    rps: (j.requests - j.errors.status) / sec,
    wrkRps: j.requests / sec,
    requests: j.requests,
    seconds: sec,
    errors,
    errorDetail: j.errors,
    p50Ms: ms(j.latencyUs.p50),
    p90Ms: ms(j.latencyUs.p90),
    p99Ms: ms(j.latencyUs.p99),
    p999Ms: ms(j.latencyUs.p999),
    maxMs: ms(j.latencyUs.max),
    meanMs: ms(j.latencyUs.mean),
    command: `wrk ${args.map((a) => (a === url ? a : a.replace(repo + '/', ''))).join(' ')}`,
    raw: r.stdout,
  };
}

export async function wrkVersion() {
  const r = await run('wrk', ['-v']);
  return (r.stdout + r.stderr).split('\n')[0].replace(/\s*Copyright.*$/, '').trim();
}
