import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CLI, ProcessCluster, REPO } from '../support/process-cluster.js';
import { spawnCli } from './cli-process.js';

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** The contract's command-line forms: get|put|del|list|watch KEY [VALUE] --endpoints URL,... */
describe('client commands of the CLI', () => {
  let cluster: ProcessCluster;
  let endpoints: string;

  const run = (args: string[], stdin?: string, env: Record<string, string> = {}): Promise<Run> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      let err = '';
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.stdin.end(stdin ?? '');
      child.on('exit', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
    });

  beforeAll(async () => {
    cluster = await ProcessCluster.create({ size: 3, electionMs: 500 });
    await cluster.startAll();
    endpoints = cluster.members.map((m) => m.clientUrl).join(',');
  });

  afterAll(async () => {
    await cluster?.destroy();
  });

  test('put, get, list, del; values from stdin; exit codes', async () => {
    const put = await run(['put', 'cli/a', 'hello', '--endpoints', endpoints]);
    expect(put.code, put.stderr).toBe(0);
    const written = JSON.parse(put.stdout.toString()) as { modRevision: number };
    expect(written).toMatchObject({ key: 'cli/a', version: 1 });

    const [fromStdin, dashValue, cas, badCas, env] = await Promise.all([
      run(['put', 'cli/b', '-', '--endpoints', endpoints], 'from\nstdin'),
      run(['put', 'cli/c', '--endpoints', endpoints, '--', '--not-a-flag']),
      run(['put', 'cli/a', 'again', '--if-match', String(written.modRevision), '--endpoints', endpoints]),
      run(['put', 'cli/a', 'late', '--if-match', String(written.modRevision), '--endpoints', endpoints]),
      run(['get', 'cli/env'], undefined, { FLOTILLA_ENDPOINTS: endpoints }),
    ]);
    expect(fromStdin.code).toBe(0);
    expect(dashValue.code).toBe(0);
    expect([cas.code, badCas.code].sort()).toEqual([0, 1]); // exactly one of the two CAS writes wins
    expect((cas.code === 1 ? cas : badCas).stderr).toMatch(/PRECONDITION_FAILED/);
    expect(env.code).toBe(1);
    expect(env.stderr.trim()).toBe('flotilla get: "cli/env" not found');

    const [getB, getJson, list, absent, usage, badFlag] = await Promise.all([
      run(['get', 'cli/b', '--endpoints', endpoints]),
      run(['get', 'cli/c', '--json', '--endpoints', endpoints]),
      run(['list', 'cli/', '--endpoints', endpoints]),
      run(['get', 'cli/none', '--endpoints', endpoints]),
      run(['put', 'only-key', '--endpoints', endpoints]),
      run(['get', 'k', '--bogus', '--endpoints', endpoints]),
    ]);
    expect(getB.stdout.toString()).toBe('from\nstdin');
    expect(JSON.parse(getJson.stdout.toString())).toMatchObject({ key: 'cli/c', value: '--not-a-flag', version: 1 });
    expect(list.stdout.toString().trim().split('\n').map((l) => (JSON.parse(l) as { key: string }).key)).toEqual(['cli/a', 'cli/b', 'cli/c']);
    expect(absent.code).toBe(1);
    expect(absent.stderr).toMatch(/not found/);
    expect(usage.code).toBe(2);
    expect(usage.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(badFlag.code).toBe(2);

    const del = await run(['del', 'cli/a', '--endpoints', endpoints]);
    expect(JSON.parse(del.stdout.toString())).toMatchObject({ deleted: 1 });
    const unreachable = await run(['get', 'cli/a', '--endpoints', 'http://127.0.0.1:1', '--deadline', '300']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/UNAVAILABLE/);
  });

  test('watch prints one JSON line per event, from a revision, until SIGINT', async () => {
    const first = JSON.parse((await run(['put', 'cliw/x', '1', '--endpoints', endpoints])).stdout.toString()) as { modRevision: number };
    await run(['put', 'cliw/y', '2', '--endpoints', endpoints]);
    const watcher = spawnCli(['watch', 'cliw/', '--prefix', '--from-revision', String(first.modRevision), '--endpoints', endpoints], []);
    await watcher.waitForLine((l) => l.includes('cliw/y'), 20_000);
    await run(['del', 'cliw/x', '--endpoints', endpoints]);
    await watcher.waitForLine((l) => l.includes('"delete"'), 20_000);
    watcher.kill('SIGINT');
    expect((await watcher.exited).code).toBe(0);
    expect(watcher.stdout.map((l) => JSON.parse(l.text) as Record<string, unknown>)).toEqual([
      { type: 'put', key: 'cliw/x', value: '1', modRevision: first.modRevision },
      { type: 'put', key: 'cliw/y', value: '2', modRevision: first.modRevision + 1 },
      { type: 'delete', key: 'cliw/x', modRevision: first.modRevision + 2 },
    ]);
  });
});
