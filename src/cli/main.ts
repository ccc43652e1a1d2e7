/**
 * The CLI's dispatcher. Each command's module is loaded only when it runs, so a short client
 * command does not pay for loading the member (Fastify, LevelDB) at start.
 */
const USAGE = `usage: flotilla <command> [flags]

member commands:
  serve        run a member (flotilla serve --help lists the flags)
  dev-cluster  run the contract's local 3-member cluster in the foreground (make cluster)
  snapshot     snapshot save FILE --endpoints URL,... | snapshot restore FILE --name N --data-dir DIR --initial-cluster ...

client commands (each also takes --endpoints URL,... and --deadline MS):
  get KEY | put KEY VALUE|- | del KEY | list PREFIX | watch KEY [--prefix] [--from-revision R]
  lock NAME -- COMMAND... | elect NAME VALUE

See README.md, docs/api.md and docs/recipes/README.md.`;

const SERVE_HELP = `usage: flotilla serve --name NAME --data-dir DIR --listen-client-url URL --listen-peer-url URL
                     [--advertise-client-url URL] [--initial-cluster n1=URL,n2=URL,... | --join CLIENT_URL]
                     [--heartbeat-interval MS] [--election-timeout MS] [--forward-to-leader]
                     [--max-key-bytes N] [--max-value-bytes N] [--request-timeout MS]
                     [--snapshot-entries N] [--snapshot-bytes N] [--snapshot-catchup-entries N]
                     [--log-level LEVEL]
Every flag can also come from the environment as FLOTILLA_<FLAG_IN_UPPER_SNAKE>.`;

const CLIENT_COMMANDS = new Set(['get', 'put', 'del', 'list', 'watch', 'lock', 'elect']);

/** The CLI's entry: returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== undefined && CLIENT_COMMANDS.has(command)) {
    const { runClientCommand } = await import('./client-commands.js');
    return runClientCommand(command, rest);
  }
  switch (command) {
    case 'serve': {
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(SERVE_HELP + '\n');
        return 0;
      }
      const { serve } = await import('./serve.js');
      return serve(rest);
    }
    case 'dev-cluster': {
      const { devCluster } = await import('./dev-cluster.js');
      return devCluster(rest);
    }
    case 'snapshot': {
      const { runSnapshotCommand } = await import('./snapshot-commands.js');
      return runSnapshotCommand(rest);
    }
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
