import type { FastifyInstance } from 'fastify';
import { DEFAULT_HOST, DEFAULT_WEB_PORT } from '../config/schema.js';
import { ClosedError } from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { takeInheritedTcpHandle } from '../net/inherited-sockets.js';
import {
  DEFAULT_NOTIFY_TIMEOUT_MS,
  notifyDnsInstances,
  type DnsNotifier,
  type Store,
} from '../store/index.js';
import { DEFAULT_DNS_HEALTH_TIMEOUT_MS } from './dns-health.js';
import { LoginRateLimiter, type LoginRateLimitOptions } from './login-rate-limit.js';
import { DEFAULT_PARAMS, type ScryptParams } from './passwords.js';
import { buildWebApp } from './server.js';
import { DEFAULT_SESSION_TTL_S } from './sessions.js';
import { loadAssets } from './static-assets.js';
import type { WebContext } from './web-context.js';

/** ServerCallStatus rows older than this are not "overloaded now" (the agent stopped reporting them). */
export const DEFAULT_OVERLOAD_FRESHNESS_S = 300;

export interface WebServiceOptions {
  /** Open and migrated store; the service does not close it. */
  store: Store;
  /** Listen address (default 127.0.0.1). */
  host?: string;
  /** Listen port (default 8080; 0 picks a free port, see address()). */
  port?: number;
  logger?: Logger;
  /** Immediate-poll request after every route write (default: notifyDnsInstances, 1 s timeout). */
  notifier?: DnsNotifier;
  /** Session (cookie and bearer token) lifetime in seconds (default 12 h). */
  sessionTtlS?: number;
  /** Failed-login limits (default 20 per IP and 5 per user name per 15 min). */
  loginRateLimit?: LoginRateLimitOptions;
  /**
   * scrypt cost of new password hashes; a stored hash with a lower cost is replaced at its user's
   * next login. Default N = 2^17, r = 8, p = 1. Tests lower it to stay fast.
   */
  passwordHashing?: ScryptParams;
  /** Mark cookies `Secure` (when served over HTTPS, e.g. behind a TLS proxy). Default false. */
  secureCookies?: boolean;
  /** Trust X-Forwarded-For for the client IP. Default false. */
  trustProxy?: boolean;
  /** Timeout of each dns /healthz request made for the dashboard (default 500 ms). */
  dnsHealthTimeoutMs?: number;
  /** Default 300 s. */
  overloadFreshnessS?: number;
  /** Directory of the UI files (default: found next to this module). */
  publicDir?: string;
  /** Wall clock in ms; injected by tests. */
  now?: () => number;
  /** fetch used to read dns health; injected by tests. */
  fetch?: typeof globalThis.fetch;
}

type State = 'new' | 'starting' | 'running' | 'closing' | 'closed';

/**
 * The operators' console (issue 6): a fastify server with the browser UI and the JSON API over one
 * store. start() listens and resolves with the address; close() stops accepting, lets in-flight
 * requests finish, and closes idle keep-alive connections. Both are idempotent; start() after
 * close() is a ClosedError.
 */
export class WebService {
  private readonly options: WebServiceOptions;
  private readonly logger: Logger;
  private app: FastifyInstance | undefined;
  private state: State = 'new';
  private starting: Promise<{ host: string; port: number; url: string }> | undefined;
  private closing: Promise<void> | undefined;
  private bound: { host: string; port: number } | undefined;

  constructor(options: WebServiceOptions) {
    this.options = options;
    this.logger = (options.logger ?? silentLogger).child({ component: 'web' });
  }

  start(): Promise<{ host: string; port: number; url: string }> {
    if (this.state === 'closing' || this.state === 'closed')
      return Promise.reject(new ClosedError('web console is closed'));
    this.starting ??= this.doStart();
    return this.starting;
  }

  /** The address it listens on; ClosedError before start() resolved. */
  address(): { host: string; port: number } {
    if (!this.bound) throw new ClosedError('web console is not listening');
    return this.bound;
  }

  /** Base URL for people and scripts (a wildcard bind is shown as 127.0.0.1). */
  get url(): string {
    const { host, port } = this.address();
    const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    return `http://${shown.includes(':') ? `[${shown}]` : shown}:${port}`;
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doStart(): Promise<{ host: string; port: number; url: string }> {
    this.state = 'starting';
    const o = this.options;
    const now = o.now ?? Date.now;
    const ctx: WebContext = {
      store: o.store,
      logger: this.logger,
      notifier:
        o.notifier ?? ((store) => notifyDnsInstances(store, { timeoutMs: DEFAULT_NOTIFY_TIMEOUT_MS })),
      nowMs: now,
      sessionTtlS: o.sessionTtlS ?? DEFAULT_SESSION_TTL_S,
      secureCookies: o.secureCookies ?? false,
      limiter: new LoginRateLimiter(o.loginRateLimit, now),
      passwordHashing: o.passwordHashing ?? DEFAULT_PARAMS,
      dnsHealthTimeoutMs: o.dnsHealthTimeoutMs ?? DEFAULT_DNS_HEALTH_TIMEOUT_MS,
      overloadFreshnessS: o.overloadFreshnessS ?? DEFAULT_OVERLOAD_FRESHNESS_S,
      fetch: o.fetch ?? globalThis.fetch,
    };
    const app = await buildWebApp(ctx, loadAssets(o.publicDir), { trustProxy: o.trustProxy ?? false });
    this.app = app;
    const host = o.host ?? DEFAULT_HOST;
    const port = o.port ?? DEFAULT_WEB_PORT;
    // Under `lars up` the master holds the console's socket across restarts (issue 11); fastify hands
    // the options to net.Server.listen, which takes `handle`.
    const handle = takeInheritedTcpHandle(host, port);
    await app.listen({ host, port, ...(handle ? { handle } : {}) } as { host: string; port: number });
    if (this.state !== 'starting') {
      // close() was called while we were starting; it closes the app once we return.
      throw new ClosedError('web console was closed while starting');
    }
    const a = app.server.address();
    if (!a || typeof a !== 'object') throw new ClosedError('web console is not listening');
    this.bound = { host: a.address, port: a.port };
    this.state = 'running';
    this.logger.info({ url: this.url }, 'web console listening');
    return { ...this.bound, url: this.url };
  }

  private async doClose(): Promise<void> {
    const wasStarting = this.state === 'starting';
    this.state = 'closing';
    if (wasStarting) await this.starting?.catch(() => undefined);
    try {
      await this.app?.close();
    } finally {
      this.bound = undefined;
      this.state = 'closed';
      this.logger.info({}, 'web console closed');
    }
  }
}
