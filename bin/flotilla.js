#!/usr/bin/env node
// The CLI entry. The process this starts *is* the member (no wrapper), so signals reach it.
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { process.stderr.write(`flotilla: ${err instanceof Error ? err.message : String(err)}\n`); process.exit(1); },
);
