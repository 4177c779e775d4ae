import cluster from 'node:cluster';
import type { Command } from 'commander';
import type { FlagOverride, LoadedConfig } from '../../config/index.js';
import { defaultBusSocket } from '../../bus/socket-path.js';
import { parsePort } from '../../protocol/ip.js';
import { notifyReady } from '../../supervisor/child-ipc.js';
import { loadServiceConfig, untilSignal, withConfigOption } from '../options.js';
import { registerBusTools } from './bus-tools.js';

export interface BusDaemonFlags {
  socket?: string;
  config?: string;
  httpPort?: string;
  replace?: boolean;
}

export function busFlags(o: BusDaemonFlags): FlagOverride[] {
  const flags: FlagOverride[] = [];
  if (o.socket !== undefined)
    flags.push({ section: 'bus', key: 'socket', value: o.socket, flag: '--socket' });
  if (o.httpPort !== undefined)
    flags.push({
      section: 'bus',
      key: 'http_port',
      value: parsePort(o.httpPort, '--http-port', true),
      flag: '--http-port',
    });
  return flags;
}

/** The bus socket: --socket > [bus] socket (or LARS_BUS_SOCKET) > <LARS_DATA_DIR or ./lars-data>/bus/bus.sock. */
export function busSocket(loaded: LoadedConfig): string {
  return loaded.config.bus.socket || defaultBusSocket();
}

/** Runs the bus daemon in this process until SIGINT/SIGTERM (then the graceful close of DESIGN §9). */
export async function runBusDaemon(o: BusDaemonFlags): Promise<void> {
  const loaded = loadServiceConfig(o.config, busFlags(o));
  // Loaded here, not at start-up: every other command starts faster without them.
  const [{ createServiceLogger }, { BusService, busSettingsFromConfig }, { bridgeSettingsFromConfig }] =
    await Promise.all([
      import('../../log/logger.js'),
      import('../../bus/server/index.js'),
      import('../../bus/bridge/bridge-settings.js'),
    ]);
  const settings = busSettingsFromConfig(loaded.config);
  const bridge = bridgeSettingsFromConfig(loaded.config);
  const log = createServiceLogger('bus');
  const svc = new BusService({
    socketPath: busSocket(loaded),
    settings,
    httpPort: loaded.config.bus.http_port,
    logger: log,
    replace: o.replace === true,
    ...(loaded.config.shm.socket ? { shmSocket: loaded.config.shm.socket } : {}),
    ...(bridge ? { bridge } : {}),
  });
  const { socket, httpPort } = await svc.start();
  notifyReady(httpPort !== undefined ? { http: httpPort } : {});
  log.info({ socket, httpPort, offlineMs: settings.offlineMs, killMs: settings.killMs }, 'bus ready');
  const sig = await untilSignal();
  log.info({ signal: sig, lingerMs: settings.lingerMs }, 'bus shutting down');
  await svc.close();
  // A cluster worker's IPC channel would keep the process alive after a graceful close.
  if (cluster.isWorker) process.channel?.unref();
}

export function register(program: Command): void {
  const bus = withConfigOption(
    program
      .command('bus')
      .description(
        'run the same-host message bus (registration, pub/sub, request/reply over a Unix socket; shared-memory ' +
          'payloads through lars shm; [bus.bridge] of --config bridges subjects to NATS; see docs/bus.md), ' +
          'or talk to a running one: procs, topics, pub, sub, req, bench',
      ),
  )
    .option(
      '--socket <path>',
      'Unix socket of the bus: the daemon listens there, the other commands connect there (default [bus] socket, env LARS_BUS_SOCKET, else <LARS_DATA_DIR or ./lars-data>/bus/bus.sock)',
    )
    .option(
      '--http-port <port>',
      'health/metrics/procs HTTP port on 127.0.0.1 (default [bus] http_port, 0 = any)',
    )
    .option(
      '--replace',
      'take the socket over from a bus already running there (the rolling restart of lars up); default: refuse',
    )
    .action((o: BusDaemonFlags) => runBusDaemon(o));
  registerBusTools(bus);
}
