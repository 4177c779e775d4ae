import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/silent.js';
import { tracer } from '../log/trace.js';
import {
  RetCode,
  type GetRouteResponse,
  type HostInfo,
  type ReportStatusRequest,
} from '../protocol/index.js';
import { HostTable, type HostTransition } from './host-state.js';
import { DEFAULT_LOAD_BALANCE_CONFIG, type LoadBalanceConfig } from './lb-config.js';
import { LoadBalancer, RouteState, type GetHostResult, type PickedHost } from './load-balancer.js';

const NOEXIST: GetHostResult = Object.freeze({ retcode: RetCode.NOEXIST, probe: false });
const OVERLOAD: GetHostResult = Object.freeze({ retcode: RetCode.OVERLOAD, probe: false });

/** A route key for maps: two int32s do not fit one safe integer, so a short string. */
export function agentRouteKey(modid: number, cmdid: number): string {
  return `${modid}:${cmdid}`;
}

/** What the core asks of the outside world; the agent service wires these to sockets and files. */
export interface AgentCoreLinks {
  /** Ask dns for a route (GetRouteRequest). Returns false when the request could not be queued. */
  pull(modid: number, cmdid: number): boolean;
  /** Send one route's statistics to the reporter. */
  report(message: ReportStatusRequest): void;
  /** Called when a route's host list changed (for the last-known-good cache). */
  routeChanged?(modid: number, cmdid: number, hosts: readonly HostInfo[] | undefined): void;
  /** A route's balancer changed: hosts, a host's state, or the route went away (issue 18's fast path). */
  balancerChanged?(modid: number, cmdid: number): void;
}

export interface AgentCoreOptions {
  config?: LoadBalanceConfig;
  /** Seconds between statistics reports of one route (a state change reports at once). */
  reportIntervalS: number;
  /** This machine's IPv4 in wire form (int32), the `caller` of reports. */
  callerIp: number;
  links: AgentCoreLinks;
  /** Monotonic milliseconds; injected so tests drive time. */
  now?: () => number;
  /** See DEFAULT_PULL_TIMEOUT_MS. */
  pullTimeoutMs?: number;
  /** Wall clock seconds for report timestamps. */
  unixNow?: () => number;
  logger?: Logger;
}

export interface AgentCoreStats {
  getHost: number;
  report: number;
  getRoute: number;
  noexist: number;
  overload: number;
  probes: number;
  unknownHostReports: number;
  pulls: number;
  routeUpdates: number;
  transitionsToOverload: number;
  transitionsToIdle: number;
  reportsSent: number;
}

/**
 * Host results per ReportStatusRequest: each is at most ~32 bytes (a negative int32 ip is a 10-byte
 * varint), so 1,500 stay well under the 65,527-byte frame limit.
 */
export const MAX_RESULTS_PER_REPORT = 1_500;

/** A pull not answered within this long is abandoned so that the next request asks again. */
export const DEFAULT_PULL_TIMEOUT_MS = 3_000;

interface RouteEntry {
  lb: LoadBalancer;
  pullStartedMs: number;
  /** Loaded from the disk cache and not yet confirmed by dns. */
  stale: boolean;
  lastReportMs: number;
}

/**
 * The agent's routing state: one LoadBalancer per (modid, cmdid), created on first use, pulled
 * from dns, refreshed after update_timeout, and the source of statistics for the reporter
 * (DESIGN §5). Single-threaded and free of I/O: the owner of a set of routes runs one core.
 */
