// Recording loopback traffic with tcpdump for the wire-level tools (wire-latency.mjs,
// put1-timeline.mjs). Captures go under /dev/shm when it exists, so they add no disk writes
// beside the members' fsyncs; the scratch dir goes when the process exits.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run, sleep, startChild, stopChild, which } from './proc.mjs';

/** Only packets that carry TCP payload (IP length minus both headers is not 0). */
export const PAYLOAD_ONLY = '(((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)';

/** A scratch dir for captures (and anything else short-lived), removed at exit. */
export async function captureScratchDir(label, fallbackDir) {
  if (!(await which('tcpdump'))) throw new Error('tcpdump is not installed (apt-get install tcpdump)');
  const dir = existsSync('/dev/shm') ? mkdtempSync(`/dev/shm/flotilla-${label}-`) : fallbackDir;
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Starts tcpdump on lo with `filter` (80 bytes of each packet) into dir/name.pcap, once it runs.
 * stop() ends it and returns the capture as `tcpdump -nn -tt -q` lines, deleting the file.
 */
export async function startCapture({ dir, name, filter, logDir }) {
  const pcap = join(dir, `${name}.pcap`);
  const tcpdump = startChild('tcpdump', ['-i', 'lo', '-nn', '-s', '80', '-B', '65536', '-w', pcap, filter], { logFile: join(logDir, 'tcpdump.log') });
  await sleep(1000);
  if (tcpdump.exitCode !== null) throw new Error(`tcpdump exited (${tcpdump.exitCode}); see ${tcpdump.logFile}`);
  return {
    async stop() {
      await sleep(300);
      await stopChild(tcpdump);
      const read = await run('tcpdump', ['-r', pcap, '-nn', '-tt', '-q']);
      rmSync(pcap, { force: true });
      return read.stdout;
    },
  };
}
