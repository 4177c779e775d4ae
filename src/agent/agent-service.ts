import { join } from 'node:path';
import { ClosedError } from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { Dispatcher } from '../net/dispatcher.js';
import { TcpClient } from '../net/tcp-client.js';
import { UdpEndpoint, type UdpPeer } from '../net/udp-endpoint.js';
import {
  encodeMessage,
  encodeRouteBody,
  MAX_DATAGRAM_BODY_LEN,
  MsgId,
  msgIdName,
  RetCode,
  wireToIp,
  type GetHostRequest,
  type GetRouteRequest,
  type HostInfo,
  type RegisterRequest,
  type ReportRequest,
} from '../protocol/index.js';
import { pidNamespace, procStat, processAlive } from '../api/process-identity.js';
import { RegistrationLink } from './registration-link.js';
import { LocalRegistry } from './registrations.js';
import { LazyRegistry } from '../service/lazy-registry.js';
import { AdminHttp, type Health } from '../service/admin-http.js';
import { AgentCore } from './agent-core.js';
import { AgentFastPath, type FastPathSettings } from './agent-fast-path.js';
import { AgentHotPath, hotPathCounts } from './agent-hot-path.js';
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
  /** SO_RCVBUF of each API socket (`[agent] recv_buffer_kb`); default 4 MiB (DEFAULT_UDP_RECV_BUFFER_BYTES). */
  recvBufferBytes?: number;
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
  /** false: no health/metrics HTTP endpoint (a shard thread; its parent serves one). Default true. */
  http?: boolean;
  /** Set when this agent is one shard of several threads (see agent-threads.ts). */
  shard?: ShardLink;
  /** Every route change (hosts, or undefined when removed), e.g. for a cache kept elsewhere. */
  onRouteChanged?: (modid: number, cmdid: number, hosts: readonly HostInfo[] | undefined) => void;
  /**
   * Self-registration (issue 15): this agent's name, the owner of its leases at dns. Default
   * `<caller ip>:<first API port>`.
   */
  name?: string;
  /** Local registrations this agent holds at most (more are refused). Default 10,000. */
  maxRegistrations?: number;
  /**
   * Publish routes in shared memory for the SDK's fast path (issue 18, `[agent] fast_path`). Off
   * unless given: `lars agent` turns it on from the config.
   */
  fastPath?: FastPathSettings | false;
  /** `[agent] hot_path`: get_host and report on the lean path (agent-hot-path.ts). Default true. */
  hotPath?: boolean;
  /** With the hot path: read datagrams in batches through the native addon when it is there (`[agent] batch_receive`). Default true. */
  batchReceive?: boolean;
}

/** A request for a route this shard does not own, on its way to the owner. */
export interface ForwardedRequest {
  kind: 'gethost' | 'report' | 'getroute' | 'register' | 'deregister';
  msg: GetHostRequest | ReportRequest | GetRouteRequest | RegisterRequest;
  /** Index (in this shard's port list) of the endpoint that received it: the reply leaves there. */
  endpoint: number;
  address: string;
  port: number;
}

/** How a shard thread reaches its siblings: every route has exactly one owner of its state. */
export interface ShardLink {
  owns(modid: number, cmdid: number): boolean;
  /** One shard (the first) holds every local registration, so dns gets one batch per interval. */
  ownsRegistrations: boolean;
  forward(req: ForwardedRequest): void;
}

/** An encoded answer to send back through the endpoint that received the request. */
export interface ForwardedAnswer {
  msgid: number;
  body: Uint8Array;
}

const TICK_MS = 100;
/**
 * The longest datagram the API accepts: requests are a few dozen bytes, 4 KiB leaves room for fields
 * later clients may add. Longer or malformed datagrams are dropped in the kernel when the native
 * addon is there (issue 11: a junk flood must not fill the receive buffer in front of real requests).
 */
export const MAX_API_DATAGRAM_BYTES = 4096;

