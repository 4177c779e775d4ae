import { favourSmallHeap } from '../lean-heap.js';
import { Command } from 'commander';
import { join } from 'node:path';
import { ipToWire } from '../../protocol/ip.js';
import type { FlagOverride } from '../../config/index.js';
import { withListenErrors, type ListenSetting } from '../../service/listen-error.js';
import {
  notifyReady,
  onSupervisorMessage,
  SupervisorMsg,
  tellSupervisor,
} from '../../supervisor/child-ipc.js';
import {
  loadServiceConfig,
  resolveCallerIp,
  parseHostPort,
  parsePorts,
  untilSignal,
  withConfigOption,
} from '../options.js';

interface AgentFlags {
  config?: string;
  dns?: string;
  reporter?: string | false;
  host?: string;
  ports?: string;
  cacheDir?: string;
  dataDir?: string;
  httpPort?: string;
  threads?: string;
  fastPath?: boolean;
}

export function agentFlags(o: AgentFlags): FlagOverride[] {
  const flags: FlagOverride[] = [];
  if (o.dns) {
    const d = parseHostPort(o.dns, '--dns');
    flags.push(
      { section: 'dnsserver', key: 'ip', value: d.host, flag: '--dns' },
      { section: 'dnsserver', key: 'port', value: d.port, flag: '--dns' },
    );
  }
  if (typeof o.reporter === 'string') {
    const r = parseHostPort(o.reporter, '--reporter');
    flags.push(
      { section: 'reporter', key: 'ip', value: r.host, flag: '--reporter' },
      { section: 'reporter', key: 'port', value: r.port, flag: '--reporter' },
    );
  } else if (o.reporter === false) {
    flags.push({ section: 'reporter', key: 'enabled', value: false, flag: '--no-reporter' });
  }
  if (o.host) flags.push({ section: 'agent', key: 'ip', value: o.host, flag: '--host' });
  if (o.ports)
    flags.push({ section: 'agent', key: 'ports', value: parsePorts(o.ports, '--ports'), flag: '--ports' });
  if (o.cacheDir) flags.push({ section: 'agent', key: 'cache_dir', value: o.cacheDir, flag: '--cache-dir' });
  if (o.httpPort) flags.push({ section: 'agent', key: 'http_port', value: o.httpPort, flag: '--http-port' });
  if (o.threads) flags.push({ section: 'agent', key: 'threads', value: o.threads, flag: '--threads' });
  if (o.fastPath === false)
    flags.push({ section: 'agent', key: 'fast_path', value: false, flag: '--no-fast-path' });
  return flags;
}

export function register(program: Command): void {
  withConfigOption(
    program
      .command('agent')
      .description(
        'run the load-balancing agent of this host: UDP API for local clients, routes from dns, statistics to the reporter',
      ),
  )
    .option('--dns <host:port>', 'route service address (default [dnsserver] 127.0.0.1:7778)')
    .option('--reporter <host:port>', 'reporter address (default [reporter] 127.0.0.1:7779)')
    .option('--no-reporter', 'do not send statistics')
    .option('--host <ip>', 'address the UDP API binds (default 127.0.0.1; the original bound 0.0.0.0)')
    .option(
      '--ports <list>',
      'UDP API ports, comma-separated (default 8888,8889,8890); every port answers every route',
    )
    .option('--cache-dir <dir>', 'last-known-good route cache directory (default <data-dir>/agent-cache)')
    .option('--data-dir <dir>', 'data directory', process.env.LARS_DATA_DIR ?? './lars-data')
    .option('--http-port <port>', 'health/metrics HTTP port (default any free port)')
    .option(
      '--threads <n>',
      'threads serving the UDP API, at most one per port (default [agent] threads = 1)',
    )
    .option(
      '--no-fast-path',
      'do not publish routes in shared memory: local clients use UDP only (default [agent] fast_path = true)',
    )
    .action(async (o: AgentFlags) => {
      favourSmallHeap();
      // Loaded here, not at start-up: every other command starts faster without them.
      const [{ AgentService }, { toLoadBalanceConfig }, { createServiceLogger }] = await Promise.all([
        import('../../agent/agent-service.js'),
        import('../../agent/lb-config-from-ini.js'),
        import('../../log/logger.js'),
      ]);
      const { config } = loadServiceConfig(o.config, agentFlags(o));
      const log = createServiceLogger('agent');
      const cacheDir = config.agent.cache_dir || join(o.dataDir ?? './lars-data', 'agent-cache');
      const options = {
        host: config.agent.ip,
        ports: config.agent.ports,
        recvBufferBytes: config.agent.recv_buffer_kb * 1024,
        dns: { host: config.dnsserver.ip, port: config.dnsserver.port },
        reporter: config.reporter.enabled
          ? { host: config.reporter.ip, port: config.reporter.port }
          : undefined,
        lb: toLoadBalanceConfig(config.loadbalance),
        reportIntervalS: config.agent.report_interval,
        cacheDir,
        callerIp: ipToWire(await resolveCallerIp(config.agent.caller_ip)),
        httpPort: config.agent.http_port,
        maxRegistrations: config.agent.max_registrations,
        fastPath: config.agent.fast_path
          ? {
              routes: config.agent.fast_path_routes,
              hostsPerRoute: config.agent.fast_path_hosts,
              ringEntries: config.agent.fast_path_ring,
            }
          : (false as const),
        hotPath: config.agent.hot_path,
        batchReceive: config.agent.batch_receive,
        ...(config.agent.name ? { name: config.agent.name } : {}),
        logger: log,
      };
      // The threaded agent (and the metrics aggregation it loads) only when asked for: issue 17.
      const agent =
        config.agent.threads > 1
          ? new (await import('../../agent/agent-threads.js')).ThreadedAgent({
              ...options,
              threads: config.agent.threads,
            })
          : new AgentService(options);
      const listens: ListenSetting[] = config.agent.ports.map((port) => ({
        what: 'the agent UDP API',
        proto: 'udp',
        host: config.agent.ip,
        port,
        setting: '--ports or [agent] ports',
        hostSetting: '--host or [agent] ip',
      }));
      listens.push({
        what: 'the agent admin HTTP',
        proto: 'tcp',
        host: config.agent.ip,
        port: config.agent.http_port,
        setting: '--http-port or [agent] http_port',
        hostSetting: '--host or [agent] ip',
      });
      const addr = await withListenErrors(listens, () => agent.start());
      // Under `lars up`: before a SIGHUP replacement starts, write every known route to the cache the
      // new agent loads, so it answers at once (docs/operations.md).
      const stopFlushing = onSupervisorMessage(SupervisorMsg.FLUSH_CACHE, () => {
        tellSupervisor({ type: SupervisorMsg.CACHE_FLUSHED, ok: agent.flushCache() });
      });
      notifyReady({ udp: addr.ports, http: addr.httpPort });
      const sig = await untilSignal();
      log.info({ signal: sig }, 'agent shutting down');
      stopFlushing();
      await agent.close();
    });
}