export class AgentCore {
  private readonly routes = new Map<string, RouteEntry>();
  /** The hosts of every route, one row each (issue 17's footprint). */
  private readonly table = new HostTable();
  /** See lookup(); cleared whenever an entry leaves or is replaced in `routes`. */
  private lastEntry: RouteEntry | undefined;
  private lastPickProbe = false;
  private readonly config: LoadBalanceConfig;
  private readonly links: AgentCoreLinks;
  private readonly now: () => number;
  private readonly unixNow: () => number;
  private readonly reportIntervalMs: number;
  private readonly pullTimeoutMs: number;
  private readonly emptyTtlMs: number;
  private readonly callerIp: number;
  private readonly log: Logger;
  private readonly trace = tracer('agent');
  private readonly onTransition: (t: HostTransition) => void;
  readonly stats: AgentCoreStats = {
    getHost: 0,
    report: 0,
    getRoute: 0,
    noexist: 0,
    overload: 0,
    probes: 0,
    unknownHostReports: 0,
    pulls: 0,
    routeUpdates: 0,
    transitionsToOverload: 0,
    transitionsToIdle: 0,
    reportsSent: 0,
  };

  constructor(options: AgentCoreOptions) {
    this.config = options.config ?? DEFAULT_LOAD_BALANCE_CONFIG;
    this.links = options.links;
    this.now = options.now ?? (() => performance.now());
    this.unixNow = options.unixNow ?? (() => Math.floor(Date.now() / 1000));
    this.reportIntervalMs = options.reportIntervalS * 1000;
    this.pullTimeoutMs = options.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
    this.emptyTtlMs = Math.max(this.config.updateTimeoutS * 1000, this.pullTimeoutMs);
    this.callerIp = options.callerIp | 0;
    this.log = options.logger ?? silentLogger;
    this.onTransition = (t) => {
      this.links.balancerChanged?.(t.modid, t.cmdid);
      if (t.to === 'overload') this.stats.transitionsToOverload++;
      else this.stats.transitionsToIdle++;
      this.trace?.(
        `route ${t.modid}:${t.cmdid} host ${t.ip >>> 0}:${t.port} ${t.from} -> ${t.to} (${t.reason})`,
      );
    };
  }

  getHost(modid: number, cmdid: number): GetHostResult {
    const h = this.pick(modid, cmdid);
    if (h === undefined) return NOEXIST;
    if (h === null) return OVERLOAD;
    return {
      retcode: RetCode.SUCC,
      host: { ip: h.ip | 0, port: h.port },
      probe: this.lastPickProbe,
    };
  }

  /**
   * getHost without allocating (issue 17's hot path): the host (unsigned ip; read it at once), null
   * for OVERLOAD, undefined for NOEXIST. Counts and pulls exactly as getHost.
   */
  pick(modid: number, cmdid: number): PickedHost | null | undefined {
    this.stats.getHost++;
    const entry = this.entryFor(modid, cmdid);
    const now = this.now();
    this.refreshIfDue(entry, now);
    const h = entry.lb.pick(now);
    if (h === undefined) this.stats.noexist++;
    else if (h === null) this.stats.overload++;
    else if (entry.lb.lastPickProbe) this.stats.probes++;
    this.lastPickProbe = h !== undefined && h !== null && entry.lb.lastPickProbe;
    return h;
  }

  report(modid: number, cmdid: number, ip: number, port: number, retcode: number, timecostMs?: number): void {
    this.stats.report++;
    const entry = this.lookup(modid, cmdid);
    const now = this.now();
    if (!entry || !entry.lb.report(ip, port, retcode, timecostMs, now)) {
      this.stats.unknownHostReports++;
      return;
    }
    if (entry.lb.stateChangedSinceReport) this.sendReport(entry, now);
  }

  /**
   * A route was used without a getHost reaching the core (issue 18's fast path): refresh it from dns
   * if it is due, as a request would. Unknown routes are left alone.
   */
  touch(modid: number, cmdid: number): void {
    const entry = this.routes.get(agentRouteKey(modid, cmdid));
    if (entry) this.refreshIfDue(entry, this.now());
  }

  /** The route's hosts, or undefined (NOEXIST) when unknown or not fetched yet. */
  getRoute(modid: number, cmdid: number): HostInfo[] | undefined {
    this.stats.getRoute++;
    const entry = this.entryFor(modid, cmdid);
    this.refreshIfDue(entry, this.now());
    return entry.lb.size === 0 ? undefined : entry.lb.hosts();
  }

