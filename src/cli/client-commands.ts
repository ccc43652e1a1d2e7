/**
 * The client commands of the CLI: get, put, del, list, watch, lock, elect. Each takes
 * `--endpoints URL,...` (else $FLOTILLA_ENDPOINTS, else the contract's three local members).
 * Output is for scripts: a value's raw bytes (get), or one JSON object per line. Errors are one
 * line on stderr; exit 2 for bad usage, 1 for failures (a get of an absent key says "not found").
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { connect } from '../client/client.js';
import type { Client } from '../client/client.js';
import { Election } from '../client/election.js';
import { FlotillaClientError } from '../client/errors.js';
import { Lock } from '../client/lock.js';
import type { KeyValue, WatchEvent } from '../client/types.js';
import { jsonValueFields } from '../client/wire.js';

export const DEFAULT_ENDPOINTS = 'http://127.0.0.1:2379,http://127.0.0.1:22379,http://127.0.0.1:32379';

const USAGE: Record<string, string> = {
  get: 'get KEY [--consistency stale] [--json]',
  put: 'put KEY VALUE|- [--lease ID] [--if-match MODREV | --if-none-match]',
  del: 'del KEY [--if-match MODREV]',
  list: 'list PREFIX [--limit N]',
  watch: 'watch KEY [--prefix] [--from-revision R]',
  lock: 'lock NAME [--ttl SECONDS] -- COMMAND [ARGS...]',
  elect: 'elect NAME VALUE [--ttl SECONDS]',
};

export const CLIENT_COMMANDS_HELP = `client commands (each also takes --endpoints URL,... and --deadline MS):
${Object.values(USAGE).map((u) => `  ${u}`).join('\n')}`;

/** Flags that take a value; every other `--flag` is a boolean. */
const VALUE_FLAGS = new Set(['endpoints', 'consistency', 'lease', 'if-match', 'limit', 'from-revision', 'ttl', 'deadline']);
const FLAGS_OF: Record<string, readonly string[]> = {
  get: ['consistency', 'json'],
  put: ['lease', 'if-match', 'if-none-match'],
  del: ['if-match'],
  list: ['limit'],
  watch: ['prefix', 'from-revision'],
  lock: ['ttl'],
  elect: ['ttl'],
};

class UsageError extends Error {}

interface Parsed {
  readonly positional: string[];
  readonly flags: Map<string, string | true>;
  /** What follows `--` (lock's command). */
  readonly rest: string[] | null;
}

export function parseArgs(command: string, argv: readonly string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  const allowed = new Set([...(FLAGS_OF[command] ?? []), 'endpoints', 'deadline']);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      // lock runs what follows; for the others it is plain arguments (a value that starts with --).
      if (command === 'lock') return { positional, flags, rest: argv.slice(i + 1) };
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      if (!allowed.has(name)) throw new UsageError(`unknown flag --${name}`);
      if (VALUE_FLAGS.has(name)) {
        const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
        if (value === undefined) throw new UsageError(`--${name} needs a value`);
        flags.set(name, value);
      } else {
        if (eq >= 0) throw new UsageError(`--${name} takes no value`);
        flags.set(name, true);
      }
      continue;
    }
    positional.push(arg);
  }
  return { positional, flags, rest: null };
}

function intFlag(p: Parsed, name: string, min: number): number | undefined {
  const v = p.flags.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !/^[0-9]+$/.test(v) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`--${name} must be a whole number >= ${min}, got ${JSON.stringify(v)}`);
  }
  return n;
}

function endpointsOf(p: Parsed): string[] {
  const raw = (p.flags.get('endpoints') as string | undefined) ?? process.env['FLOTILLA_ENDPOINTS'] ?? DEFAULT_ENDPOINTS;
  const list = raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length === 0) throw new UsageError('--endpoints is empty');
  for (const url of list) {
    try {
      const u = new URL(url);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
    } catch {
      throw new UsageError(`bad endpoint ${JSON.stringify(url)}: expected http://HOST:PORT`);
    }
  }
  return list;
}

