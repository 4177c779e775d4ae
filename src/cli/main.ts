#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { isLarsError } from '../errors.js';
import { registerCommands } from './commands/index.js';

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command('lars')
    .description(
      'Lars: call services by name. Route service (dns), per-host load-balancing agent, reporter, web console and tools.',
    )
    .version(packageVersion(), '-V, --version', 'print the version')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ showGlobalOptions: true });
  registerCommands(program);
  return program;
}

/** Prints a LarsError as `lars: CODE: message` and exits 1; other errors keep their stack. */
export function reportFatal(err: unknown): never {
  if (isLarsError(err)) {
    process.stderr.write(`lars: ${err.code}: ${err.message}\n`);
  } else if (err instanceof CommanderError) {
    process.exit(err.exitCode);
  } else {
    process.stderr.write(`lars: ${(err as Error)?.stack ?? String(err)}\n`);
  }
  process.exit(1);
}

const program = buildProgram();
program.parseAsync(process.argv).catch(reportFatal);
