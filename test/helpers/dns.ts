import { onTestFinished } from 'vitest';
import { DnsService, type DnsServiceOptions } from '../../src/dns/dns-service.js';
import type { Store } from '../../src/store/index.js';

/**
 * A route service for a test, on a free port, destroyed when the test finishes. Long poll and
 * reload intervals: tests drive syncs with pollNow(), so nothing depends on timing.
 */
export async function startTestDns(
  store: Store,
  overrides: Partial<DnsServiceOptions> = {},
): Promise<{ dns: DnsService; port: number; httpPort: number }> {
  const dns = new DnsService({
    store,
    host: '127.0.0.1',
    port: 0,
    maxConnections: 100,
    maxOutboundBytes: 1 << 20,
    pollIntervalMs: 60_000,
    reloadIntervalMs: 600_000,
    changeRetentionS: 3600,
    ...overrides,
  });
  const addr = await dns.start();
  onTestFinished(() => dns.destroy());
  return { dns, port: addr.port, httpPort: addr.httpPort };
}
