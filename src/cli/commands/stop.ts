import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import { controlPaths, controlRequest, processAlive, readStateFile } from '../../supervisor/control.js';
import { StopExitCode } from '../../supervisor/exit-codes.js';
import { processIo, type CliIo } from '../options.js';
import { defaultDataDir } from './up.js';

interface StopFlags {
  dataDir: string;
  timeout: string;
}

const DEFAULT_STOP_TIMEOUT_S = 60;
const POLL_MS = 100;

/**
 * `lars stop`: asks the master of `lars up` on DIR to drain and waits until it has exited. Without
 * a control socket but with a live master pid in the state file, sends it SIGTERM (same effect).
 * Exit status: 0 stopped or not running, 1 still running after --timeout.
 */
export async function runStop(o: StopFlags, io: CliIo = processIo): Promise<number> {
  const timeoutS = Number(o.timeout);
  if (!(timeoutS > 0))
    throw new InvalidArgumentError(`--timeout: expected seconds > 0, got ${JSON.stringify(o.timeout)}`);
  const dataDir = resolve(o.dataDir);
  const paths = controlPaths(dataDir);
  let pid: number | undefined;
  const reply = await controlRequest(paths.socket, { cmd: 'stop' }, 5_000).catch(() => undefined);
  if (reply?.ok) {
    pid = reply.pid;
  } else {
    const last = readStateFile(paths.state);
    if (
      last &&
      last.master.state !== 'stopped' &&
      processAlive(last.master.pid) &&
      looksLikeLarsUp(last.master.pid)
    ) {
      pid = last.master.pid;
      io.err(`lars stop: control socket ${paths.socket} does not answer; sending SIGTERM to pid ${pid}`);
      process.kill(pid, 'SIGTERM');
    }
  }
  if (pid === undefined) {
    io.out(`lars up is not running on ${dataDir}.`);
    return StopExitCode.OK;
  }
  io.out(`stopping lars up (pid ${pid}): draining every service...`);
  const deadline = Date.now() + timeoutS * 1000;
  while (processAlive(pid)) {
    if (Date.now() > deadline) {
      io.err(
        `lars: LARS_ERR_TIMEOUT: lars up (pid ${pid}) is still running after ${timeoutS} s (still draining?); ` +
          `see \`lars status\`, wait longer with --timeout, or end it with kill -9 ${pid}`,
      );
      return StopExitCode.TIMEOUT;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  const code = readStateFile(paths.state)?.master.exitCode;
  io.out(`stopped (pid ${pid}${code !== undefined ? `, exit status ${code}` : ''}).`);
  return StopExitCode.OK;
}

/** Guards against a recycled pid: the process must be a node running `up` (Linux /proc; else trust it). */
function looksLikeLarsUp(pid: number): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.includes('up');
  } catch {
    return true;
  }
}

export function register(program: Command): void {
  program
    .command('stop')
    .description('stop `lars up` gracefully (drain, then exit) and wait until it has exited')
    .option('--data-dir <dir>', 'data directory of the lars up to stop; env LARS_DATA_DIR', defaultDataDir())
    .option('--timeout <s>', 'seconds to wait for the master to exit', String(DEFAULT_STOP_TIMEOUT_S))
    .action(async (o: StopFlags) => {
      process.exitCode = await runStop(o);
    });
}