  /** A GetRouteResponse from dns (reply or push). An empty host list removes the route. */
  applyRoute(msg: GetRouteResponse): void {
    this.stats.routeUpdates++;
    const key = agentRouteKey(msg.modid, msg.cmdid);
    const now = this.now();
    this.links.balancerChanged?.(msg.modid, msg.cmdid);
    let entry = this.routes.get(key);
    if (msg.host.length === 0) {
      // dns has no hosts for it: keep an empty entry (NOEXIST until update_timeout, then asked
      // again) so that requests for it do not pull on every call; tick() evicts it later.
      if (entry) {
        const had = entry.lb.size > 0;
        entry.lb.updateRoute([], now);
        entry.stale = false;
        if (had) {
          this.trace?.(`route ${key} emptied (dns has no hosts)`);
          this.links.routeChanged?.(msg.modid, msg.cmdid, undefined);
        }
      }
      return;
    }
    if (!entry) entry = this.createEntry(msg.modid, msg.cmdid);
    const wasStale = entry.stale;
    entry.stale = false;
    const r = entry.lb.updateRoute(msg.host, now);
    if (wasStale) this.log.info({ modid: msg.modid, cmdid: msg.cmdid }, 'cached route confirmed by dns');
    if (r.added || r.removed || r.reweighted || wasStale)
      this.links.routeChanged?.(msg.modid, msg.cmdid, entry.lb.hosts());
    this.trace?.(`route ${key} updated: +${r.added} -${r.removed} =${r.kept}`);
  }

  /** Seeds a route from the last-known-good cache: served, but marked stale until dns confirms. */
  seedFromCache(modid: number, cmdid: number, hosts: readonly HostInfo[]): void {
    if (hosts.length === 0) return;
    const entry = this.createEntry(modid, cmdid);
    entry.lb.updateRoute(hosts, this.now());
    // Due for a refresh at once: the next request asks dns to confirm.
    entry.lb.lastUpdateMs = Number.NEGATIVE_INFINITY;
    entry.stale = true;
    this.links.balancerChanged?.(modid, cmdid);
  }

  /**
   * The dns link (re)connected: routes whose pull was in flight go back to NEW, and every known
   * route is asked for again so that dns subscribes this agent to it once more.
   */
  dnsReconnected(): void {
    for (const entry of this.routes.values()) {
      entry.lb.pullAborted();
      if (entry.lb.markPulling()) this.pull(entry);
    }
  }

  /** Periodic housekeeping: time-based transitions and interval reports. Call every ~100 ms. */
  tick(): void {
    const now = this.now();
    for (const [key, entry] of this.routes) {
      if (entry.lb.size === 0) {
        // Routes without hosts (unknown to dns, emptied, or never answered) are forgotten once
        // their answer is older than update_timeout: requests for random ids cannot pile up.
        if (now - Math.max(entry.lb.lastUpdateMs, entry.pullStartedMs) > this.emptyTtlMs) {
          this.routes.delete(key);
          this.links.balancerChanged?.(entry.lb.modid, entry.lb.cmdid);
          this.lastEntry = undefined;
        }
        continue;
      }
      entry.lb.tick(now);
      if (
        entry.lb.stateChangedSinceReport ||
        (entry.lb.dirty && now - entry.lastReportMs >= this.reportIntervalMs)
      ) {
        this.sendReport(entry, now);
      }
    }
  }

  /** Sends the statistics of every route with unreported calls or changes now (at close). */
  flushReports(): void {
    const now = this.now();
    for (const entry of this.routes.values()) {
      entry.lb.tick(now);
      if (entry.lb.size > 0 && entry.lb.dirty) this.sendReport(entry, now);
    }
  }

  get routeCount(): number {
    return this.routes.size;
  }

