import { favourSmallHeap } from '../lean-heap.js';
import cluster from 'node:cluster';
import type { Server } from 'node:net';
import { Command } from 'commander';
import type { FlagOverride, LoadedConfig } from '../../config/index.js';
import type { DnsService } from '../../dns/dns-service.js';
import { probeListen, withListenErrors } from '../../service/listen-error.js';
import { redact } from '../../store/url.js';
import { isHandoffChild, notifyReady, onHandedConnection } from '../../supervisor/child-ipc.js';
import {
  connectionLimits,
  withDbOption,
  loadServiceConfig,
  parsePorts,
  resolveDbUrl,
  untilSignal,
  withConfigOption,
} from '../options.js';
import { parsePort } from '../../protocol/ip.js';

const DNS_PORT_SETTING = '--port or [reactor]/[dnsserver] port';
const DNS_HOST_SETTING = '--host or [reactor]/[dnsserver] ip';

interface DnsFlags {
  db?: string;
  config?: string;
  host?: string;
  port?: string;
  httpPort?: string;
  workers?: string;
}

/**
 * Where dns listens: --host/--port flags > [reactor] (when the file has it, as the original
 * dns.conf) > [dnsserver]. `--port 0` picks a free port.
 */
export function dnsListen(
  loaded: LoadedConfig,
  flags: Pick<DnsFlags, 'host' | 'port'> = {},
): { host: string; port: number } {
  const { config, fileSections } = loaded;
  const useReactor = fileSections.has('reactor') || config.reactor.port !== 0;
  return {
    host: flags.host ?? (useReactor ? config.reactor.ip : config.dnsserver.ip),
    port:
      flags.port !== undefined
        ? parsePort(flags.port, '--port', true)
        : useReactor && config.reactor.port !== 0
          ? config.reactor.port
          : config.dnsserver.port,
  };
}

export function dnsFlags(o: DnsFlags): FlagOverride[] {
  const flags: FlagOverride[] = [];
  if (o.host) flags.push({ section: 'reactor', key: 'ip', value: o.host, flag: '--host' });
  if (o.port)
    flags.push({
      section: 'reactor',
      key: 'port',
      value: parsePorts(o.port, '--port')[0] as number,
      flag: '--port',
    });
  if (o.httpPort) flags.push({ section: 'dns', key: 'http_port', value: o.httpPort, flag: '--http-port' });
  if (o.workers) flags.push({ section: 'reactor', key: 'threadNum', value: o.workers, flag: '--workers' });
  return flags;
}

/** Runs one dns instance in this process until SIGINT/SIGTERM. */
export async function runDns(o: DnsFlags): Promise<void> {
  favourSmallHeap();
  // Loaded here, not at start-up: every other command starts faster without them.
  const [{ createServiceLogger }, { DNS_SQLITE_BUSY_TIMEOUT_MS, DnsService }, { openStore }] =
    await Promise.all([
      import('../../log/logger.js'),
      import('../../dns/dns-service.js'),
      import('../../store/index.js'),
    ]);
  const loaded = loadServiceConfig(o.config, dnsFlags(o));
  const { config } = loaded;
  const log = createServiceLogger('dns');
  const url = resolveDbUrl(o.db, process.env, config);
  // createIfMissing false: a mistyped path must be an error, not a new empty table served to every
  // agent (which would then drop every route). `lars db init` or `lars up` creates the database.
  const store = await openStore(url, {
    logger: log,
    busyTimeoutMs: DNS_SQLITE_BUSY_TIMEOUT_MS,
    createIfMissing: false,
  });
  await store.migrate();
  const listen = dnsListen(loaded, o);
  const dns = new DnsService({
    store,
    host: listen.host,
    port: listen.port,
    httpPort: config.dns.http_port,
    maxConnections: config.reactor.maxConn,
    maxOutboundBytes: config.reactor.maxOutboundKb * 1024,
    ...connectionLimits(config),
    pollIntervalMs: config.dns.poll_interval * 1000,
    reloadIntervalMs: config.dns.reload_interval * 1000,
    changeRetentionS: config.dns.change_retention,
    leaseGraceMs: config.dns.lease_grace * 1000,
    leaseBrakeMaxMs: config.dns.lease_brake * 1000,
    unknownRouteTtlMs: config.dns.unknown_route_ttl * 1000,
    maxUnknownRoutesPerConnection: config.dns.unknown_route_max,
    logger: log.child({ db: redact(url) }),
  });
  let addr: { port: number; httpPort: number };
  try {
    addr = await withListenErrors(
      [
        { what: 'dns', proto: 'tcp', ...listen, setting: DNS_PORT_SETTING, hostSetting: DNS_HOST_SETTING },
        {
          what: 'the dns admin HTTP',
          proto: 'tcp',
          host: listen.host,
          port: config.dns.http_port,
          setting: '--http-port or [dns] http_port',
          hostSetting: DNS_HOST_SETTING,
        },
      ],
      () => dns.start(),
    );
  } catch (err) {
    await store.close();
    throw err;
  }
  // Under `lars up` (docs/operations.md): handoff mode feeds connections accepted by the master to
  // the listening server, as if accepted here; then the master learns that this worker serves.
  const stopAdopting = isHandoffChild()
    ? onHandedConnection((socket) => listeningServer(dns)?.emit('connection', socket))
    : () => {};
  notifyReady({ tcp: addr.port, http: addr.httpPort });
  const sig = await untilSignal();
  log.info({ signal: sig }, 'dns shutting down');
  stopAdopting();
  await dns.close();
  await store.close();
  log.info({ queries: dns.stats.queries, pushes: dns.stats.pushes }, 'dns stopped');
  // A cluster worker's IPC channel would keep the process alive after a graceful close.
  if (cluster.isWorker) process.channel?.unref();
}

