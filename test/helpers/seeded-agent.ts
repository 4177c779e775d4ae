import { onTestFinished } from 'vitest';
import { AgentService, type AgentServiceOptions } from '../../src/agent/agent-service.js';
import { DEFAULT_LOAD_BALANCE_CONFIG } from '../../src/agent/lb-config.js';
import type { HostInfo } from '../../src/protocol/index.js';
import { ipToWire } from '../../src/protocol/index.js';
import { unusedPort } from './ports.js';

/**
 * An agent serving routes seeded as if from its disk cache, with no dns (nothing listens on the dns
 * port: the routes stay stale and the link keeps redialling). For tests of the UDP API alone.
 */
export async function startSeededAgent(
  routes: ReadonlyArray<{ modid: number; cmdid: number; hosts: HostInfo[] }>,
  extra: Partial<AgentServiceOptions> = {},
): Promise<{ agent: AgentService; ports: number[] }> {
  const agent = new AgentService({
    host: '127.0.0.1',
    ports: [0],
    dns: { host: '127.0.0.1', port: await unusedPort() },
    reporter: undefined,
    lb: DEFAULT_LOAD_BALANCE_CONFIG,
    reportIntervalS: 1,
    cacheDir: undefined,
    callerIp: ipToWire('127.0.0.1'),
    http: false,
    ...extra,
  });
  const { ports } = await agent.start();
  onTestFinished(() => agent.destroy());
  agent.seed(routes);
  return { agent, ports };
}
