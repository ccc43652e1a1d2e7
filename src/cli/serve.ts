import { ConfigError, loadServeConfig } from '../config/load.js';
import { Member } from '../member/member.js';
import { createLogger } from '../util/log.js';
import { capYoungGeneration } from './young-generation.js';

/** `flotilla serve`: this process is the member. Exit codes: 0 clean stop, 1 failed start, 2 bad flags. */
export async function serve(argv: readonly string[]): Promise<number> {
  let config;
  try {
    config = loadServeConfig(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`flotilla serve: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  capYoungGeneration(); // this process is the member: shorter scavenges (see young-generation.ts)
  let member: Member;
  try {
    member = await Member.start(config, { logger });
  } catch (err) {
    logger.fatal({ err: err instanceof Error ? err.message : String(err) }, 'could not start');
    process.stderr.write(`flotilla serve: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      member.stop().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'unclean shutdown');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
