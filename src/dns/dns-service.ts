import { randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Histogram, Registry } from 'prom-client';
import { ClosedError } from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { tracer } from '../log/trace.js';
import { Dispatcher } from '../net/dispatcher.js';
import type { TcpConnection } from '../net/tcp-connection.js';
import { TcpServer, type TcpServerStats } from '../net/tcp-server.js';
import { MsgId } from '../protocol/index.js';
import { liveMetrics, tcpServerMetrics } from '../service/metrics.js';
import { AdminHttp, type Health } from '../service/admin-http.js';
import { notifyDnsInstances } from '../store/notify-dns.js';
import type { DnsInstance } from '../store/store.js';
import { LeaseKeeper, type LeaseStore } from './lease-keeper.js';
import { parseRouteKey, routeKey } from './route-key.js';
import { RouteSync, type RouteSource } from './route-sync.js';
import { Subscriptions } from './subscriptions.js';

/** The store operations the route service uses beyond reading routes. */
export interface DnsStore extends RouteSource, LeaseStore {
  listDnsInstances(maxAgeSeconds?: number): Promise<DnsInstance[]>;
  pruneChanges(olderThanSeconds: number): Promise<number>;
  registerDnsInstance(instance: {
    id: string;
    host: string;
    port: number;
    adminPort: number | null;
  }): Promise<void>;
  heartbeatDnsInstance(id: string): Promise<void>;
  removeDnsInstance(id: string): Promise<void>;
}

export interface DnsServiceOptions {
  store: DnsStore;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Health/metrics/admin HTTP; port 0 picks a free port. */
  httpHost?: string;
  httpPort?: number;
  maxConnections: number;
  maxOutboundBytes: number;
  /** Hostile connections (`[reactor]` header_timeout, handshake_timeout, max_conn_per_ip); see TcpServer. */
  headerTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  maxConnectionsPerIp?: number;
  pollIntervalMs: number;
  reloadIntervalMs: number;
  changeRetentionS: number;
  /** Backoff between failed database attempts (default 500 ms doubling to 10 s). */
  retry?: { initialMs: number; maxMs: number };
  /** Distinct routes one connection may subscribe to before it is cut. Default 1,000,000. */
  maxSubscriptionsPerConnection?: number;
  /**
   * A subscription to a route dns does not have expires this long after it was last asked for
   * (`[dns] unknown_route_ttl`). Default 60 s.
   */
  unknownRouteTtlMs?: number;
  /** Such subscriptions one connection holds; its oldest is dropped past it (`[dns] unknown_route_max`). Default 1000. */
  maxUnknownRoutesPerConnection?: number;
  /** Register in lars_dns_instance so the CLI and console can request immediate polls. Default true. */
  register?: boolean;
  /** Self-registration (issue 15): seconds of grace in the lease protection rules (lease-guard.ts). */
  leaseGraceMs?: number;
  /** Longest time the lease brake holds the leases of agents that went silent together. */
  leaseBrakeMaxMs?: number;
  /** Milliseconds between lease expiry sweeps. Default 250. */
  leaseSweepMs?: number;
  /**
   * Poll at once (here and in the other instances) after a lease write that changed routes.
   * Default true; false leaves registrations to the regular polls (benchmarks compare both).
   */
  leaseImmediatePoll?: boolean;
  logger?: Logger;
}

const HEARTBEAT_MS = 10_000;
export const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION = 1_000_000;
/** Issue 11: subscriptions to routes dns does not have expire, and are few per connection. */
export const DEFAULT_UNKNOWN_ROUTE_TTL_MS = 60_000;
export const DEFAULT_MAX_UNKNOWN_ROUTES_PER_CONNECTION = 1_000;
/**
 * SQLite busy timeout for the route service's store: better-sqlite3 waits synchronously, so a file
 * locked by another process would stall every query for the whole wait. A short one makes the read
 * fail fast instead; the service then serves the last snapshot and retries with backoff.
 */
export const DNS_SQLITE_BUSY_TIMEOUT_MS = 50;

type ConnState = Record<string, never>;

/**
 * The route service (DESIGN §4): answers GetRouteRequest from the current snapshot, subscribes the
 * asking connection to that route, and pushes every changed route to its subscribers after each
 * swap. Keeps serving the last snapshot while the database is away.
 */