function expectPositional(command: string, p: Parsed, count: number): string[] {
  if (p.positional.length !== count) throw new UsageError(`expected ${count === 1 ? 'one argument' : `${count} arguments`}: ${USAGE[command]}`);
  return p.positional;
}

function line(o: unknown): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

function kvJson(kv: KeyValue): Record<string, unknown> {
  return { key: kv.key, ...jsonValueFields(kv.value), modRevision: kv.modRevision, createRevision: kv.createRevision, version: kv.version };
}

function eventJson(e: WatchEvent): Record<string, unknown> {
  return e.type === 'put'
    ? { type: e.type, key: e.key, ...jsonValueFields(e.value), modRevision: e.modRevision }
    : { type: e.type, key: e.key, modRevision: e.modRevision };
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Resolves with the name of the first of SIGINT/SIGTERM to arrive; the handlers are removed by `off`. */
function onStopSignal(): { promise: Promise<NodeJS.Signals>; off: () => void } {
  let off = () => {};
  const promise = new Promise<NodeJS.Signals>((resolve) => {
    const int = () => resolve('SIGINT');
    const term = () => resolve('SIGTERM');
    process.once('SIGINT', int);
    process.once('SIGTERM', term);
    off = () => {
      process.off('SIGINT', int);
      process.off('SIGTERM', term);
    };
  });
  return { promise, off };
}

function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (osConstants.signals[signal] ?? 0);
}

