import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, test } from 'vitest';
import { ConfigError, envName, loadServeConfig, SERVE_FLAGS } from '../../src/config/load.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The four flags every `serve` needs, as `--flag value` pairs. */
const REQUIRED: Record<string, string> = {
  'name': 'n1',
  'data-dir': '/tmp/flotilla-n1',
  'listen-client-url': 'http://127.0.0.1:2379',
  'listen-peer-url': 'http://127.0.0.1:12380',
};

const CLUSTER = 'n1=http://127.0.0.1:12380,n2=http://127.0.0.1:22380,n3=http://127.0.0.1:32380';
const CLUSTER_PARSED = [
  { name: 'n1', peerUrl: 'http://127.0.0.1:12380' },
  { name: 'n2', peerUrl: 'http://127.0.0.1:22380' },
  { name: 'n3', peerUrl: 'http://127.0.0.1:32380' },
];

/** Every contract flag, with a value and what it parses to. */
const CONTRACT_FLAGS: Array<{ flag: string; value: string; key: string; parsed: unknown }> = [
  { flag: 'name', value: 'n2', key: 'name', parsed: 'n2' },
  { flag: 'data-dir', value: '/var/lib/flotilla/n2', key: 'dataDir', parsed: '/var/lib/flotilla/n2' },
  { flag: 'listen-client-url', value: 'http://127.0.0.1:22379', key: 'listenClientUrl', parsed: 'http://127.0.0.1:22379' },
  { flag: 'listen-peer-url', value: 'http://127.0.0.1:22380', key: 'listenPeerUrl', parsed: 'http://127.0.0.1:22380' },
  { flag: 'advertise-client-url', value: 'http://10.0.0.2:22379', key: 'advertiseClientUrl', parsed: 'http://10.0.0.2:22379' },
  { flag: 'initial-cluster', value: CLUSTER, key: 'initialCluster', parsed: CLUSTER_PARSED },
  { flag: 'heartbeat-interval', value: '50', key: 'heartbeatIntervalMs', parsed: 50 },
  { flag: 'election-timeout', value: '500', key: 'electionTimeoutMs', parsed: 500 },
];

function args(over: Record<string, string | null> = {}): string[] {
  const all: Record<string, string | null> = { ...REQUIRED, ...over };
  const out: string[] = [];
  for (const [flag, value] of Object.entries(all)) if (value !== null) out.push(`--${flag}`, value);
  return out;
}

function envOf(flags: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [flag, value] of Object.entries(flags)) env[envName(flag)] = value;
  return env;
}