/**
 * The load-balance agent of one host (DESIGN §5): the UDP API on every configured port (any route
 * on any port), one AgentCore owning every route's state, a reconnecting TCP link to dns with
 * re-subscription, a bounded link to the reporter, the last-known-good cache, and health/metrics.
 */
export class AgentService {
  /** Metrics; prom-client is loaded on the first scrape (issue 17: footprint). */
  readonly registry = new LazyRegistry();
  readonly core: AgentCore;
  private readonly opts: AgentServiceOptions;
  private readonly log: Logger;
  private readonly endpoints: UdpEndpoint[] = [];
  private readonly dns: TcpClient;
  private readonly reporter: TcpClient | undefined;
  private readonly cache: RouteCache | undefined;
  private readonly http: AdminHttp | undefined;
  private readonly localRegs: LocalRegistry;
  private readonly registrations: RegistrationLink;
  /** get_host and report answered without the generic dispatch (issue 17); undefined when off. */
  private readonly hot: AgentHotPath | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private fast: AgentFastPath | undefined;
  private state: 'new' | 'running' | 'closing' | 'closed' = 'new';
  private boundPorts: number[] = [];
  private httpPort = 0;
  readonly stats = {
    requests: new Map<number, number>(),
    reportErrors: 0,
    reportsWithoutHost: 0,
    truncatedRoutes: 0,
  };

