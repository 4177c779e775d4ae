import { join } from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import { ClosedError } from '../errors.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { Dispatcher } from '../net/dispatcher.js';
import { TcpClient } from '../net/tcp-client.js';
import { UdpEndpoint, type UdpPeer } from '../net/udp-endpoint.js';
import { MsgId, msgIdName } from '../protocol/index.js';
import { AdminHttp, type Health } from '../service/admin-http.js';
import { AgentCore } from './agent-core.js';
import type { LoadBalanceConfig } from './lb-config.js';
import { RouteCache } from './route-cache.js';

export interface Endpoint {
  host: string;
  port: number;
}

export interface AgentServiceOptions {
  /** Address the UDP API binds (loopback by default: the original bound 0.0.0.0). */
  host: string;
  /** UDP API ports; 0 entries pick free ports. Every port answers every route. */
  ports: readonly number[];
  dns: Endpoint;
  /** Undefined: run without a reporter (statistics are not sent). */
  reporter: Endpoint | undefined;
  lb: LoadBalanceConfig;
  reportIntervalS: number;
  /** Directory of the last-known-good route cache; undefined disables the cache. */
  cacheDir: string | undefined;
  /** This machine's IPv4 in wire form, the `caller` of statistics. */
  callerIp: number;
  httpHost?: string;
  httpPort?: number;
  logger?: Logger;
  /** Frames kept for dns/reporter while disconnected (oldest dropped past it). */
  maxQueuedFrames?: number;
  /** Milliseconds between housekeeping ticks (time transitions, interval reports). */
  tickMs?: number;
  /** Monotonic clock in ms for the balancers; injected by tests to drive windows and timeouts. */
  now?: () => number;
  /** Backoff of the dns and reporter links (default 100 ms doubling to 10 s, 20% jitter). */
  backoff?: { initialMs: number; maxMs: number; jitter: number };
}

const TICK_MS = 100;

/**
 * The load-balance agent of one host (DESIGN §5): the UDP API on every configured port (any route
 * on any port), one AgentCore owning every route's state, a reconnecting TCP link to dns with
 * re-subscription, a bounded link to the reporter, the last-known-good cache, and health/metrics.
 */
export class AgentService {
  readonly registry = new Registry();
  readonly core: AgentCore;
  private readonly opts: AgentServiceOptions;
  private readonly log: Logger;
  private readonly endpoints: UdpEndpoint[] = [];
  private readonly dns: TcpClient;
  private readonly reporter: TcpClient | undefined;
  private readonly cache: RouteCache | undefined;
  private readonly http: AdminHttp;
  private tickTimer: NodeJS.Timeout | undefined;
  private state: 'new' | 'running' | 'closing' | 'closed' = 'new';
  private boundPorts: number[] = [];
  private httpPort = 0;
  readonly stats = { requests: new Map<number, number>() };

  constructor(options: AgentServiceOptions) {
    this.opts = options;
    this.log = options.logger ?? silentLogger;
    const maxQueuedFrames = options.maxQueuedFrames ?? 10_000;

    this.dns = new TcpClient({
      host: options.dns.host,
      port: options.dns.port,
      maxQueuedFrames,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      logger: this.log.child({ link: 'dns' }),
      dispatcher: new Dispatcher<TcpClient>().on(MsgId.GetRouteResponse, (msg) => this.core.applyRoute(msg)),
      onConnect: () => {
        this.log.info({ dns: options.dns }, 'connected to dns');
        this.core.dnsReconnected();
      },
      onDisconnect: (_c, reason) => this.log.warn({ dns: options.dns, err: reason }, 'lost dns link; reconnecting'),
    });
    this.reporter = options.reporter
      ? new TcpClient({
          host: options.reporter.host,
          port: options.reporter.port,
          maxQueuedFrames,
          ...(options.backoff ? { backoff: options.backoff } : {}),
          logger: this.log.child({ link: 'reporter' }),
          dispatcher: new Dispatcher<TcpClient>(),
        })
      : undefined;

    this.core = new AgentCore({
      config: options.lb,
      reportIntervalS: options.reportIntervalS,
      callerIp: options.callerIp,
      logger: this.log,
      ...(options.now ? { now: options.now } : {}),
      links: {
        pull: (modid, cmdid) => {
          if (this.dns.closed) return false;
          this.dns.send(MsgId.GetRouteRequest, { modid, cmdid });
          return true;
        },
        report: (msg) => {
          if (this.reporter && !this.reporter.closed) this.reporter.send(MsgId.ReportStatusRequest, msg);
        },
        routeChanged: () => this.cache?.markDirty(),
      },
    });

    this.cache =
      options.cacheDir !== undefined
        ? new RouteCache(join(options.cacheDir, 'routes.json'), () => this.core.knownRoutes())
        : undefined;

    this.http = new AdminHttp({
      host: options.httpHost ?? options.host,
      port: options.httpPort ?? 0,
      registry: this.registry,
      health: () => this.health(),
    });
    this.createMetrics();
  }