export class DnsService {
  readonly id = randomUUID();
  readonly registry = new Registry();
  private readonly opts: DnsServiceOptions;
  private readonly log: Logger;
  private readonly trace = tracer('dns');
  private readonly sync: RouteSync;
  private readonly subs = new Subscriptions<TcpConnection<ConnState>>();
  private readonly leases: LeaseKeeper;
  private notifying = false;
  private notifyAgain = false;
  private readonly server: TcpServer<ConnState>;
  private readonly http: AdminHttp;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly unknownTtlMs: number;
  private readonly maxUnknown: number;
  private state: 'new' | 'running' | 'closing' | 'closed' = 'new';
  private address: { host: string; port: number } | undefined;
  private httpAddress: { host: string; port: number } | undefined;
  readonly stats = {
    queries: 0,
    pushes: 0,
    pushRoutes: 0,
    pollRequests: 0,
    pollRefused: 0,
    pushErrors: 0,
    subscriptionCuts: 0,
    peerNotifications: 0,
  };

  constructor(options: DnsServiceOptions) {
    this.opts = options;
    this.log = options.logger ?? silentLogger;
    this.sync = new RouteSync({
      source: options.store,
      pollIntervalMs: options.pollIntervalMs,
      reloadIntervalMs: options.reloadIntervalMs,
      logger: this.log,
      ...(options.retry ? { retry: options.retry } : {}),
    });
    this.sync.on('swapped', (snapshot, changed) => this.push(changed));
    this.leases = new LeaseKeeper({
      store: options.store,
      dnsId: this.id,
      logger: this.log,
      onChanged: () => this.leasesChanged(),
      ...(options.leaseGraceMs !== undefined ? { graceMs: options.leaseGraceMs } : {}),
      ...(options.leaseBrakeMaxMs !== undefined ? { brakeMaxMs: options.leaseBrakeMaxMs } : {}),
      ...(options.leaseSweepMs !== undefined ? { sweepMs: options.leaseSweepMs } : {}),
    });
    this.sync.on('state', (state) => this.leases.databaseState(state === 'ok'));

    const maxSubs = options.maxSubscriptionsPerConnection ?? DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION;
    this.unknownTtlMs = options.unknownRouteTtlMs ?? DEFAULT_UNKNOWN_ROUTE_TTL_MS;
    this.maxUnknown = options.maxUnknownRoutesPerConnection ?? DEFAULT_MAX_UNKNOWN_ROUTES_PER_CONNECTION;
    const dispatcher = new Dispatcher<TcpConnection<ConnState>>().on(MsgId.GetRouteRequest, (req, conn) => {
      this.stats.queries++;
      const key = routeKey(req.modid, req.cmdid);
      const subscribed = this.sync.snapshot.has(req.modid, req.cmdid)
        ? this.subs.subscribe(conn, key, maxSubs)
        : this.subs.subscribeAbsent(conn, key, Date.now() + this.unknownTtlMs, this.maxUnknown, maxSubs);
      if (!subscribed) {
        // A peer asking for more distinct routes than any agent has: cut it rather than let
        // subscriptions grow without bound (the port has no authentication).
        this.stats.subscriptionCuts++;
        this.log.warn(
          { conn: conn.id, remote: conn.remote, max: maxSubs },
          'too many subscriptions on one connection: closing it',
        );
        conn.close();
        return;
      }
      conn.sendRaw(MsgId.GetRouteResponse, this.sync.snapshot.responseBody(req.modid, req.cmdid));
    });
    dispatcher.on(MsgId.LeaseBatch, (batch) => this.leases.accept(batch));
    this.server = new TcpServer<ConnState>({
      host: options.host,
      port: options.port,
      maxConnections: options.maxConnections,
      maxOutboundBytes: options.maxOutboundBytes,
      headerTimeoutMs: options.headerTimeoutMs,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      maxConnectionsPerIp: options.maxConnectionsPerIp,
      logger: this.log,
      dispatcher,
      onConnectionClose: (conn) => this.subs.drop(conn),
    });
    this.createMetrics();
    this.http = new AdminHttp({
      host: options.httpHost ?? options.host,
      port: options.httpPort ?? 0,
      registry: this.registry,
      health: () => this.health(),
      routes: {
        'POST /admin/poll': async (req, res) => {
          if (!this.pollAllowed(req)) {
            this.stats.pollRefused++;
            res.writeHead(403, { 'content-type': 'application/json' });
            res.end(
              JSON.stringify({
                error:
                  'POST /admin/poll is accepted from loopback, or with "Authorization: Bearer <instance id>" (lars_dns_instance.id)',
              }),
            );
            return;
          }
          this.stats.pollRequests++;
          const started = performance.now();
          await this.sync.pollNow();
          const ok = this.sync.state === 'ok';
          const body = JSON.stringify({
            ok,
            version: this.sync.snapshot.version,
            ms: Math.round(performance.now() - started),
            ...(ok ? {} : { error: this.sync.lastError?.message ?? 'database unreachable' }),
          });
          // 503 when the poll could not read the database: callers must not report the edit as applied.
          res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
          res.end(body);
        },
      },
    });
  }

