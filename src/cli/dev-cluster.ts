import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { parseFlags } from '../config/load.js';

/** The contract's local cluster: names and ports (the etcd convention). */
const MEMBERS = [
  { name: 'n1', client: 'http://127.0.0.1:2379', peer: 'http://127.0.0.1:12380' },
  { name: 'n2', client: 'http://127.0.0.1:22379', peer: 'http://127.0.0.1:22380' },
  { name: 'n3', client: 'http://127.0.0.1:32379', peer: 'http://127.0.0.1:32380' },
] as const;

const LEADER_WAIT_MS = 20_000;
const CHILD_STOP_MS = 10_000;

/**
 * `flotilla dev-cluster` (what `make cluster` runs): three members in the foreground, logs
 * prefixed by name, the curl lines to try once a leader is known; Ctrl-C stops all three.
 */
export async function devCluster(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(argv, { 'data-dir': 'dataDir' });
  const dataDir = resolve(values['data-dir'] ?? './data');
  const cli = resolve(import.meta.dirname, '../../bin/flotilla.js');
  const initial = MEMBERS.map((m) => `${m.name}=${m.peer}`).join(',');
  const children: ChildProcess[] = MEMBERS.map((m) => {
    const child = spawn(
      process.execPath,
      [cli, 'serve', '--name', m.name, '--data-dir', join(dataDir, m.name), '--listen-client-url', m.client,
        '--listen-peer-url', m.peer, '--initial-cluster', initial],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_PRETTY_LOGS: '1' } },
    );
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) createInterface({ input: stream }).on('line', (line) => process.stdout.write(`${m.name} | ${line}\n`));
    }
    child.on('exit', (code, signal) => process.stdout.write(`${m.name} | exited (${signal ?? code})\n`));
    return child;
  });

  let stopping = false;
  const stopped = new Promise<number>((done) => {
    const stop = () => {
      if (stopping) return;
      stopping = true;
      process.stdout.write('\nstopping the cluster...\n');
      for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
      const timer = setTimeout(() => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')), CHILD_STOP_MS);
      Promise.all(children.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r))))).then(() => {
        clearTimeout(timer);
        done(0);
      });
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });

  const leader = await waitForLeader();
  if (!stopping) printWelcome(leader, dataDir);
  return stopped;
}

async function waitForLeader(): Promise<string | null> {
  const deadline = Date.now() + LEADER_WAIT_MS;
  while (Date.now() < deadline) {
    for (const m of MEMBERS) {
      try {
        const res = await request(`${m.client}/v1/status`, { headersTimeout: 500, bodyTimeout: 500 });
        const s = (await res.body.json()) as { role?: string; name?: string };
        if (s.role === 'leader' && s.name) return s.name;
      } catch {
        // not up yet
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return null;
}

function printWelcome(leader: string | null, dataDir: string): void {
  const follower = MEMBERS.find((m) => m.name !== leader) ?? MEMBERS[1];
  const lines = [
    '',
    '================================================================',
    leader ? `flotilla: 3 members up, ${leader} is the leader (data in ${dataDir})` : 'flotilla: no leader yet (see the logs above)',
    '',
    'Try, from another terminal:',
    `  curl -i -X PUT --data-binary 'hello' ${follower.client}/v1/kv/greeting     # a follower: 307 to the leader`,
    `  curl -L -X PUT --data-binary 'hello' ${follower.client}/v1/kv/greeting     # follow it: written`,
    `  curl -i ${MEMBERS[2].client}/v1/kv/greeting                                # read from any member`,
    `  curl -s ${MEMBERS[0].client}/v1/status`,
    '',
    'Ctrl-C stops all three members.',
    '================================================================',
    '',
  ];
  process.stdout.write(lines.join('\n'));
}
