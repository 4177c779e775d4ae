import type { Command } from 'commander';
import { InvalidArgumentError } from '../../errors.js';
import { parsePort } from '../../protocol/ip.js';
import type { ShmClient } from '../../shm/index.js';
import { defaultShmSocket } from '../../shm/socket-path.js';
import { notifyReady } from '../../supervisor/child-ipc.js';
import { loadServiceConfig, processIo, untilSignal, withConfigOption, type CliIo } from '../options.js';
import { formatHolders, formatReclaim, formatStat } from './shm-format.js';

interface DaemonFlags {
  socket?: string;
  classes?: string;
  config?: string;
  httpPort?: string;
}

interface ClientFlags {
  socket?: string;
  config?: string;
  json?: boolean;
}

/** How long the CLI waits for the daemon to answer. */
const CLI_CONNECT_WAIT_MS = 3_000;

/** Runs the daemon in this process until SIGINT/SIGTERM (`lars shm`). */
export async function runShmDaemon(o: DaemonFlags): Promise<void> {
  // Loaded here, not at start-up: every other command starts faster without them.
  const [{ createServiceLogger }, { ShmDaemon, shmDaemonSettings }] = await Promise.all([
    import('../../log/logger.js'),
    import('../../shm/daemon/index.js'),
  ]);
  const loaded = loadServiceConfig(o.config, []);
  const settings = shmDaemonSettings(
    loaded.config,
    {
      ...(o.socket !== undefined ? { socket: o.socket } : {}),
      ...(o.classes !== undefined ? { classes: o.classes } : {}),
      ...(o.httpPort !== undefined ? { httpPort: parsePort(o.httpPort, '--http-port', true) } : {}),
    },
    defaultShmSocket(),
    loaded.file,
  );
  const log = createServiceLogger('shm');
  const daemon = new ShmDaemon({ ...settings, logger: log });
  const info = await daemon.start();
  notifyReady({ ...(info.httpPort !== undefined ? { http: info.httpPort } : {}) });
  const sig = await untilSignal();
  log.info({ signal: sig }, 'shm daemon shutting down');
  await daemon.close();
}

/** The socket a client command talks to: --socket > [shm] socket (file or LARS_SHM_SOCKET) > default. */
function clientSocket(o: ClientFlags): string {
  if (o.socket) return o.socket;
  const loaded = loadServiceConfig(o.config, []);
  return loaded.config.shm.socket || defaultShmSocket();
}

async function withClient<T>(o: ClientFlags, fn: (c: ShmClient) => Promise<T>): Promise<T> {
  const { ShmClient } = await import('../../shm/index.js');
  const client = await ShmClient.connect({
    socket: clientSocket(o),
    reconnect: false,
    connectWaitMs: CLI_CONNECT_WAIT_MS,
  });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

export async function runShmStat(o: ClientFlags, io: CliIo = processIo): Promise<void> {
  const stat = await withClient(o, (c) => c.stat());
  io.out(o.json ? JSON.stringify(stat, null, 2) : formatStat(stat));
}

export async function runShmHolders(o: ClientFlags, io: CliIo = processIo): Promise<void> {
  const report = await withClient(o, (c) => c.holders());
  io.out(o.json ? JSON.stringify(report, null, 2) : formatHolders(report));
}

export async function runShmReclaim(pidText: string, o: ClientFlags, io: CliIo = processIo): Promise<void> {
  if (!/^\d+$/.test(pidText) || Number(pidText) <= 0 || Number(pidText) > 0x7fffffff) {
    throw new InvalidArgumentError(`PID: expected a process id, got ${JSON.stringify(pidText)}`);
  }
  const result = await withClient(o, (c) => c.reclaim(Number(pidText), { reason: 'manual' }));
  io.out(o.json ? JSON.stringify(result, null, 2) : formatReclaim(result));
}

const SOCKET_HELP =
  'daemon socket (default [shm] socket, env LARS_SHM_SOCKET, else $LARS_DATA_DIR/shm/shm.sock)';

/** A sub-command; --socket and --config are the parent's (given before or after the sub-command name). */
function clientCommand(parent: Command, name: string, description: string): Command {
  return parent.command(name).description(description).option('--json', 'print JSON');
}

const flags = (cmd: Command): ClientFlags => cmd.optsWithGlobals<ClientFlags>();

export function register(program: Command): void {
  const shm = withConfigOption(
    program
      .command('shm')
      .description(
        'run the shared-memory buffer manager: a pool of size classes in /dev/shm that local processes allocate from and hand to each other by reference (docs/shm.md)',
      ),
  )
    .option('--socket <path>', SOCKET_HELP)
    .option(
      '--classes <spec>',
      'size classes SIZE:COUNT,... (default [shm] classes, 4KiB:4096,64KiB:512,1MiB:64,16MiB:8)',
    )
    .option('--http-port <port>', 'health/metrics HTTP port (default [shm] http_port, any free port)')
    .action((o: DaemonFlags) => runShmDaemon(o));
  clientCommand(
    shm,
    'stat',
    'show the pool: per-class blocks total/free/used, generation, modes, batches in flight',
  ).action((_o: ClientFlags, cmd: Command) => runShmStat(flags(cmd)));
  clientCommand(
    shm,
    'holders',
    'show which process holds how much of which class (and its unreceived batches)',
  ).action((_o: ClientFlags, cmd: Command) => runShmHolders(flags(cmd)));
  clientCommand(
    shm,
    'reclaim',
    'release everything process PID holds and cut its connections (for a hung process)',
  )
    .argument('<PID>', 'process id')
    .action((pid: string, _o: ClientFlags, cmd: Command) => runShmReclaim(pid, flags(cmd)));
}