/** Run one client command; returns the exit code. */
export async function runClientCommand(command: string, argv: readonly string[]): Promise<number> {
  let parsed: Parsed;
  let client: Client;
  try {
    if (!(command in USAGE)) throw new UsageError(`unknown command ${command}`);
    if (argv.includes('--help') || argv.includes('-h')) {
      process.stdout.write(`usage: flotilla ${USAGE[command]} [--endpoints URL,...] [--deadline MS]\n`);
      return 0;
    }
    parsed = parseArgs(command, argv);
    const deadlineMs = intFlag(parsed, 'deadline', 1);
    client = connect({ endpoints: endpointsOf(parsed), ...(deadlineMs === undefined ? {} : { deadlineMs }) });
  } catch (err) {
    process.stderr.write(`flotilla ${command}: ${(err as Error).message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
  try {
    return await COMMANDS[command](client, parsed);
  } catch (err) {
    const message = err instanceof FlotillaClientError ? `${err.message} (${err.code})` : err instanceof Error ? err.message : String(err);
    process.stderr.write(`flotilla ${command}: ${message}\n`);
    return err instanceof UsageError ? 2 : 1;
  } finally {
    await client.close();
  }
}

type Command = (client: Client, p: Parsed) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  async get(client, p) {
    const [key] = expectPositional('get', p, 1);
    const consistency = p.flags.get('consistency');
    if (consistency !== undefined && consistency !== 'stale' && consistency !== 'linearizable') {
      throw new UsageError('--consistency must be "linearizable" or "stale"');
    }
    const kv = await client.get(key, { consistency: consistency === 'stale' ? 'stale' : 'linearizable' });
    if (!kv) {
      process.stderr.write(`flotilla get: ${JSON.stringify(key)} not found\n`);
      return 1;
    }
    if (p.flags.has('json')) line(kvJson(kv));
    else process.stdout.write(kv.value);
    return 0;
  },

  async put(client, p) {
    const [key, value] = expectPositional('put', p, 2);
    const ifMatch = intFlag(p, 'if-match', 1);
    const lease = intFlag(p, 'lease', 1);
    if (ifMatch !== undefined && p.flags.has('if-none-match')) throw new UsageError('use --if-match or --if-none-match, not both');
    const body = value === '-' ? await readStdin() : value;
    line(await client.put(key, body, { ifMatch, ifNoneMatch: p.flags.has('if-none-match'), lease }));
    return 0;
  },

  async del(client, p) {
    const [key] = expectPositional('del', p, 1);
    line(await client.delete(key, { ifMatch: intFlag(p, 'if-match', 1) }));
    return 0;
  },

  async list(client, p) {
    const [prefix] = expectPositional('list', p, 1);
    const limit = intFlag(p, 'limit', 1);
    let n = 0;
    for await (const kv of client.listAll(prefix, { pageSize: limit === undefined ? 500 : Math.min(500, limit) })) {
      if (limit !== undefined && n >= limit) break;
      line(kvJson(kv));
      n++;
    }
    return 0;
  },

  async watch(client, p) {
    const [key] = expectPositional('watch', p, 1);
    const fromRevision = intFlag(p, 'from-revision', 1);
    const stop = onStopSignal();
    const controller = new AbortController();
    void stop.promise.then(() => controller.abort());
    try {
      for await (const e of client.watch(key, { prefix: p.flags.has('prefix'), fromRevision, signal: controller.signal })) line(eventJson(e));
    } finally {
      stop.off();
    }
    return 0;
  },

  async lock(client, p) {
    const [name] = expectPositional('lock', p, 1);
    if (!p.rest || p.rest.length === 0) throw new UsageError(`a command is needed after --: ${USAGE['lock']}`);
    const command = p.rest;
    const lock = new Lock(client, name, { ttlSeconds: intFlag(p, 'ttl', 1) ?? 10 });
    const stop = onStopSignal();
    const waiting = new AbortController();
    let stopSignal: NodeJS.Signals | null = null;
    void stop.promise.then((s) => {
      stopSignal = s;
      waiting.abort();
    });
    try {
      try {
        await lock.lock({ signal: waiting.signal });
      } catch (err) {
        if (stopSignal) return signalExitCode(stopSignal);
        throw err;
      }
      return await runHolding(lock, command, client.endpoints, stop.promise);
    } finally {
      stop.off();
      await lock.unlock();
    }
  },

  async elect(client, p) {
    const [name, value] = expectPositional('elect', p, 2);
    const election = new Election(client, name, { ttlSeconds: intFlag(p, 'ttl', 1) ?? 10 });
    const stop = onStopSignal();
    const waiting = new AbortController();
    let stopped = false;
    void stop.promise.then(() => {
      stopped = true;
      waiting.abort();
    });
    try {
      try {
        await election.campaign(value, { signal: waiting.signal });
      } catch (err) {
        if (stopped) return 0;
        throw err;
      }
      line({ event: 'elected', name, key: election.key, createRevision: election.createRevision, value, pid: process.pid });
      const lost = new Promise<'lost'>((resolve) => election.lease.onLost(() => resolve('lost')));
      const why = await Promise.race([stop.promise, lost]);
      if (why === 'lost') {
        process.stderr.write(`flotilla elect: lost leadership of ${JSON.stringify(name)}: the lease expired\n`);
        return 1;
      }
      await election.resign();
      return 0;
    } finally {
      stop.off();
    }
  },
};

/**
 * Run the command while the lock is held: its exit status becomes ours. SIGINT/SIGTERM are passed
 * on to it; if the lock is lost meanwhile it gets SIGTERM and we exit 1.
 */
async function runHolding(lock: Lock, command: readonly string[], endpoints: readonly string[], stop: Promise<NodeJS.Signals>): Promise<number> {
  const child = spawn(command[0], command.slice(1), {
    stdio: 'inherit',
    env: {
      ...process.env,
      FLOTILLA_ENDPOINTS: endpoints.join(','),
      FLOTILLA_LOCK_KEY: lock.key,
      FLOTILLA_LOCK_FENCING_TOKEN: String(lock.fencingToken),
    },
  });
  const exited = new Promise<number>((resolve) => {
    child.once('error', (err) => {
      process.stderr.write(`flotilla lock: cannot run ${command[0]}: ${err.message}\n`);
      resolve(127);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? signalExitCode(signal) : 1)));
  });
  let lockLost = false;
  void stop.then((s) => child.kill(s));
  lock.lease.onLost(() => {
    lockLost = true;
    process.stderr.write(`flotilla lock: lost the lock ${lock.prefix} (its lease expired); stopping the command\n`);
    child.kill('SIGTERM');
  });
  const code = await exited;
  return lockLost ? 1 : code;
}