  async start(): Promise<{ ports: number[]; httpPort: number }> {
    if (this.state !== 'new') throw new ClosedError('agent already started or closed');
    this.state = 'running';
    if (this.cache) {
      const loaded = this.cache.load();
      for (const r of loaded.routes) this.core.seedFromCache(r.modid, r.cmdid, r.hosts);
      if (loaded.problem) this.log.warn({ cache: this.cache.path, problem: loaded.problem }, 'route cache ignored');
      if (loaded.routes.length > 0) {
        this.log.warn(
          { cache: this.cache.path, routes: loaded.routes.length, savedAt: loaded.savedAt },
          'serving routes from the last-known-good cache: stale until dns confirms them',
        );
      }
    }
    const dispatcher = this.apiDispatcher();
    for (const port of this.opts.ports) {
      const ep = new UdpEndpoint({ host: this.opts.host, port, dispatcher, logger: this.log });
      this.endpoints.push(ep);
      const addr = await ep.bind();
      this.boundPorts.push(addr.port);
    }
    this.dns.start();
    this.reporter?.start();
    this.tickTimer = setInterval(() => this.core.tick(), this.opts.tickMs ?? TICK_MS);
    this.tickTimer.unref();
    this.httpPort = (await this.http.listen()).port;
    this.log.info(
      { host: this.opts.host, ports: this.boundPorts, dns: this.opts.dns, reporter: this.opts.reporter ?? null, httpPort: this.httpPort },
      'agent listening',
    );
    return { ports: [...this.boundPorts], httpPort: this.httpPort };
  }

  get ports(): number[] {
    return [...this.boundPorts];
  }

  get dnsConnected(): boolean {
    return this.dns.connected;
  }

  /** Counters of the UDP API summed over its ports. */
  apiStats(): { datagramsIn: number; malformed: number; badBody: number; unknownMsgid: number } {
    const out = { datagramsIn: 0, malformed: 0, badBody: 0, unknownMsgid: 0 };
    for (const e of this.endpoints) {
      out.datagramsIn += e.stats.datagramsIn;
      out.malformed += e.stats.malformed;
      out.badBody += e.stats.badBody;
      out.unknownMsgid += e.stats.unknownMsgid;
    }
    return out;
  }

  health(): Health {
    const s = this.core.summary();
    return {
      status: this.dns.connected ? (s.staleRoutes > 0 ? 'degraded' : 'ok') : 'degraded',
      dns: this.dns.connected ? 'connected' : 'disconnected',
      reporter: this.reporter ? (this.reporter.connected ? 'connected' : 'disconnected') : 'disabled',
      ...s,
      ports: this.boundPorts,
    };
  }

  /** Graceful: flush the cache and the reporter queue, close sockets. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'closing';
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.core.tick();
    this.cache?.close();
    await Promise.all(this.endpoints.map((e) => e.close()));
    await Promise.all([this.dns.close(), this.reporter?.close()]);
    await this.http.close();
    this.state = 'closed';
  }

  /** Abrupt: close sockets without flushing. Idempotent. */
  async destroy(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closing';
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.cache?.close();
    await Promise.all(this.endpoints.map((e) => e.destroy()));
    await Promise.all([this.dns.destroy(), this.reporter?.destroy()]);
    await this.http.close();
    this.state = 'closed';
  }

