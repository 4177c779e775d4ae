import type { Logger } from '../log/logger.js';
import type { DnsNotifier, Store } from '../store/index.js';
import type { LoginRateLimiter } from './login-rate-limit.js';
import type { ScryptParams } from './passwords.js';

/** What every part of the console shares; built once by the WebService. */
export interface WebContext {
  readonly store: Store;
  readonly logger: Logger;
  /** Asks dns for an immediate poll after every route write. */
  readonly notifier: DnsNotifier;
  /** Wall clock in ms (injected by tests). */
  readonly nowMs: () => number;
  readonly sessionTtlS: number;
  /** Adds `Secure` to the cookies: set it when the console is served over HTTPS (e.g. behind a proxy). */
  readonly secureCookies: boolean;
  readonly limiter: LoginRateLimiter;
  /** scrypt cost of today's hashes: weaker stored hashes are replaced at login. */
  readonly passwordHashing: Readonly<ScryptParams>;
  /** Per-request timeout when reading dns instances' /healthz for the dashboard. */
  readonly dnsHealthTimeoutMs: number;
  /** ServerCallStatus rows older than this do not count as "overloaded now". */
  readonly overloadFreshnessS: number;
  readonly fetch: typeof globalThis.fetch;
}

export function nowSeconds(ctx: WebContext): number {
  return Math.floor(ctx.nowMs() / 1000);
}