/** Runs loadServeConfig expecting a ConfigError; returns its message. */
function configError(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  let thrown: unknown;
  try {
    loadServeConfig(argv, env);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected ${JSON.stringify(argv)} to be rejected`).toBeInstanceOf(ConfigError);
  const message = (thrown as ConfigError).message;
  expect(message).not.toMatch(/[\r\n]/);
  expect(message.length).toBeGreaterThan(0);
  return message;
}

describe('flags', () => {
  test('the four required flags give a config with the contract defaults', () => {
    const c = loadServeConfig(args(), {});
    expect(c).toMatchObject({
      name: 'n1',
      dataDir: '/tmp/flotilla-n1',
      listenClientUrl: 'http://127.0.0.1:2379',
      listenPeerUrl: 'http://127.0.0.1:12380',
      heartbeatIntervalMs: 100,
      electionTimeoutMs: 1000,
      forwardToLeader: false,
    });
    expect(c.advertiseClientUrl).toBeUndefined();
    expect(c.initialCluster).toBeUndefined();
  });

  test('the process environment is not read when an env object is passed', () => {
    const before = process.env[envName('heartbeat-interval')];
    process.env[envName('heartbeat-interval')] = '7';
    try {
      expect(loadServeConfig(args(), {}).heartbeatIntervalMs).toBe(100);
    } finally {
      if (before === undefined) delete process.env[envName('heartbeat-interval')];
      else process.env[envName('heartbeat-interval')] = before;
    }
  });

  test.each(CONTRACT_FLAGS)('--$flag VALUE', ({ flag, value, key, parsed }) => {
    const c = loadServeConfig(args({ [flag]: value }), {});
    expect((c as Record<string, unknown>)[key]).toEqual(parsed);
  });

  test.each(CONTRACT_FLAGS)('--$flag=VALUE', ({ flag, value, key, parsed }) => {
    const rest = args({ [flag]: null });
    const c = loadServeConfig([...rest, `--${flag}=${value}`], {});
    expect((c as Record<string, unknown>)[key]).toEqual(parsed);
  });

  test('every contract flag at once, mixing both spellings', () => {
    const argv = CONTRACT_FLAGS.flatMap(({ flag, value }, i) => (i % 2 === 0 ? [`--${flag}`, value] : [`--${flag}=${value}`]));
    const c = loadServeConfig(argv, {});
    for (const { key, parsed } of CONTRACT_FLAGS) expect((c as Record<string, unknown>)[key]).toEqual(parsed);
  });

  test('--flag=value keeps any further = in the value', () => {
    const c = loadServeConfig([...args({ 'initial-cluster': null }), '--initial-cluster=n1=http://127.0.0.1:12380'], {});
    expect(c.initialCluster).toEqual([{ name: 'n1', peerUrl: 'http://127.0.0.1:12380' }]);
  });

  test('a trailing slash on a URL is dropped', () => {
    const c = loadServeConfig(
      args({ 'listen-client-url': 'http://127.0.0.1:2379/', 'initial-cluster': 'n1=http://127.0.0.1:12380/' }),
      {},
    );
    expect(c.listenClientUrl).toBe('http://127.0.0.1:2379');
    expect(c.initialCluster).toEqual([{ name: 'n1', peerUrl: 'http://127.0.0.1:12380' }]);
  });

  test('https URLs are accepted', () => {
    expect(loadServeConfig(args({ 'listen-client-url': 'https://example.com:2379' }), {}).listenClientUrl).toBe('https://example.com:2379');
  });

  test('SERVE_FLAGS holds every contract flag', () => {
    for (const { flag } of CONTRACT_FLAGS) expect(Object.keys(SERVE_FLAGS)).toContain(flag);
  });
});

describe('environment', () => {
  test('envName is FLOTILLA_<FLAG_IN_UPPER_SNAKE>', () => {
    expect(envName('name')).toBe('FLOTILLA_NAME');
    expect(envName('data-dir')).toBe('FLOTILLA_DATA_DIR');
    expect(envName('listen-client-url')).toBe('FLOTILLA_LISTEN_CLIENT_URL');
    expect(envName('initial-cluster')).toBe('FLOTILLA_INITIAL_CLUSTER');
    expect(envName('heartbeat-interval')).toBe('FLOTILLA_HEARTBEAT_INTERVAL');
    expect(envName('election-timeout')).toBe('FLOTILLA_ELECTION_TIMEOUT');
  });

  test('a full config from the environment alone, spelled out literally', () => {
    const c = loadServeConfig([], {
      FLOTILLA_NAME: 'n3',
      FLOTILLA_DATA_DIR: '/data/n3',
      FLOTILLA_LISTEN_CLIENT_URL: 'http://127.0.0.1:32379',
      FLOTILLA_LISTEN_PEER_URL: 'http://127.0.0.1:32380',
      FLOTILLA_ADVERTISE_CLIENT_URL: 'http://10.0.0.3:32379',
      FLOTILLA_INITIAL_CLUSTER: CLUSTER,
      FLOTILLA_HEARTBEAT_INTERVAL: '20',
      FLOTILLA_ELECTION_TIMEOUT: '200',
    });
    expect(c).toMatchObject({
      name: 'n3',
      dataDir: '/data/n3',
      listenClientUrl: 'http://127.0.0.1:32379',
      listenPeerUrl: 'http://127.0.0.1:32380',
      advertiseClientUrl: 'http://10.0.0.3:32379',
      initialCluster: CLUSTER_PARSED,
      heartbeatIntervalMs: 20,
      electionTimeoutMs: 200,
    });
  });

  test.each(CONTRACT_FLAGS)('FLOTILLA_* for --$flag', ({ flag, value, key, parsed }) => {
    const base: Record<string, string> = { ...REQUIRED, [flag]: value };
    const c = loadServeConfig([], envOf(base));
    expect((c as Record<string, unknown>)[key]).toEqual(parsed);
  });

  test.each(CONTRACT_FLAGS)('--$flag wins over its FLOTILLA_* variable', ({ flag, value, key, parsed }) => {
    const other: Record<string, string> = {
      'name': 'n9',
      'data-dir': '/env/dir',
      'listen-client-url': 'http://127.0.0.1:9999',
      'listen-peer-url': 'http://127.0.0.1:9998',
      'advertise-client-url': 'http://10.9.9.9:9999',
      'initial-cluster': 'n9=http://127.0.0.1:9998',
      'heartbeat-interval': '10',
      'election-timeout': '100',
    };
    const c = loadServeConfig(args({ [flag]: value }), envOf({ ...REQUIRED, ...other }));
    expect((c as Record<string, unknown>)[key]).toEqual(parsed);
  });

  test('flags and environment combine: env fills what flags leave out', () => {
    const c = loadServeConfig(['--name', 'n1', '--data-dir', '/d'], {
      FLOTILLA_LISTEN_CLIENT_URL: 'http://127.0.0.1:2379',
      FLOTILLA_LISTEN_PEER_URL: 'http://127.0.0.1:12380',
      FLOTILLA_ELECTION_TIMEOUT: '3000',
    });
    expect(c).toMatchObject({ name: 'n1', dataDir: '/d', listenClientUrl: 'http://127.0.0.1:2379', electionTimeoutMs: 3000, heartbeatIntervalMs: 100 });
  });

  test('bad values from the environment are reported under the flag name', () => {
    const message = configError([], envOf({ ...REQUIRED, 'listen-peer-url': 'not a url' }));
    expect(message).toContain('--listen-peer-url');
  });
});

describe('--forward-to-leader (boolean extension)', () => {
  test.each([
    { argv: ['--forward-to-leader'], want: true },
    { argv: ['--forward-to-leader=true'], want: true },
    { argv: ['--forward-to-leader=false'], want: false },
    { argv: ['--forward-to-leader', 'true'], want: true },
    { argv: ['--forward-to-leader', 'false'], want: false },
    { argv: ['--forward-to-leader=1'], want: true },
    { argv: ['--forward-to-leader=0'], want: false },
  ])('$argv → $want', ({ argv, want }) => {
    expect(loadServeConfig([...args(), ...argv], {}).forwardToLeader).toBe(want);
  });

  test('without a value, followed by another flag', () => {
    const c = loadServeConfig(['--forward-to-leader', ...args()], {});
    expect(c.forwardToLeader).toBe(true);
    expect(c.name).toBe('n1');
  });

  test('from the environment', () => {
    expect(loadServeConfig(args(), { FLOTILLA_FORWARD_TO_LEADER: 'true' }).forwardToLeader).toBe(true);
    expect(loadServeConfig(args(), { FLOTILLA_FORWARD_TO_LEADER: '1' }).forwardToLeader).toBe(true);
    expect(loadServeConfig(['--forward-to-leader=false', ...args()], { FLOTILLA_FORWARD_TO_LEADER: 'true' }).forwardToLeader).toBe(false);
  });

  test('a value that is not a boolean is rejected', () => {
    expect(configError([...args(), '--forward-to-leader=yes'])).toContain('--forward-to-leader');
  });
});

describe('bad input: ConfigError with a one-line reason naming the flag', () => {
  test('unknown flag', () => {
    expect(configError([...args(), '--bogus', 'x'])).toContain('--bogus');
    expect(configError([...args(), '--bogus=x'])).toContain('--bogus');
    expect(configError(['--bogus'])).toContain('--bogus');
  });

  test('a stray positional argument', () => {
    expect(configError([...args(), 'extra'])).toContain('extra');
  });

  test.each(CONTRACT_FLAGS.map(({ flag }) => flag))('missing value at the end: --%s', (flag) => {
    expect(configError([...args({ [flag]: null }), `--${flag}`])).toContain(`--${flag}`);
  });

  test.each(['data-dir', 'election-timeout'])(
    'missing value followed by another flag: --%s',
    (flag) => {
      // `--data-dir --name n1 ...`: the next flag must not be swallowed as the value.
      const argv = [`--${flag}`, ...args({ [flag]: null })];
      expect(configError(argv)).toContain(`--${flag}`);
    },
  );

  test('missing value followed by the boolean flag is not taken as the value', () => {
    // Otherwise `--data-dir --forward-to-leader` silently makes a data dir named "--forward-to-leader".
    expect(configError([...args({ 'data-dir': null }), '--data-dir', '--forward-to-leader'])).toContain('--data-dir');
  });

  test.each(['name', 'data-dir', 'listen-client-url', 'listen-peer-url'])('missing required flag --%s', (flag) => {
    expect(configError(args({ [flag]: null }))).toContain(`--${flag}`);
  });

  test('no flags at all names a required flag', () => {
    expect(configError([])).toMatch(/--(name|data-dir|listen-client-url|listen-peer-url)\b/);
  });

  test('an empty value counts as missing for a required flag', () => {
    expect(configError(args({ name: '' }))).toContain('--name');
    expect(configError([...args({ name: null }), '--name='])).toContain('--name');
  });

  test.each([
    ['listen-client-url', 'not a url'],
    ['listen-client-url', '127.0.0.1:2379'],
    ['listen-client-url', 'ftp://127.0.0.1:2379'],
    ['listen-peer-url', 'http://'],
    ['listen-peer-url', 'tcp://127.0.0.1:12380'],
    ['advertise-client-url', 'nope'],
  ])('bad URL: --%s %s', (flag, value) => {
    expect(configError(args({ [flag]: value }))).toContain(`--${flag}`);
  });

  test.each([
    'n1',
    'n1=',
    '=http://127.0.0.1:12380',
    'n1=not-a-url',
    'n1=ftp://127.0.0.1:12380',
    'n1=http://127.0.0.1:12380,',
    'n1=http://127.0.0.1:12380,,n2=http://127.0.0.1:22380',
    'n1 x=http://127.0.0.1:12380',
    'n1=http://127.0.0.1:12380;n2=http://127.0.0.1:22380',
  ])('bad initial cluster entry: %s', (value) => {
    expect(configError(args({ 'initial-cluster': value }))).toContain('--initial-cluster');
  });

  test('duplicate member in the initial cluster', () => {
    const message = configError(args({ 'initial-cluster': 'n1=http://127.0.0.1:12380,n1=http://127.0.0.1:22380' }));
    expect(message).toContain('--initial-cluster');
    expect(message).toContain('n1');
  });

  test.each([
    { hb: '100', et: '199' },
    { hb: '100', et: '100' },
    { hb: '600', et: null },
  ])('election timeout below twice the heartbeat: heartbeat $hb, election $et', ({ hb, et }) => {
    expect(configError(args({ 'heartbeat-interval': hb, 'election-timeout': et }))).toContain('--election-timeout');
  });

  test('election timeout of exactly twice the heartbeat is fine', () => {
    const c = loadServeConfig(args({ 'heartbeat-interval': '100', 'election-timeout': '200' }), {});
    expect(c.electionTimeoutMs).toBe(200);
  });

  test.each([
    ['heartbeat-interval', 'abc'],
    ['heartbeat-interval', '10ms'],
    ['heartbeat-interval', '1.5'],
    ['heartbeat-interval', '0'],
    ['heartbeat-interval', '-5'],
    ['election-timeout', 'soon'],
    ['election-timeout', '1000.5'],
    ['election-timeout', '-1000'],
    ['election-timeout', 'NaN'],
    ['election-timeout', 'Infinity'],
  ])('non-numeric or non-positive interval: --%s %s', (flag, value) => {
    expect(configError(args({ [flag]: value }))).toContain(`--${flag}`);
  });

  test('a bad member name', () => {
    expect(configError(args({ name: 'n 1' }))).toContain('--name');
    expect(configError(args({ name: 'x'.repeat(65) }))).toContain('--name');
  });
});

describe('the real CLI', () => {
  beforeAll(() => {
    if (existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) return;
    const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`build failed:\n${build.stdout}${build.stderr}`);
  }, 120_000);

  function serve(...argv: string[]) {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLOTILLA_')) env[k] = v;
    return spawnSync(process.execPath, ['bin/flotilla.js', 'serve', ...argv], { cwd: ROOT, encoding: 'utf8', env, timeout: 30_000 });
  }

  function oneLine(stderr: string): string {
    const lines = stderr.split('\n').filter((l) => l.length > 0);
    expect(lines, `stderr was ${JSON.stringify(stderr)}`).toHaveLength(1);
    expect(stderr.endsWith('\n')).toBe(true);
    return lines[0];
  }

  test('serve --bogus exits 2 with one line on stderr', () => {
    const r = serve('--bogus');
    expect(r.status).toBe(2);
    expect(oneLine(r.stderr)).toContain('--bogus');
  });

  test('serve with no flags exits 2 with one line on stderr', () => {
    const r = serve();
    expect(r.status).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/--(name|data-dir|listen-client-url|listen-peer-url)\b/);
  });
});