  constructor(options: AgentServiceOptions) {
    this.opts = options;
    this.log = options.logger ?? silentLogger;
    const maxQueuedFrames = options.maxQueuedFrames ?? 10_000;
    // Both links connect when there is something to send (issue 11): dns and the reporter cut a
    // connection that completes no frame within their handshake_timeout, and an agent with no
    // traffic has nothing to say. The dns link stays up (redials) while the agent knows routes or
    // carries registrations: it must re-subscribe and renew them after a dns restart.
    const knowsRoutes = (): boolean => this.needsDns();

    this.dns = new TcpClient({
      host: options.dns.host,
      port: options.dns.port,
      onDemand: { stayConnected: knowsRoutes },
      maxQueuedFrames,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      logger: this.log.child({ link: 'dns' }),
      dispatcher: new Dispatcher<TcpClient>().on(MsgId.GetRouteResponse, (msg) => this.core.applyRoute(msg)),
      onConnect: () => {
        this.log.info({ dns: options.dns }, 'connected to dns');
        this.core.dnsReconnected();
        this.registrations.reconnected();
      },
      onDisconnect: (_c, reason) => {
        if (knowsRoutes()) this.log.warn({ dns: options.dns, err: reason }, 'lost dns link; reconnecting');
      },
    });
    this.reporter = options.reporter
      ? new TcpClient({
          host: options.reporter.host,
          port: options.reporter.port,
          onDemand: { stayConnected: () => false },
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
          if (!this.reporter || this.reporter.closed) return;
          try {
            this.reporter.send(MsgId.ReportStatusRequest, msg);
          } catch (err) {
            // Never let one statistics message take the agent down (it runs from a timer).
            this.stats.reportErrors++;
            if (this.stats.reportErrors === 1)
              this.log.error({ err }, 'could not send statistics (further ones are counted)');
          }
        },
        routeChanged: (modid, cmdid, hosts) => {
          this.cache?.markDirty();
          options.onRouteChanged?.(modid, cmdid, hosts);
        },
        balancerChanged: (modid, cmdid) => this.fast?.markDirty(modid, cmdid),
      },
    });

    const now = options.now ?? (() => performance.now());
    const ownNs = pidNamespace('self');
    this.localRegs = new LocalRegistry({
      callerIp: options.callerIp >>> 0,
      ...(options.maxRegistrations !== undefined ? { maxRegistrations: options.maxRegistrations } : {}),
      now,
      // Watched only when this agent sees the very same process (same namespace, same start).
      canWatch: (pid, start, ns) => ns !== 0 && ns === ownNs && procStat(pid)?.start === start,
      alive: processAlive,
    });
    this.registrations = new RegistrationLink({
      registry: this.localRegs,
      connected: () => this.dns.connected,
      send: (batch) => this.dns.send(MsgId.LeaseBatch, batch),
      now,
      logger: this.log,
    });

    this.hot =
      options.hotPath !== false
        ? new AgentHotPath({ core: this.core, ...(options.shard ? { owns: options.shard.owns } : {}) })
        : undefined;

    this.cache =
      options.cacheDir !== undefined
        ? new RouteCache(join(options.cacheDir, 'routes.json'), () => this.core.knownRoutes())
        : undefined;

    this.http =
      options.http === false
        ? undefined
        : new AdminHttp({
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
      if (loaded.problem)
        this.log.warn({ cache: this.cache.path, problem: loaded.problem }, 'route cache ignored');
      if (loaded.routes.length > 0) {
        this.log.warn(
          { cache: this.cache.path, routes: loaded.routes.length, savedAt: loaded.savedAt },
          'serving routes from the last-known-good cache: stale until dns confirms them',
        );
      }
    }
    for (const [i, port] of this.opts.ports.entries()) {
      const ep = new UdpEndpoint({
        host: this.opts.host,
        port,
        dispatcher: this.apiDispatcher(i),
        logger: this.log,
        datagramFilter: { maxLen: MAX_API_DATAGRAM_BYTES },
        recvBufferSize: this.opts.recvBufferBytes,
        ...(this.hot ? { fastPath: this.hot.handle, batchReceive: this.opts.batchReceive ?? true } : {}),
      });
      this.endpoints.push(ep);
      const addr = await ep.bind();
      this.boundPorts.push(addr.port);
    }
    // The owner name of this agent's leases: stable across restarts on the same ports.
    this.registrations.agentName = this.opts.name ?? `${wireToIp(this.opts.callerIp)}:${this.boundPorts[0]}`;
    // Routes from the cache are stale until dns confirms them: connect now to ask (onConnect re-pulls
    // every route). Otherwise the first request or registration connects.
    if (this.needsDns()) this.dns.start();
    this.registrations.start();
    this.tickTimer = setInterval(() => this.core.tick(), this.opts.tickMs ?? TICK_MS);
    this.tickTimer.unref();
    if (this.opts.fastPath) this.startFastPath(this.opts.fastPath);
    this.httpPort = this.http ? (await this.http.listen()).port : 0;
    this.log.info(
      {
        host: this.opts.host,
        ports: this.boundPorts,
        dns: this.opts.dns,
        reporter: this.opts.reporter ?? null,
        httpPort: this.httpPort,
      },
      'agent listening',
    );
    return { ports: [...this.boundPorts], httpPort: this.httpPort };
  }

  get ports(): number[] {
    return [...this.boundPorts];
  }

  /** The shared-memory fast path (issue 18), when it runs. */
  get fastPath(): AgentFastPath | undefined {
    return this.fast;
  }

  private startFastPath(settings: FastPathSettings): void {
    this.fast = AgentFastPath.start({
      ...settings,
      core: this.core,
      ports: this.boundPorts,
      bindHost: this.opts.host,
      probeNum: this.opts.lb.probeNum,
      logger: this.log,
    });
    this.fast?.registerMetrics(this.registry);
  }

  get dnsConnected(): boolean {
    return this.dns.connected;
  }

  get reporterConnected(): boolean {
    return this.reporter?.connected ?? false;
  }

  /** Counters of the UDP API summed over its ports. */
  apiStats(): {
    datagramsIn: number;
    malformed: number;
    badBody: number;
    unknownMsgid: number;
    kernelDrops: number;
  } {
    const out = { datagramsIn: 0, malformed: 0, badBody: 0, unknownMsgid: 0, kernelDrops: 0 };
    for (const e of this.endpoints) {
      out.datagramsIn += e.stats.datagramsIn;
      out.malformed += e.stats.malformed;
      out.badBody += e.stats.badBody;
      out.unknownMsgid += e.stats.unknownMsgid;
      out.kernelDrops += e.kernelDrops ?? 0;
    }
    return out;
  }

  health(): Health {
    const s = this.core.summary();
    // 'idle': not connected because nothing needs asking yet (links connect on demand).
    const link = (c: TcpClient): string =>
      c.connected ? 'connected' : c.state === 'idle' ? 'idle' : 'disconnected';
    const dnsUp = this.dns.connected || this.dns.state === 'idle';
    return {
      status: dnsUp && s.staleRoutes === 0 ? 'ok' : 'degraded',
      dns: link(this.dns),
      reporter: this.reporter ? link(this.reporter) : 'disabled',
      ...s,
      registrations: this.localRegs.size,
      watchedRegistrations: this.localRegs.watched,
      fastPathRoutes: this.fast?.routes ?? 0,
      ports: this.boundPorts,
    };
  }

  /** Local registrations (issue 15). */
  get registrationCount(): number {
    return this.localRegs.size;
  }

  /** Registration counters, and the lease batches (and frames) sent to dns. */
  registrationStats(): LocalRegistry['stats'] & { batches: number; frames: number } {
    return { ...this.localRegs.stats, ...this.registrations.stats };
  }

  /** Graceful: flush the cache and the reporter queue, close sockets. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'closing';
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.registrations.close();
    // Results already in the rings are applied; clients go back to UDP.
    this.fast?.close();
    // Statistics not yet sent (interval not elapsed) go out before the reporter link is closed.
    this.core.flushReports();
    this.cache?.close();
    await Promise.all(this.endpoints.map((e) => e.close()));
    await Promise.all([this.dns.close(), this.reporter?.close()]);
    await this.http?.close();
    this.state = 'closed';
  }

  /** Abrupt: close sockets without flushing. Idempotent. */
  async destroy(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closing';
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.registrations.close();
    this.fast?.close();
    this.cache?.close();
    await Promise.all(this.endpoints.map((e) => e.destroy()));
    await Promise.all([this.dns.destroy(), this.reporter?.destroy()]);
    await this.http?.close();
    this.state = 'closed';
  }

  private count(msgid: number): void {
    this.stats.requests.set(msgid, (this.stats.requests.get(msgid) ?? 0) + 1);
  }

  /**
   * Writes the last-known-good cache now (a replacement agent about to start loads it). False when
   * there is no cache or the write failed.
   */
  flushCache(): boolean {
    return this.cache?.flushNow() ?? false;
  }

  /** Seeds routes from a cache kept elsewhere (stale until dns confirms them). */
  seed(routes: ReadonlyArray<{ modid: number; cmdid: number; hosts: HostInfo[] }>): void {
    for (const r of routes) this.core.seedFromCache(r.modid, r.cmdid, r.hosts);
  }

  /** Serves a request as the owner of its route; the answer is undefined for reports. */
  answer(req: Pick<ForwardedRequest, 'kind' | 'msg'>): ForwardedAnswer | undefined {
    const core = this.core;
    switch (req.kind) {
      case 'gethost': {
        const m = req.msg as GetHostRequest;
        this.count(MsgId.GetHostRequest);
        const res = core.getHost(m.modid, m.cmdid);
        const body = encodeMessage(MsgId.GetHostResponse, {
          seq: m.seq,
          modid: m.modid,
          cmdid: m.cmdid,
          retcode: res.retcode,
          host: res.host,
        });
        return { msgid: MsgId.GetHostResponse, body };
      }
      case 'report': {
        const m = req.msg as ReportRequest;
        this.count(MsgId.ReportRequest);
        if (m.host)
          core.report(m.modid, m.cmdid, m.host.ip, m.host.port, m.retcode, m.timecost_ms || undefined);
        else this.stats.reportsWithoutHost++;
        return undefined;
      }
      case 'register':
      case 'deregister':
        return this.answerRegistration(req.kind, req.msg as RegisterRequest);
      case 'getroute': {
        const m = req.msg as GetRouteRequest;
        this.count(MsgId.ApiGetRouteRequest);
        const host = core.getRoute(m.modid, m.cmdid) ?? [];
        // One answer is one datagram: a route too big for it gets the hosts that fit + total_hosts.
        const { body, truncated } = encodeRouteBody(m.modid, m.cmdid, host, MAX_DATAGRAM_BODY_LEN);
        if (truncated) this.stats.truncatedRoutes++;
        return { msgid: MsgId.ApiGetRouteResponse, body };
      }
    }
  }

  /** The dns link has work: routes to keep subscribed, or registrations to renew. */
  private needsDns(): boolean {
    return this.core.routeCount > 0 || this.localRegs.size > 0;
  }

  private answerRegistration(kind: 'register' | 'deregister', m: RegisterRequest): ForwardedAnswer {
    if (kind === 'register') {
      this.count(MsgId.RegisterRequest);
      const out = this.localRegs.register(m);
      // Registration batches leave only on a connected link: an idle one (no routes yet) dials now.
      if (this.dns.state === 'idle' && !this.dns.closed) this.dns.start();
      if (out.changed) this.registrations.changed();
      const { changed: _c, ...res } = out;
      return {
        msgid: MsgId.RegisterResponse,
        body: encodeMessage(MsgId.RegisterResponse, { seq: m.seq, ...res }),
      };
    }
    this.count(MsgId.DeregisterRequest);
    if (this.localRegs.deregister(m)) this.registrations.changed();
    return {
      msgid: MsgId.DeregisterResponse,
      body: encodeMessage(MsgId.DeregisterResponse, {
        seq: m.seq,
        retcode: RetCode.SUCC,
        host: m.host,
        ttl_s: 0,
        reason: '',
        watched: false,
      }),
    };
  }

  /** Sends an owner's answer to a forwarded request from the endpoint that received it. */
  replyVia(endpoint: number, address: string, port: number, answer: ForwardedAnswer): void {
    const ep = this.endpoints[endpoint];
    if (ep && !ep.closed) ep.sendTo(port, address, answer.msgid, answer.body);
  }

  private apiDispatcher(endpoint: number): Dispatcher<UdpPeer> {
    const shard = this.opts.shard;
    const handle = (kind: ForwardedRequest['kind'], msg: ForwardedRequest['msg'], peer: UdpPeer): void => {
      const owned =
        kind === 'register' || kind === 'deregister'
          ? shard?.ownsRegistrations
          : shard?.owns(msg.modid, msg.cmdid);
      if (shard && !owned) {
        shard.forward({ kind, msg, endpoint, address: peer.remote.address, port: peer.remote.port });
        return;
      }
      const out = this.answer({ kind, msg });
      if (out) peer.sendRaw(out.msgid, out.body);
    };
    return new Dispatcher<UdpPeer>()
      .on(MsgId.GetHostRequest, (req, peer) => handle('gethost', req, peer))
      .on(MsgId.ReportRequest, (req, peer) => handle('report', req, peer))
      .on(MsgId.ApiGetRouteRequest, (req, peer) => handle('getroute', req, peer))
      .on(MsgId.RegisterRequest, (req, peer) => handle('register', req, peer))
      .on(MsgId.DeregisterRequest, (req, peer) => handle('deregister', req, peer));
  }

  private createMetrics(): void {
    const r = this.registry;
    const { gauge, counter } = r.live();
    const summary = () => this.core.summary();
    gauge('lars_agent_routes', 'routes known to the agent', () => summary().routes);
    gauge(
      'lars_agent_routes_stale',
      'routes served from the disk cache, not yet confirmed by dns',
      () => summary().staleRoutes,
    );
    gauge('lars_agent_hosts_idle', 'hosts in the idle state', () => summary().idle);
    gauge('lars_agent_hosts_overloaded', 'hosts in the overload state', () => summary().overloaded);
    gauge('lars_agent_dns_connected', '1 while the dns link is up', () => (this.dns.connected ? 1 : 0));
    const st = this.core.stats;
    counter(
      'lars_agent_transitions_overload_total',
      'idle -> overload transitions',
      () => st.transitionsToOverload,
    );
    counter('lars_agent_transitions_idle_total', 'overload -> idle transitions', () => st.transitionsToIdle);
    counter('lars_agent_noexist_total', 'GetHost answered NOEXIST', () => st.noexist);
    counter('lars_agent_overload_answers_total', 'GetHost answered OVERLOAD', () => st.overload);
    counter('lars_agent_probes_total', 'trial calls given to overloaded hosts', () => st.probes);
    counter(
      'lars_agent_unknown_host_reports_total',
      'reports for hosts not in the route',
      () => st.unknownHostReports,
    );
    counter('lars_agent_pulls_total', 'route requests sent to dns', () => st.pulls);
    counter(
      'lars_agent_reports_sent_total',
      'statistics messages sent to the reporter',
      () => st.reportsSent,
    );
    counter(
      'lars_agent_dns_dropped_total',
      'frames to dns dropped while disconnected',
      () => this.dns.stats.dropped,
    );
    counter(
      'lars_agent_reporter_dropped_total',
      'statistics dropped while the reporter was unreachable',
      () => this.reporter?.stats.dropped ?? 0,
    );
    counter(
      'lars_agent_malformed_datagrams_total',
      'datagrams dropped: not one frame of 8 + msglen bytes',
      () => this.apiStats().malformed,
    );
    counter(
      'lars_agent_kernel_dropped_datagrams_total',
      'datagrams the kernel dropped before the agent saw them: not one frame, over 4 KiB (socket filter), or receive buffer full',
      () => this.apiStats().kernelDrops,
    );
    counter(
      'lars_agent_bad_body_datagrams_total',
      'datagrams dropped: body did not decode',
      () => this.apiStats().badBody,
    );
    counter(
      'lars_agent_malformed_reports_total',
      'ReportRequests dropped: no host in the message',
      () => this.stats.reportsWithoutHost,
    );
    counter(
      'lars_agent_truncated_route_answers_total',
      'API GetRoute answers holding only the hosts that fit one datagram (total_hosts set)',
      () => this.stats.truncatedRoutes,
    );
    const rs = this.localRegs.stats;
    gauge(
      'lars_agent_registrations',
      'local instances registered through this agent',
      () => this.localRegs.size,
    );
    gauge(
      'lars_agent_registrations_watched',
      'registrations whose process the agent watches (death noticed within ~250 ms)',
      () => this.localRegs.watched,
    );
    counter('lars_agent_registrations_total', 'new registrations', () => rs.registered);
    counter(
      'lars_agent_registrations_refused_total',
      'registrations refused (see the reason)',
      () => rs.refused,
    );
    counter(
      'lars_agent_deregistrations_total',
      'registrations withdrawn by their process',
      () => rs.deregistered,
    );
    counter(
      'lars_agent_registrations_lapsed_total',
      'registrations not renewed within their ttl',
      () => rs.lapsed,
    );
    counter(
      'lars_agent_registrations_exited_total',
      'registrations removed because their watched process ended',
      () => rs.exited,
    );
    counter(
      'lars_agent_lease_batches_total',
      'lease batches sent to dns (one per interval, more on changes)',
      () => this.registrations.stats.batches,
    );
    counter(
      'lars_agent_unknown_msgid_total',
      'datagrams with an unknown msgid',
      () => this.apiStats().unknownMsgid,
    );
    r.labelledCounter('lars_agent_requests_total', 'API requests by message', 'msg', () =>
      Array.from(hotPathCounts(this.stats.requests, this.hot), ([id, n]) => [msgIdName(id), n] as const),
    );
  }
}
