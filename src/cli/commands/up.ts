import { Command } from 'commander';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AgentService } from '../../agent/agent-service.js';
import { toLoadBalanceConfig } from '../../agent/lb-config-from-ini.js';
import { DnsService } from '../../dns/dns-service.js';
import { createServiceLogger } from '../../log/logger.js';
import { openStore } from '../../store/index.js';
import { addDemoRoutes } from '../../up/demo-routes.js';
import { loadServiceConfig, localIpv4Wire, untilSignal, withConfigOption } from '../options.js';

interface UpFlags {
  dataDir: string;
  config?: string;
  demo?: boolean;
}

/**
 * `lars up`: the whole stack on embedded SQLite at DIR/lars.db: route service, agent (and the
 * reporter and console once they exist), schema created on first start.
 */
export function register(program: Command): void {
  withConfigOption(
    program
      .command('up')
      .description('run the whole stack on embedded SQLite (DIR/lars.db): dns, agent, reporter, console'),
  )
    .option('--data-dir <dir>', 'data directory (database, agent cache); env LARS_DATA_DIR', process.env.LARS_DATA_DIR ?? './lars-data')
    .option('--demo', 'add a few demo routes on first start')
    .action(async (o: UpFlags) => {
      const dataDir = resolve(o.dataDir);
      mkdirSync(dataDir, { recursive: true });
      const { config } = loadServiceConfig(o.config, []);
      const log = createServiceLogger('up');
      const url = `sqlite:${join(dataDir, 'lars.db')}`;
      const store = await openStore(url, { logger: log });
      const migrated = await store.migrate();
      if (migrated.applied.length) log.info({ applied: migrated.applied }, 'database schema created');
      if (o.demo) {
        const n = await addDemoRoutes(store);
        if (n) log.info({ hosts: n }, 'demo routes added');
      }
      const dns = new DnsService({
        store,
        host: config.dnsserver.ip,
        port: config.dnsserver.port,
        httpPort: config.dns.http_port,
        maxConnections: config.reactor.maxConn,
        maxOutboundBytes: config.reactor.maxOutboundKb * 1024,
        pollIntervalMs: config.dns.poll_interval * 1000,
        reloadIntervalMs: config.dns.reload_interval * 1000,
        changeRetentionS: config.dns.change_retention,
        logger: createServiceLogger('dns'),
      });
      const dnsAddr = await dns.start();
      const agent = new AgentService({
        host: config.agent.ip,
        ports: config.agent.ports,
        dns: { host: config.dnsserver.ip, port: dnsAddr.port },
        reporter: undefined,
        lb: toLoadBalanceConfig(config.loadbalance),
        reportIntervalS: config.agent.report_interval,
        cacheDir: config.agent.cache_dir || join(dataDir, 'agent-cache'),
        callerIp: localIpv4Wire(),
        httpPort: config.agent.http_port,
        logger: createServiceLogger('agent'),
      });
      const agentAddr = await agent.start();
      const lines = [
        `Lars is up (data: ${dataDir}, database: ${url})`,
        `  dns       tcp ${dnsAddr.host}:${dnsAddr.port}   health http://${dnsAddr.host}:${dnsAddr.httpPort}/healthz`,
        `  agent     udp ${config.agent.ip}:${agentAddr.ports.join(',')}   health http://${config.agent.ip}:${agentAddr.httpPort}/healthz`,
        `Try: lars test gethost 1 1     (Ctrl-C stops everything)`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
      const sig = await untilSignal();
      log.info({ signal: sig }, 'shutting down');
      await agent.close();
      await dns.close();
      await store.close();
    });
}
