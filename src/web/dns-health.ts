import { adminPollUrl, type Store } from '../store/index.js';

/**
 * "Agents connected to dns" for the dashboard: each live dns instance (lars_dns_instance) is asked for
 * its `GET /healthz` on the admin port, with a short timeout. An instance that does not answer (or has
 * no admin port) is shown as unknown rather than as zero connections.
 */

export const DEFAULT_DNS_HEALTH_TIMEOUT_MS = 500;

export interface DnsInstanceHealth {
  id: string;
  host: string;
  port: number;
  reachable: boolean;
  /** null = unknown. */
  connections: number | null;
  subscriptions: number | null;
  version: number | null;
  status: string | null;
  /** Why the figures are unknown. */
  reason?: string;
}

export interface DnsSummary {
  instances: DnsInstanceHealth[];
  /** Sum over reachable instances; 0 when no dns runs; null when none of the running ones answered. */
  agentsConnected: number | null;
  /** True when some instance did not answer: agentsConnected is then a lower bound. */
  partial: boolean;
}

function numOrNull(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export async function dnsSummary(
  store: Store,
  timeoutMs: number,
  doFetch: typeof globalThis.fetch = globalThis.fetch,
): Promise<DnsSummary> {
  const live = await store.listDnsInstances();
  const instances = await Promise.all(
    live.map(async (i): Promise<DnsInstanceHealth> => {
      const base = { id: i.id, host: i.host, port: i.port };
      const unknown = (reason: string): DnsInstanceHealth => ({
        ...base,
        reachable: false,
        connections: null,
        subscriptions: null,
        version: null,
        status: null,
        reason,
      });
      if (i.adminPort === null) return unknown('no admin port');
      const url = new URL('/healthz', adminPollUrl(i)).toString();
      try {
        const res = await doFetch(url, { signal: AbortSignal.timeout(timeoutMs) });
        // dns answers 503 with the same JSON when it is failing: still worth showing.
        const body = (await res.json()) as Record<string, unknown>;
        return {
          ...base,
          reachable: true,
          connections: numOrNull(body.connections),
          subscriptions: numOrNull(body.subscriptions),
          version: numOrNull(body.version),
          status: typeof body.status === 'string' ? body.status : null,
        };
      } catch (err) {
        const name = err instanceof Error ? err.name : '';
        return unknown(
          name === 'TimeoutError' || name === 'AbortError'
            ? `no answer within ${timeoutMs} ms`
            : 'unreachable',
        );
      }
    }),
  );
  const known = instances.filter((i) => i.connections !== null);
  return {
    instances,
    agentsConnected:
      instances.length > 0 && known.length === 0 ? null : known.reduce((n, i) => n + (i.connections ?? 0), 0),
    partial: known.length < instances.length,
  };
}
