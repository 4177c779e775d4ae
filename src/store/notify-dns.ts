import { DEFAULT_DNS_MAX_AGE_S, type DnsInstance, type Store } from './store.js';

/**
 * Asks every live dns instance for an immediate poll after an edit (DESIGN §4), so the change reaches
 * agents in well under a second instead of at the next poll_interval. Best effort by contract: a
 * dns that does not answer still sees the change at its next poll, so failures are returned, never
 * thrown, and nothing is logged here (the caller decides what to print).
 */

/** Path the dns admin HTTP server serves; POST with an empty body. */
export const DNS_ADMIN_POLL_PATH = '/admin/poll';
export const DEFAULT_NOTIFY_TIMEOUT_MS = 1000;

export interface NotifyDnsOptions {
  /** Per-request timeout. */
  timeoutMs?: number;
  /** Instances whose last heartbeat is older than this are skipped. */
  maxAgeSeconds?: number;
  /** Injected for tests; defaults to the global fetch. */
  fetch?: typeof globalThis.fetch;
  /** An instance id not to ask (a dns asking its peers after its own lease write). */
  exclude?: string;
}

export interface NotifyFailure {
  id: string;
  url: string;
  reason: string;
}

export interface NotifyResult {
  /** Live instances with an admin port (the ones asked). */
  attempted: number;
  /** Instances that answered 2xx. */
  acknowledged: number;
  failures: NotifyFailure[];
}

/** The signature the CLI and console depend on, so tests can inject a fake. */
export type DnsNotifier = (store: Store) => Promise<NotifyResult>;

/** URL of an instance's poll endpoint. A wildcard bind address is reached through loopback. */
export function adminPollUrl(instance: Pick<DnsInstance, 'host' | 'adminPort'>): string {
  let host = instance.host;
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  else if (host === '::' || host === '[::]') host = '::1';
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `http://${host}:${instance.adminPort}${DNS_ADMIN_POLL_PATH}`;
}

export async function notifyDnsInstances(
  store: Pick<Store, 'listDnsInstances'>,
  options: NotifyDnsOptions = {},
): Promise<NotifyResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_NOTIFY_TIMEOUT_MS;
  const doFetch = options.fetch ?? globalThis.fetch;
  const instances = (await store.listDnsInstances(options.maxAgeSeconds ?? DEFAULT_DNS_MAX_AGE_S)).filter(
    (i) => i.adminPort !== null && i.id !== options.exclude,
  );
  const failures: NotifyFailure[] = [];
  let acknowledged = 0;
  await Promise.all(
    instances.map(async (instance) => {
      const url = adminPollUrl(instance);
      try {
        // The instance's id is its credential for requests that do not come from loopback (issue 11).
        const res = await doFetch(url, {
          method: 'POST',
          headers: { authorization: `Bearer ${instance.id}` },
          signal: AbortSignal.timeout(timeoutMs),
        });
        // Drain/cancel the body so the connection is released promptly.
        await res.body?.cancel().catch(() => undefined);
        if (res.ok) acknowledged++;
        else failures.push({ id: instance.id, url, reason: `HTTP ${res.status}` });
      } catch (err) {
        failures.push({ id: instance.id, url, reason: describeFetchError(err, timeoutMs) });
      }
    }),
  );
  return { attempted: instances.length, acknowledged, failures };
}

function describeFetchError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
    // undici wraps the socket error ("fetch failed") and keeps the useful part in `cause`.
    const cause = (err as Error & { cause?: unknown }).cause;
    if (cause instanceof Error && cause.message) return cause.message;
    return err.message;
  }
  return String(err);
}