  private count(msgid: number): void {
    this.stats.requests.set(msgid, (this.stats.requests.get(msgid) ?? 0) + 1);
  }

  private apiDispatcher(): Dispatcher<UdpPeer> {
    const core = this.core;
    return new Dispatcher<UdpPeer>()
      .on(MsgId.GetHostRequest, (req, peer) => {
        this.count(MsgId.GetHostRequest);
        const res = core.getHost(req.modid, req.cmdid);
        peer.reply(MsgId.GetHostResponse, {
          seq: req.seq,
          modid: req.modid,
          cmdid: req.cmdid,
          retcode: res.retcode,
          host: res.host,
        });
      })
      .on(MsgId.ReportRequest, (req) => {
        this.count(MsgId.ReportRequest);
        if (!req.host) return;
        core.report(req.modid, req.cmdid, req.host.ip, req.host.port, req.retcode, req.timecost_ms || undefined);
      })
      .on(MsgId.ApiGetRouteRequest, (req, peer) => {
        this.count(MsgId.ApiGetRouteRequest);
        const hosts = core.getRoute(req.modid, req.cmdid) ?? [];
        peer.reply(MsgId.ApiGetRouteResponse, { modid: req.modid, cmdid: req.cmdid, host: hosts });
      });
  }

  private createMetrics(): void {
    const r = this.registry;
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({ name, help, registers: [r], collect() { this.set(read()); } });
    const counter = (name: string, help: string, read: () => number) =>
      new Counter({ name, help, registers: [r], collect() { this.reset(); this.inc(read()); } });
    const summary = () => this.core.summary();
    gauge('lars_agent_routes', 'routes known to the agent', () => summary().routes);
    gauge('lars_agent_routes_stale', 'routes served from the disk cache, not yet confirmed by dns', () => summary().staleRoutes);
    gauge('lars_agent_hosts_idle', 'hosts in the idle state', () => summary().idle);
    gauge('lars_agent_hosts_overloaded', 'hosts in the overload state', () => summary().overloaded);
    gauge('lars_agent_dns_connected', '1 while the dns link is up', () => (this.dns.connected ? 1 : 0));
    const st = this.core.stats;
    counter('lars_agent_transitions_overload_total', 'idle -> overload transitions', () => st.transitionsToOverload);
    counter('lars_agent_transitions_idle_total', 'overload -> idle transitions', () => st.transitionsToIdle);
    counter('lars_agent_noexist_total', 'GetHost answered NOEXIST', () => st.noexist);
    counter('lars_agent_overload_answers_total', 'GetHost answered OVERLOAD', () => st.overload);
    counter('lars_agent_probes_total', 'trial calls given to overloaded hosts', () => st.probes);
    counter('lars_agent_unknown_host_reports_total', 'reports for hosts not in the route', () => st.unknownHostReports);
    counter('lars_agent_pulls_total', 'route requests sent to dns', () => st.pulls);
    counter('lars_agent_reports_sent_total', 'statistics messages sent to the reporter', () => st.reportsSent);
    counter('lars_agent_dns_dropped_total', 'frames to dns dropped while disconnected', () => this.dns.stats.dropped);
    counter('lars_agent_reporter_dropped_total', 'statistics dropped while the reporter was unreachable', () => this.reporter?.stats.dropped ?? 0);
    counter('lars_agent_malformed_datagrams_total', 'datagrams dropped: not one frame of 8 + msglen bytes', () => this.apiStats().malformed);
    counter('lars_agent_bad_body_datagrams_total', 'datagrams dropped: body did not decode', () => this.apiStats().badBody);
    counter('lars_agent_unknown_msgid_total', 'datagrams with an unknown msgid', () => this.apiStats().unknownMsgid);
    const requests = new Counter({
      name: 'lars_agent_requests_total',
      help: 'API requests by message',
      labelNames: ['msg'],
      registers: [r],
      collect: () => {
        requests.reset();
        for (const [id, n] of this.stats.requests) requests.inc({ msg: msgIdName(id) }, n);
      },
    });
  }
}
