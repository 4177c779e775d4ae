import type { Command } from 'commander';
import { resolve } from 'node:path';
import { controlPaths, controlRequest, processAlive, readStateFile } from '../../supervisor/control.js';
import { formatStatus, type StatusSnapshot } from '../../supervisor/status.js';
import { StatusExitCode } from '../../supervisor/exit-codes.js';
import { processIo, type CliIo } from '../options.js';
import { defaultDataDir } from './up.js';

interface StatusFlags {
  dataDir: string;
  json?: boolean;
  health?: boolean;
}

/** Time allowed for the master's answer (it asks every worker's /healthz, 1 s each, in parallel). */
const STATUS_TIMEOUT_MS = 5_000;

/**
 * `lars status`: asks the master of `lars up` on DIR (its control socket) for every service's
 * processes, ports, restarts, state and health. Without a live master it reports the last state file.
 * Exit status: 0 every service running, 1 a service failed/degraded (or the master is mute), 3 not running.
 */
export async function runStatus(o: StatusFlags, io: CliIo = processIo): Promise<number> {
  const dataDir = resolve(o.dataDir);
  const paths = controlPaths(dataDir);
  const reply = await controlRequest(
    paths.socket,
    { cmd: 'status', health: o.health !== false },
    STATUS_TIMEOUT_MS,
  ).catch((err: Error) => err);
  if (!(reply instanceof Error) && reply.ok && reply.status) {
    const s = reply.status;
    io.out(o.json ? JSON.stringify({ running: true, ...s }, null, 2) : formatStatus(s, true));
    return healthy(s) ? StatusExitCode.OK : StatusExitCode.DEGRADED;
  }
  const last = readStateFile(paths.state);
  if (last && last.master.state !== 'stopped' && processAlive(last.master.pid)) {
    const why = reply instanceof Error ? reply.message : reply.ok ? 'empty reply' : reply.error;
    if (o.json) io.out(JSON.stringify({ running: true, responding: false, error: why, last }, null, 2));
    else
      io.err(
        `lars status: the master (pid ${last.master.pid}) is running but does not answer on ${paths.socket}: ${why}`,
      );
    return StatusExitCode.DEGRADED;
  }
  if (o.json) {
    io.out(JSON.stringify({ running: false, dataDir, ...(last ? { last } : {}) }, null, 2));
  } else if (last) {
    const how =
      last.master.state === 'stopped'
        ? `stopped (exit status ${last.master.exitCode ?? '?'})`
        : 'went away without stopping (killed?)';
    io.out(
      `lars up is not running on ${dataDir}: the last master (pid ${last.master.pid}) ${how}; last update ${last.master.updatedAt}.`,
    );
  } else {
    io.out(`lars up is not running on ${dataDir} (no lars up has run there).`);
  }
  return StatusExitCode.NOT_RUNNING;
}

function healthy(s: StatusSnapshot): boolean {
  return s.services.every(
    (svc) => svc.state === 'running' || svc.state === 'disabled' || svc.state === 'unavailable',
  );
}

export function register(program: Command): void {
  program
    .command('status')
    .description(
      'show the processes of `lars up`: service, pid, role, ports, restarts, state, health (exit 0 ok, 1 degraded, 3 not running)',
    )
    .option('--data-dir <dir>', 'data directory of the lars up to ask; env LARS_DATA_DIR', defaultDataDir())
    .option('--json', 'print JSON')
    .option('--no-health', 'do not ask each worker for its /healthz')
    .action(async (o: StatusFlags) => {
      process.exitCode = await runStatus(o);
    });
}