  /** Counts for metrics and health. */
  summary(): {
    routes: number;
    staleRoutes: number;
    pulling: number;
    hosts: number;
    idle: number;
    overloaded: number;
  } {
    let staleRoutes = 0;
    let pulling = 0;
    let hosts = 0;
    let idle = 0;
    let overloaded = 0;
    for (const e of this.routes.values()) {
      if (e.stale) staleRoutes++;
      if (e.lb.state === RouteState.Pulling) pulling++;
      hosts += e.lb.size;
      idle += e.lb.idleCount;
      overloaded += e.lb.overloadCount;
    }
    return { routes: this.routes.size, staleRoutes, pulling, hosts, idle, overloaded };
  }

  /** Every route with its hosts (for the disk cache). */
  *knownRoutes(): IterableIterator<{ modid: number; cmdid: number; hosts: HostInfo[]; stale: boolean }> {
    for (const e of this.routes.values()) {
      if (e.lb.size > 0) yield { modid: e.lb.modid, cmdid: e.lb.cmdid, hosts: e.lb.hosts(), stale: e.stale };
    }
  }

  /** The balancer of a route, for diagnostics and tests. */
  balancer(modid: number, cmdid: number): LoadBalancer | undefined {
    return this.routes.get(agentRouteKey(modid, cmdid))?.lb;
  }

  isStale(modid: number, cmdid: number): boolean {
    return this.routes.get(agentRouteKey(modid, cmdid))?.stale ?? false;
  }

  /**
   * The entry of a route. The last one found is remembered: a client asks for the same route many
   * times in a row, and the string key of the map would cost an allocation and a hash per request.
   */
  private lookup(modid: number, cmdid: number): RouteEntry | undefined {
    const last = this.lastEntry;
    if (last !== undefined && last.lb.modid === modid && last.lb.cmdid === cmdid) return last;
    const entry = this.routes.get(agentRouteKey(modid, cmdid));
    if (entry !== undefined) this.lastEntry = entry;
    return entry;
  }

  private entryFor(modid: number, cmdid: number): RouteEntry {
    const entry = this.lookup(modid, cmdid);
    if (entry) return entry;
    // Unknown route: an empty balancer in PULLING; requests answer NOEXIST until dns answers.
    const created = this.createEntry(modid, cmdid);
    created.lb.markPulling();
    this.pull(created);
    return created;
  }

  private createEntry(modid: number, cmdid: number): RouteEntry {
    const entry: RouteEntry = {
      lb: new LoadBalancer(modid, cmdid, {
        config: this.config,
        onTransition: this.onTransition,
        table: this.table,
      }),
      stale: false,
      pullStartedMs: 0,
      lastReportMs: this.now(),
    };
    const key = agentRouteKey(modid, cmdid);
    // Seeding a route that exists replaces its balancer: free the old one's rows.
    this.routes.get(key)?.lb.release();
    this.routes.set(key, entry);
    this.lastEntry = undefined;
    return entry;
  }

  private refreshIfDue(entry: RouteEntry, now: number): void {
    if (entry.lb.state === RouteState.Pulling) {
      // dns never answered (lost frame, dns restarted mid-request): ask again.
      if (now - entry.pullStartedMs < this.pullTimeoutMs) return;
      entry.lb.pullAborted();
    }
    if (entry.lb.needsRefresh(now) && entry.lb.markPulling()) this.pull(entry);
  }

  private pull(entry: RouteEntry): void {
    this.stats.pulls++;
    entry.pullStartedMs = this.now();
    if (!this.links.pull(entry.lb.modid, entry.lb.cmdid)) {
      // Not even queued: let the next request try again.
      entry.lb.pullAborted();
    }
  }

  private sendReport(entry: RouteEntry, now: number): void {
    entry.lastReportMs = now;
    const results = entry.lb.snapshotForReport();
    const ts = this.unixNow();
    // A HostCallResult takes at most 32 bytes on the wire: big routes go out in several frames.
    for (let i = 0; i < results.length; i += MAX_RESULTS_PER_REPORT) {
      this.stats.reportsSent++;
      this.links.report({
        modid: entry.lb.modid,
        cmdid: entry.lb.cmdid,
        caller: this.callerIp,
        results: results.slice(i, i + MAX_RESULTS_PER_REPORT),
        ts,
      });
    }
  }
}