  /** Loads the routes (fails if the database cannot be read), then listens. */
  async start(): Promise<{ host: string; port: number; httpPort: number }> {
    if (this.state !== 'new') throw new ClosedError('dns service already started or closed');
    this.state = 'running';
    await this.sync.start();
    this.leases.start();
    this.address = await this.server.listen();
    this.httpAddress = await this.http.listen();
    if (this.opts.register !== false) {
      await this.registerInstance();
      this.every(HEARTBEAT_MS, () =>
        this.opts.store.heartbeatDnsInstance(this.id).catch(() => this.registerInstance()),
      );
    }
    const pruneEvery = Math.min(3600, Math.max(60, this.opts.changeRetentionS / 10)) * 1000;
    this.every(pruneEvery, () => this.prune());
    // Expired subscriptions to unknown routes go at most a quarter of their lifetime late.
    this.every(Math.max(10, Math.min(10_000, this.unknownTtlMs / 4)), async () => {
      const snap = this.sync.snapshot;
      const n = this.subs.expire(Date.now(), (key) => {
        const { modid, cmdid } = parseRouteKey(key);
        return snap.has(modid, cmdid);
      });
      if (n > 0) this.trace?.(`${n} subscriptions to unknown routes expired`);
    });
    this.log.info(
      {
        ...this.address,
        httpPort: this.httpAddress.port,
        routes: this.sync.snapshot.routeCount,
        version: this.sync.snapshot.version,
      },
      'dns listening',
    );
    return { ...this.address, httpPort: this.httpAddress.port };
  }

  get snapshot() {
    return this.sync.snapshot;
  }

  /** The TCP server's counters (connections, cuts by reason, frames). */
  get tcpStats(): Readonly<TcpServerStats> {
    return this.server.stats;
  }

  /** Asks for an immediate poll, as `POST /admin/poll` does. */
  pollNow(options: { full?: boolean } = {}): Promise<void> {
    return this.sync.pollNow(options);
  }

  health(): Health {
    const snap = this.sync.snapshot;
    return {
      status: this.sync.state === 'ok' ? 'ok' : 'degraded',
      database: this.sync.state,
      lastError: this.sync.lastError?.message,
      version: snap.version,
      routes: snap.routeCount,
      hosts: snap.hostCount,
      connections: this.server.connectionCount,
      subscriptions: this.subs.size,
      leaseBacklog: this.leases.backlog,
      leaseBrake: this.leases.braking,
      unknownRouteSubscriptions: this.subs.absentSize,
      port: this.address?.port,
    };
  }

  /** Lease counters (issue 15). */
  get leaseStats(): LeaseKeeper['stats'] {
    return this.leases.stats;
  }

  /** Resolves once every lease batch received so far is written (tests). */
  leasesFlushed(): Promise<void> {
    return this.leases.flushed();
  }

  /** Runs one lease expiry sweep now (tests; sweeps also run on their own every 250 ms). */
  sweepLeases(): Promise<void> {
    return this.leases.sweep();
  }

