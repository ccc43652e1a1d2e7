import { spawn, type ChildProcess } from 'node:child_process';
import { CLI, REPO } from '../support/process-cluster.js';

export interface Line {
  readonly at: number;
  readonly text: string;
}

/** A child process (the CLI or a fixture script) whose output lines are kept with their arrival time. */
export class Proc {
  readonly stdout: Line[] = [];
  readonly stderr: Line[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #waiters = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    const collect = (into: Line[]) => {
      let partial = '';
      return (chunk: Buffer) => {
        partial += chunk.toString('utf8');
        const parts = partial.split('\n');
        partial = parts.pop() ?? '';
        for (const text of parts) into.push({ at: Date.now(), text });
        for (const w of this.#waiters) w();
      };
    };
    child.stdout?.on('data', collect(this.stdout));
    child.stderr?.on('data', collect(this.stderr));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const w of this.#waiters) w();
    }));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Wait for a stdout line matching `pred`; rejects after timeoutMs or if the process exits first. */
  waitForLine(pred: (text: string) => boolean, timeoutMs: number): Promise<Line> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.stdout.find((l) => pred(l.text));
        if (hit) return done(() => resolve(hit));
        if (!this.running) done(() => reject(new Error(`process exited before the line came; stderr: ${this.stderr.map((l) => l.text).join(' | ')}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`no matching line within ${timeoutMs} ms; stderr: ${this.stderr.map((l) => l.text).join(' | ')}`))), timeoutMs);
      const done = (f: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        f();
      };
      this.#waiters.add(check);
      check();
    });
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }
}

export function spawnCli(args: readonly string[], endpoints: readonly string[]): Proc {
  return spawnNode([CLI, ...args], endpoints);
}

export function spawnNode(args: readonly string[], endpoints: readonly string[]): Proc {
  return new Proc(spawn(process.execPath, args, {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FLOTILLA_ENDPOINTS: endpoints.join(',') },
  }));
}
