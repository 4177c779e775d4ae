import { Command, CommanderError } from 'commander';
import { isLarsError } from '../errors.js';
import { explainListenError } from '../service/listen-error.js';
import { registerCommands } from './commands/index.js';
import { packageVersion } from './version.js';

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

/**
 * Prints a failure as one line, `lars: CODE: message`, and exits 1 (issue 16: never a stack). A
 * bind/listen failure no command explained still names its address; anything else unexpected is
 * LARS_ERR_INTERNAL, with the stack only under LARS_DEBUG=1.
 */
export function reportFatal(err: unknown): never {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  const lars = isLarsError(err) ? err : explainListenError(err, []);
  if (lars) {
    process.stderr.write(`lars: ${lars.code}: ${lars.message}\n`);
  } else {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`lars: LARS_ERR_INTERNAL: ${message}\n`);
    if (process.env.LARS_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    else process.stderr.write('(an unexpected failure: set LARS_DEBUG=1 to print its stack and report it)\n');
  }
  if (process.env.LARS_DEBUG && isLarsError(err) && err.stack) process.stderr.write(`${err.stack}\n`);
  process.exit(1);
}

/** Parses `argv` and runs the command; every failure goes through reportFatal. */
export function runCli(argv: string[]): Promise<unknown> {
  // `lars … | head`: a closed pipe ends the command quietly, not with an EPIPE stack.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    reportFatal(err);
  });
  return buildProgram().parseAsync(argv).catch(reportFatal);
}
