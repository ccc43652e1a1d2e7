/**
 * Last-resort clean-up for what a chaos run leaves outside this process (member processes, some of
 * them maybe stopped with SIGSTOP; the iptables chain). The normal path is try/finally; this covers
 * the test worker ending early: process.exit (a vitest timeout tearing the worker down), the IPC
 * channel to vitest closing (vitest itself died), or SIGTERM/SIGINT/SIGHUP. A SIGKILL leaves no
 * chance: the next run sweeps stale chains (network.ts), and members would be orphaned.
 */
type Task = () => void;

const tasks = new Set<Task>();
const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
let installed = false;

let ending = false;

/** True once the worker is ending abnormally: nothing may start a member any more. */
export function endingAbnormally(): boolean {
  return ending;
}

function runAll(): void {
  ending = true;
  for (const task of [...tasks]) {
    tasks.delete(task);
    try {
      task();
    } catch {
      // best effort: the others must still run
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  runAll();
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  // With our listener gone, the signal does what it would have done without us (unless vitest listens).
  process.kill(process.pid, signal);
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runAll);  // also on a normal exit: by then every task should have been forgotten
  process.on('disconnect', runAll);
  for (const s of SIGNALS) process.on(s, onSignal);
}

/** Registers a synchronous clean-up; call the returned function once it is no longer needed. */
export function onAbnormalEnd(task: Task): () => void {
  install();
  tasks.add(task);
  return () => {
    tasks.delete(task);
  };
}
