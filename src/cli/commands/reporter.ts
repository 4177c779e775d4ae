import type { Command } from 'commander';
import type { FlagOverride, LoadedConfig } from '../../config/index.js';
import type { Logger } from '../../log/logger.js';
import { parsePort } from '../../protocol/ip.js';
import type { ReporterServiceOptions } from '../../reporter/index.js';
import { withListenErrors } from '../../service/listen-error.js';
import { redact } from '../../store/url.js';
import { notifyReady } from '../../supervisor/child-ipc.js';
import {
  connectionLimits,
  loadServiceConfig,
  resolveDbUrl,
  untilSignal,
  withConfigOption,
  withDbOption,
} from '../options.js';

export interface ReporterFlags {
  db?: string;
  config?: string;
  host?: string;
  port?: string;
  httpPort?: string;
}

/**
 * Where the reporter listens: flags (`--host`, `--port`; `--port 0` = any free port) > [reactor]
 * (when the file has it, as the original lars_reporter.conf) > [reporter] ip/port (the address
 * agents are configured with). Flags land in [reactor] (validated there); `given` says which were.
 */
export function reporterListen(
  loaded: LoadedConfig,
  given: { host?: boolean; port?: boolean } = {},
): { host: string; port: number } {
  const { config, fileSections } = loaded;
  const useReactor = fileSections.has('reactor') || config.reactor.port !== 0;
  return {
    host: given.host || useReactor ? config.reactor.ip : config.reporter.ip,
    port:
      given.port || (useReactor && config.reactor.port !== 0) ? config.reactor.port : config.reporter.port,
  };
}

export function reporterFlags(o: ReporterFlags): FlagOverride[] {
  const flags: FlagOverride[] = [];
  if (o.host) flags.push({ section: 'reactor', key: 'ip', value: o.host, flag: '--host' });
  if (o.port)
    flags.push({ section: 'reactor', key: 'port', value: parsePort(o.port, '--port', true), flag: '--port' });
  return flags;
}

/**
 * ReporterService options from the validated config: the listen address, `[reactor] maxConn
 * maxOutboundKb` and `[reporter] db_thread_cnt queue_max_rows history_retention_days`.
 */
export function reporterOptions(
  loaded: LoadedConfig,
  dbUrl: string,
  logger: Logger,
  flags: Pick<ReporterFlags, 'host' | 'port' | 'httpPort'> = {},
): ReporterServiceOptions {
  const { config } = loaded;
  const listen = reporterListen(loaded, { host: flags.host !== undefined, port: flags.port !== undefined });
  const httpPort = flags.httpPort === undefined ? 0 : parsePort(flags.httpPort, '--http-port', true);
  return {
    dbUrl,
    host: listen.host,
    port: listen.port,
    httpPort,
    maxConnections: config.reactor.maxConn,
    maxOutboundBytes: config.reactor.maxOutboundKb * 1024,
    ...connectionLimits(config),
    writers: config.reporter.db_thread_cnt,
    queueMaxRows: config.reporter.queue_max_rows,
    historyRetentionDays: config.reporter.history_retention_days,
    logger,
  };
}

/** Runs the reporter in this process until SIGINT/SIGTERM. */
export async function runReporter(o: ReporterFlags): Promise<void> {
  // Loaded here, not at start-up: every other command starts faster without them.
  const [{ createServiceLogger }, { drainBudgetMs, ReporterService }, { openStore }] = await Promise.all([
    import('../../log/logger.js'),
    import('../../reporter/index.js'),
    import('../../store/index.js'),
  ]);
  const loaded = loadServiceConfig(o.config, reporterFlags(o));
  const log = createServiceLogger('reporter');
  const url = resolveDbUrl(o.db, process.env, loaded.config);
  // Creates or upgrades the schema (lars_call_history is ours), then hands the URL to the service,
  // which opens connections of its own: one per writer.
  const store = await openStore(url, { logger: log });
  try {
    await store.migrate();
  } finally {
    await store.close();
  }
  const options = reporterOptions(loaded, url, log.child({ db: redact(url) }), o);
  const reporter = new ReporterService(options);
  const addr = await withListenErrors(
    [
      {
        what: 'the reporter',
        proto: 'tcp',
        host: options.host,
        port: options.port,
        setting: '--port or [reactor]/[reporter] port',
        hostSetting: '--host or [reactor]/[reporter] ip',
      },
      {
        what: 'the reporter admin HTTP',
        proto: 'tcp',
        host: options.host,
        port: options.httpPort ?? 0,
        setting: '--http-port',
        hostSetting: '--host or [reactor]/[reporter] ip',
      },
    ],
    () => reporter.start(),
  );
  notifyReady({ tcp: addr.port, http: addr.httpPort });
  const sig = await untilSignal();
  // Drain without loss within the time `lars up` gives a stopping worker (issue 11).
  const budgetMs = drainBudgetMs(loaded.config.supervisor.drain_timeout);
  log.info({ signal: sig, budgetMs }, 'reporter shutting down: draining connections and queues');
  await reporter.close(budgetMs);
}

export function register(program: Command): void {
  withDbOption(
    withConfigOption(
      program
        .command('reporter')
        .description(
          'run the reporter: stores the call statistics agents send in ServerCallStatus and a per-minute history',
        ),
    ),
  )
    .option('--host <ip>', 'listen address (default [reactor]/[reporter] ip, 127.0.0.1)')
    .option('--port <port>', 'listen port (default [reactor]/[reporter] port, 7779)')
    .option('--http-port <port>', 'health/metrics HTTP port (default any free port)')
    .action((o: ReporterFlags) => runReporter(o));
}
