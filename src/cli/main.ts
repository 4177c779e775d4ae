#!/usr/bin/env node
import { packageVersion } from './version.js';

/**
 * The `lars` executable. `lars --version` answers before anything else loads (issue 16: within 2×
 * of a bare `node -e 0`); every other command goes through program.ts, and each command loads its
 * heavy modules (servers, database drivers, the SDK) only when it runs.
 */
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  process.stdout.write(`${packageVersion()}\n`);
} else {
  const { runCli } = await import('./program.js');
  await runCli(process.argv);
}
