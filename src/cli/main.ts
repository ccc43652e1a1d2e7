import { devCluster } from './dev-cluster.js';
import { serve } from './serve.js';

const USAGE = `usage: flotilla <command> [flags]

commands:
  serve        run a member (see docs/api.md for every flag)
  dev-cluster  run the contract's local 3-member cluster in the foreground (make cluster)

Run 'flotilla serve --help' for the flags of serve.`;

const SERVE_HELP = `usage: flotilla serve --name NAME --data-dir DIR --listen-client-url URL --listen-peer-url URL
                     [--advertise-client-url URL] [--initial-cluster n1=URL,n2=URL,...]
                     [--heartbeat-interval MS] [--election-timeout MS] [--forward-to-leader]
                     [--max-key-bytes N] [--max-value-bytes N] [--request-timeout MS] [--log-level LEVEL]
Every flag can also come from the environment as FLOTILLA_<FLAG_IN_UPPER_SNAKE>.`;

/** The CLI's entry: returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(SERVE_HELP + '\n');
        return 0;
      }
      return serve(rest);
    case 'dev-cluster':
      return devCluster(rest);
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE + '\n');
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`flotilla: unknown command "${command}"\n${USAGE}\n`);
      return 2;
  }
}
