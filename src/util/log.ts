import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger as PinoLogger } from 'pino';

export type { PinoLogger };

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const SKIP_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'msg']);

/** JSON lines for machines; `HH:MM:SS.mmm LEVEL msg key=value` when a person is watching. */
export function createLogger(
  level: string,
  pretty = process.stdout.isTTY === true || process.env['FORCE_PRETTY_LOGS'] === '1',
): PinoLogger {
  if (!pretty) return pino({ level });
  return pino({ level }, new PrettyStream());
}

class PrettyStream extends Writable {
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.length > 0) process.stdout.write(formatLine(line) + '\n');
    }
    done();
  }
}

function formatLine(line: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = typeof o['time'] === 'number' ? new Date(o['time']).toISOString().slice(11, 23) : '';
  const level = LEVEL_NAMES[Number(o['level'])] ?? String(o['level']);
  const fields = Object.entries(o)
    .filter(([k]) => !SKIP_FIELDS.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${time} ${level.padEnd(5)} ${String(o['msg'] ?? '')}${fields ? '  ' + fields : ''}`;
}