/**
 * The net.Server behind DnsService's TcpServer, for handed-off connections. DnsService has no
 * public "adopt a socket" entry yet (a one-line TcpServer.adopt(socket) would replace this), so the
 * private fields are read here, in one place; undefined if they ever change shape.
 */
function listeningServer(dns: DnsService): Server | undefined {
  const server = (dns as unknown as { server?: { server?: Server } }).server?.server;
  return server && typeof server.emit === 'function' ? server : undefined;
}

export function register(program: Command): void {
  withDbOption(
    withConfigOption(
      program
        .command('dns')
        .description(
          "run the route service: answers agents' route requests from the database and pushes every change",
        ),
    ),
  )
    .option('--host <ip>', 'listen address (default [reactor]/[dnsserver] ip, 127.0.0.1)')
    .option('--port <port>', 'listen port (default 7778)')
    .option('--http-port <port>', 'health/metrics/admin HTTP port (default any free port)')
    .option('--workers <n>', 'processes sharing the port (default [reactor] threadNum = 1)')
    .action(async (o: DnsFlags) => {
      const loaded = loadServiceConfig(o.config, dnsFlags(o));
      const workers = loaded.config.reactor.threadNum;
      if (workers <= 1 || !cluster.isPrimary) return runDns(o);
      // Several processes share the listening socket so both cores answer agents; each keeps
      // its own snapshot and subscriptions and registers itself for immediate polls.
      // A taken port fails here, once, instead of in every worker in turn.
      await probeListen({ what: 'dns', proto: 'tcp', ...dnsListen(loaded, o), setting: DNS_PORT_SETTING });
      let shuttingDown = false;
      const log = (await import('../../log/logger.js')).createServiceLogger('dns');
      const started = new Map<number, number>();
      const fork = () => started.set(cluster.fork().id, Date.now());
      let quickDeaths = 0;
      for (let i = 0; i < workers; i++) fork();
      cluster.on('exit', (w, code, signal) => {
        if (shuttingDown) return;
        // A worker that dies young (database missing, port taken) is restarted with a growing delay;
        // after 5 such deaths in a row the service gives up instead of spinning both cores.
        const lived = Date.now() - (started.get(w.id) ?? 0);
        quickDeaths = lived < 10_000 ? quickDeaths + 1 : 0;
        if (quickDeaths >= 5) {
          log.error({ code, signal }, 'dns workers keep failing at start; giving up');
          shuttingDown = true;
          for (const other of Object.values(cluster.workers ?? {})) other?.process.kill('SIGTERM');
          process.exitCode = 1;
          return;
        }
        const delay = Math.min(30_000, 500 * 2 ** quickDeaths);
        log.error(
          { worker: w.process.pid, code, signal, restartInMs: delay },
          'dns worker exited; restarting',
        );
        setTimeout(() => !shuttingDown && fork(), delay).unref();
      });
      await untilSignal();
      shuttingDown = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    });
}
