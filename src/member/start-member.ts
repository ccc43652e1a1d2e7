import { ServeConfig } from '../config/schema.js';
import type { ServeConfigInput } from '../config/schema.js';
import { createLogger } from '../util/log.js';
import type { PinoLogger } from '../util/log.js';
import { Member } from './member.js';

export interface StartMemberOptions extends ServeConfigInput {
  /** A pino logger to use; by default one at `logLevel` (JSON lines, or readable on a terminal). */
  readonly logger?: PinoLogger;
  /** Called when the member cannot go on (a failed disk write); default: exit the process (70). */
  readonly onFatal?: (err: unknown) => void;
}

/**
 * Run a member inside this process, with the same options as `flotilla serve` (camelCase names:
 * `name`, `dataDir`, `listenClientUrl`, `listenPeerUrl`, `initialCluster` as
 * "n1=URL,n2=URL" or as the CLI string, `heartbeatIntervalMs`, `electionTimeoutMs`, ...).
 * Resolves once it listens; `await member.stop()` shuts it down cleanly.
 */
export async function startMember(options: StartMemberOptions): Promise<Member> {
  const { logger, onFatal, ...raw } = options;
  const parsed = ServeConfig.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`startMember: ${issue.path.join('.') || 'options'}: ${issue.message}`);
  }
  const log = logger ?? createLogger(parsed.data.logLevel);
  return Member.start(parsed.data, onFatal ? { logger: log, onFatal } : { logger: log });
}
