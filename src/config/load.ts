import { z } from 'zod';
import { ServeConfig } from './schema.js';

/** The contract's flag names (kebab-case) mapped to config keys; each is also FLOTILLA_<UPPER_SNAKE>. */
export const SERVE_FLAGS = {
  'name': 'name',
  'data-dir': 'dataDir',
  'listen-client-url': 'listenClientUrl',
  'listen-peer-url': 'listenPeerUrl',
  'advertise-client-url': 'advertiseClientUrl',
  'initial-cluster': 'initialCluster',
  'join': 'join',
  'heartbeat-interval': 'heartbeatIntervalMs',
  'election-timeout': 'electionTimeoutMs',
  'forward-to-leader': 'forwardToLeader',
  'max-key-bytes': 'maxKeyBytes',
  'max-value-bytes': 'maxValueBytes',
  'request-timeout': 'requestTimeoutMs',
  'snapshot-entries': 'snapshotEntries',
  'snapshot-bytes': 'snapshotBytes',
  'snapshot-catchup-entries': 'snapshotCatchupEntries',
  'log-level': 'logLevel',
} as const;

/** Flags that may be given without a value (`--forward-to-leader`). */
const BOOLEAN_FLAGS = new Set(['forward-to-leader']);

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function envName(flag: string): string {
  return `FLOTILLA_${flag.replaceAll('-', '_').toUpperCase()}`;
}

/** Parse `--flag value`, `--flag=value` and boolean `--flag`; unknown flags are errors. */
export function parseFlags(argv: readonly string[], known: Record<string, string>): { values: Record<string, string>; rest: string[] } {
  const values: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      rest.push(arg);
      continue;
    }
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    if (!(flag in known)) throw new ConfigError(`unknown flag --${flag}`);
    if (eq > 0) values[flag] = arg.slice(eq + 1);
    else if (BOOLEAN_FLAGS.has(flag) && (i + 1 >= argv.length || argv[i + 1].startsWith('--'))) values[flag] = 'true';
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) values[flag] = argv[++i];
    else throw new ConfigError(`--${flag} needs a value`);
  }
  return { values, rest };
}

/** Flags over FLOTILLA_* environment over defaults, validated once. */
export function loadServeConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const { values, rest } = parseFlags(argv, SERVE_FLAGS);
  if (rest.length > 0) throw new ConfigError(`unexpected argument "${rest[0]}"`);
  const raw: Record<string, string> = {};
  for (const [flag, key] of Object.entries(SERVE_FLAGS)) {
    const v = values[flag] ?? env[envName(flag)];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  const parsed = ServeConfig.safeParse(raw);
  if (!parsed.success) throw new ConfigError(describeIssue(parsed.error));
  return parsed.data;
}

function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  const key = String(issue.path[0] ?? '');
  const flag = Object.entries(SERVE_FLAGS).find(([, k]) => k === key)?.[0];
  if (issue.code === 'invalid_type' && issue.input === undefined) return `--${flag ?? key} is required`;
  return `--${flag ?? key}: ${issue.message}`;
}