  /** Graceful: stop polling, finish and close connections, unregister. Idempotent. */
  async close(graceMs = 5_000): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'closing';
    this.stopTimers();
    this.sync.close();
    await this.server.close(graceMs);
    // Batches already received (a deregistration among them) are written before leaving.
    await this.leases.flushed();
    this.leases.close();
    await this.unregister();
    await this.http.close();
    this.state = 'closed';
  }

  /** Abrupt: drop every connection now. Idempotent. */
  async destroy(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closing';
    this.stopTimers();
    this.sync.close();
    this.leases.close();
    await this.server.destroy();
    await this.unregister();
    await this.http.close();
    this.state = 'closed';
  }

  private push(changed: string[]): void {
    const snap = this.sync.snapshot;
    for (const key of changed) {
      const count = this.subs.subscriberCount(key);
      if (count === 0) continue;
      const { modid, cmdid } = parseRouteKey(key);
      const body = snap.responseBody(modid, cmdid);
      this.stats.pushRoutes++;
      for (const conn of this.subs.subscribers(key)) {
        if (conn.closed) continue;
        try {
          conn.sendRaw(MsgId.GetRouteResponse, body);
          this.stats.pushes++;
        } catch (err) {
          // One connection's failure must not stop the pushes to the others.
          this.stats.pushErrors++;
          this.log.warn({ err, conn: conn.id }, 'push failed');
        }
      }
      this.trace?.(`pushed ${key} (${count} subscribers)`);
      // A removed route is pushed (empty) once; then its subscriptions expire like unknown ones.
      if (!snap.has(modid, cmdid))
        this.subs.routeRemoved(key, Date.now() + this.unknownTtlMs, this.maxUnknown);
    }
  }

  /**
   * A lease write changed routes: poll now (this instance pushes to its agents at once) and ask
   * the other instances to poll too. At most one notification is in flight; changes meanwhile
   * trigger one more after it.
   */
  private leasesChanged(): void {
    if (this.state !== 'running' || this.opts.leaseImmediatePoll === false) return;
    void this.sync.pollNow();
    if (this.notifying) {
      this.notifyAgain = true;
      return;
    }
    this.notifying = true;
    this.stats.peerNotifications++;
    void notifyDnsInstances(this.opts.store, { exclude: this.id })
      .catch(() => undefined)
      .finally(() => {
        this.notifying = false;
        if (this.notifyAgain) {
          this.notifyAgain = false;
          this.leasesChanged();
        }
      });
  }

  /**
   * Issue 11: an immediate poll costs a database read, so it is not open to anyone who can reach
   * the admin port: a request must come from loopback, or carry this instance's id as a bearer
   * token. The id is random and written only to lars_dns_instance, where the CLI and the console
   * (which edit routes, and so may ask for polls anyway) read it; notify-dns.ts sends it.
   */
  private pollAllowed(req: IncomingMessage): boolean {
    if (isLoopback(req.socket.remoteAddress ?? '')) return true;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const given = Buffer.from(m[1] as string);
    const expected = Buffer.from(this.id);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private async prune(): Promise<void> {
    try {
      const n = await this.opts.store.pruneChanges(this.opts.changeRetentionS);
      if (n > 0) this.log.debug({ pruned: n }, 'pruned old RouteChange rows');
    } catch (err) {
      this.log.warn({ err }, 'pruning RouteChange failed');
    }
  }

  private async registerInstance(): Promise<void> {
    try {
      await this.opts.store.registerDnsInstance({
        id: this.id,
        host: this.address!.host,
        port: this.address!.port,
        adminPort: this.httpAddress!.port,
      });
    } catch (err) {
      this.log.warn({ err }, 'could not register this dns instance (immediate polls will not reach it)');
    }
  }

  private async unregister(): Promise<void> {
    if (this.opts.register === false || !this.address) return;
    await this.opts.store.removeDnsInstance(this.id).catch(() => undefined);
  }

  private every(ms: number, fn: () => Promise<unknown>): void {
    const t = setInterval(() => void fn(), ms);
    t.unref();
    this.timers.add(t);
  }

  private stopTimers(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers.clear();
  }

  private createMetrics(): void {
    const r = this.registry;
    const snap = () => this.sync.snapshot;
    const s = this.server.stats;
    const { gauge, counter } = liveMetrics(r);
    gauge('lars_dns_routes', 'routes in the current snapshot', () => snap().routeCount);
    gauge('lars_dns_hosts', 'hosts in the current snapshot', () => snap().hostCount);
    gauge('lars_dns_version', 'RouteVersion of the current snapshot', () => snap().version);
    gauge('lars_dns_connections', 'open agent connections', () => this.server.connectionCount);
    gauge('lars_dns_subscriptions', '(connection, route) subscriptions', () => this.subs.size);
    gauge(
      'lars_dns_unknown_route_subscriptions',
      'subscriptions to routes dns does not have (they expire after unknown_route_ttl)',
      () => this.subs.absentSize,
    );
    counter(
      'lars_dns_unknown_route_subscriptions_dropped_total',
      'subscriptions to unknown routes dropped: expired, or evicted past unknown_route_max per connection',
      () => this.subs.stats.absentExpired + this.subs.stats.absentEvicted,
    );
    gauge('lars_dns_database_up', '1 when the last database access succeeded', () =>
      this.sync.state === 'ok' ? 1 : 0,
    );
    counter('lars_dns_queries_total', 'GetRouteRequest frames answered', () => this.stats.queries);
    counter(
      'lars_dns_pushes_total',
      'GetRouteResponse frames pushed to subscribers',
      () => this.stats.pushes,
    );
    counter(
      'lars_dns_poll_requests_total',
      'immediate-poll requests received',
      () => this.stats.pollRequests,
    );
    counter(
      'lars_dns_poll_requests_refused_total',
      'immediate-poll requests refused: not from loopback and without the instance credential',
      () => this.stats.pollRefused,
    );
    counter('lars_dns_reloads_full_total', 'full reloads', () => this.sync.stats.fullReloads);
    counter(
      'lars_dns_reloads_incremental_total',
      'incremental reloads',
      () => this.sync.stats.incrementalReloads,
    );
    counter('lars_dns_database_failures_total', 'failed database accesses', () => this.sync.stats.failures);
    tcpServerMetrics(r, 'lars_dns', s);
    counter('lars_dns_push_errors_total', 'pushes that could not be queued', () => this.stats.pushErrors);
    const ls = this.leases.stats;
    counter('lars_dns_lease_batches_total', 'LeaseBatch frames received from agents', () => ls.batches);
    counter('lars_dns_leases_renewed_total', 'lease renewals written', () => ls.renewed);
    counter('lars_dns_leases_added_total', 'leases created (registrations)', () => ls.added);
    counter(
      'lars_dns_leases_removed_total',
      'leases removed by their agent (deregistrations)',
      () => ls.removed,
    );
    counter(
      'lars_dns_leases_expired_total',
      'leases expired (no renewal within their ttl)',
      () => ls.expired,
    );
    counter(
      'lars_dns_leases_held_total',
      'expired leases held by the brake (most agents silent at once)',
      () => ls.held,
    );
    counter('lars_dns_bad_leases_total', 'leases in batches that were invalid (skipped)', () => ls.badLeases);
    counter('lars_dns_leases_dropped_total', 'lease renewals dropped: too many waiting', () => ls.dropped);
    counter(
      'lars_dns_lease_write_failures_total',
      'lease batches the database refused',
      () => ls.writeFailures,
    );
    gauge('lars_dns_lease_backlog', 'leases received and not yet written', () => this.leases.backlog);
    counter(
      'lars_dns_subscription_cuts_total',
      'connections cut for too many subscriptions',
      () => this.stats.subscriptionCuts,
    );
    gauge(
      'lars_dns_oversized_routes',
      'routes of the current snapshot answered with only the hosts that fit one frame',
      () => snap().oversized.size,
    );
    const reload = new Histogram({
      name: 'lars_dns_full_reload_seconds',
      help: 'duration of full reloads',
      registers: [r],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10],
    });
    this.sync.on('swapped', (_s, _c, kind) => {
      if (kind === 'full') reload.observe(this.sync.stats.lastFullReloadMs / 1000);
    });
  }
}

/** 127.0.0.0/8, ::1, and IPv4 loopback as an IPv6-mapped address. */
function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}
