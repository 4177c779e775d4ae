import type { Logger } from '../log/silent.js';
import { loadNative, nativeStatus } from '../native/index.js';
import { agentPortIndex, ipToWire, isValidIpv4 } from '../protocol/index.js';
import {
  fastPathSegmentName,
  fastPathSegmentPrefix,
  nextPowerOfTwo,
  REQ_REBASE_AT,
} from '../protocol/shm-table.js';
import type { LazyRegistry } from '../service/lazy-registry.js';
import type { AgentCore } from './agent-core.js';
import { agentRouteKey } from './agent-core.js';
import type { HostView } from './host-state.js';
import {
  DEFAULT_FAST_PATH_HOSTS,
  DEFAULT_FAST_PATH_RING,
  DEFAULT_FAST_PATH_ROUTES,
  FastPathSegment,
  reapOrphanSegments,
  type Consumed,
  type TableHost,
  type UnpublishedReason,
} from './fast-path-segment.js';

export { DEFAULT_FAST_PATH_HOSTS, DEFAULT_FAST_PATH_RING, DEFAULT_FAST_PATH_ROUTES };
/**
 * Drain period while results arrive, for a second after the last one, and once quiet for longer
 * (all within issue 18's 10 ms; a quiet agent wakes ~125 times a second instead of ~250).
 */
export const ACTIVE_DRAIN_MS = 1;
export const IDLE_DRAIN_MS = 4;
export const QUIET_DRAIN_MS = 8;
const QUIET_AFTER_MS = 1_000;
/** Request counters are scanned this often: route refresh on use, counter rebase. */
const SCAN_MS = 1_000;

/** `[agent] fast_path*` settings and, for a shard thread, where its ports sit in the agent's list. */
export interface FastPathSettings {
  /** Routes one segment publishes at most (more stay on UDP). Default 4096. */
  routes?: number;
  /** Hosts a published route may have (bigger routes stay on UDP). Default 64. */
  hostsPerRoute?: number;
  /** Result ring entries per segment (rounded up to a power of two). Default 65,536. */
  ringEntries?: number;
  /** Global indexes of this service's ports in the agent's port list (shard threads). */
  portIndexes?: readonly number[];
  /** Ports of the whole agent (shard threads). */
  portCount?: number;
}

export interface AgentFastPathOptions extends FastPathSettings {
  core: AgentCore;
  /** This service's bound ports: one segment each. */
  ports: readonly number[];
  bindHost: string;
  probeNum: number;
  logger: Logger;
}

export interface FastPathStats {
  /** getHost answered from the tables (counted when the agent rewrites a slot, and every second). */
  getHost: number;
  probes: number;
  reports: number;
  tornEntries: number;
  skippedEntries: number;
  leftOut: Record<UnpublishedReason | 'weighted', number>;
}

/**
 * The agent's fast path (issue 18): one shared-memory segment per port, holding every route this
 * service owns whose port that is. The balancers stay the only place decisions are made: the agent
 * rewrites a route's slot whenever its balancer changes (a host changed state, the route changed),
 * drains the result rings every ACTIVE_DRAIN_MS..IDLE_DRAIN_MS and applies each result through
 * AgentCore.report, the very code UDP reports take, so a host fails over after the same number of
 * failures whichever way its results came.
 */
export class AgentFastPath {
  readonly stats: FastPathStats = {
    getHost: 0,
    probes: 0,
    reports: 0,
    tornEntries: 0,
    skippedEntries: 0,
    leftOut: { 'table-full': 0, 'too-many-hosts': 0, weighted: 0 },
  };
  private readonly core: AgentCore;
  private readonly segments: FastPathSegment[];
  private readonly portIndexes: readonly number[];
  private readonly portCount: number;
  private readonly dirty = new Map<string, { modid: number; cmdid: number }>();
  /** Per published route: the calls of its current slot counter already counted in stats. */
  private readonly seen = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private nextScanMs = 0;
  private lastWorkMs = 0;
  private readonly sink = (m: number, c: number, ip: number, port: number, rc: number, tc?: number): void =>
    this.core.report(m, c, ip, port, rc, tc);

  private constructor(opts: AgentFastPathOptions, segments: FastPathSegment[]) {
    this.core = opts.core;
    this.segments = segments;
    this.portIndexes = opts.portIndexes ?? opts.ports.map((_, i) => i);
    this.portCount = opts.portCount ?? opts.ports.length;
  }

  /**
   * Creates the segments and starts draining; undefined (with one warning) when the native addon is
   * missing or a segment cannot be created: the agent then serves over UDP only.
   */
  static start(opts: AgentFastPathOptions): AgentFastPath | undefined {
    const addon = loadNative();
    if (!addon) {
      opts.logger.warn({ reason: nativeStatus().reason }, 'fast path off: native addon unavailable');
      return undefined;
    }
    const uid = process.getuid?.() ?? 0;
    const reaped = reapOrphanSegments(addon, fastPathSegmentPrefix(uid));
    if (reaped > 0) opts.logger.info({ segments: reaped }, 'fast path: removed segments of agents that died');
    const segments: FastPathSegment[] = [];
    try {
      for (const port of opts.ports) {
        const seg = FastPathSegment.create(addon, {
          name: fastPathSegmentName(uid, port),
          port,
          probeNum: opts.probeNum,
          bindIp: isValidIpv4(opts.bindHost) ? ipToWire(opts.bindHost) : 0,
          routeSlots: opts.routes ?? DEFAULT_FAST_PATH_ROUTES,
          hostsPerRoute: opts.hostsPerRoute ?? DEFAULT_FAST_PATH_HOSTS,
          ringEntries: nextPowerOfTwo(opts.ringEntries ?? DEFAULT_FAST_PATH_RING),
        });
        if (seg.replacedFormer)
          opts.logger.info({ segment: seg.name }, 'fast path: replaced a former segment');
        segments.push(seg);
      }
    } catch (err) {
      for (const s of segments) s.close();
      opts.logger.warn({ err }, 'fast path off: segment could not be created');
      return undefined;
    }
    const fp = new AgentFastPath(opts, segments);
    for (const r of opts.core.knownRoutes()) fp.markDirty(r.modid, r.cmdid);
    fp.schedule(0);
    opts.logger.info(
      { segments: segments.map((s) => s.name), bytes: segments[0]?.bytes },
      'fast path: routes published in shared memory',
    );
    return fp;
  }

  /** A route's balancer changed (hosts, a host's state, or the route went away): rewrite its slot soon. */
  markDirty(modid: number, cmdid: number): void {
    this.dirty.set(agentRouteKey(modid, cmdid), { modid, cmdid });
  }

  /** Routes published, over every segment. */
  get routes(): number {
    return this.segments.reduce((n, s) => n + s.routes, 0);
  }

  get segmentNames(): string[] {
    return this.segments.map((s) => s.name);
  }

  /**
   * Applies every committed result, rewrites changed slots and beats the heartbeat. Runs from the
   * drain timer; the agent calls it once more at close. True when there was work.
   */
  drainNow(): boolean {
    const wall = Date.now();
    const now = performance.now();
    let work = 0;
    for (const seg of this.segments) {
      if (seg.closed) continue;
      seg.heartbeat(wall);
      const c = seg.drain(this.sink, now);
      this.stats.reports += c.applied;
      this.stats.tornEntries += c.torn;
      this.stats.skippedEntries += c.skipped;
      work += c.applied + c.torn + c.skipped;
    }
    this.flush();
    if (now >= this.nextScanMs) {
      this.nextScanMs = now + SCAN_MS;
      this.scan();
    }
    return work > 0;
  }

  /** Final drain, then every segment closed (clients go back to UDP) and unlinked. Idempotent. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.segments.every((s) => s.closed)) return;
    this.drainNow();
    for (const s of this.segments) s.close();
  }

  registerMetrics(registry: LazyRegistry): void {
    const { gauge, counter } = registry.live();
    const st = this.stats;
    gauge('lars_agent_fastpath_routes', 'routes published in the fast-path shared memory', () => this.routes);
    counter('lars_agent_fastpath_gethost_total', 'getHost answered from shared memory', () => st.getHost);
    counter('lars_agent_fastpath_probes_total', 'trial calls given from shared memory', () => st.probes);
    counter('lars_agent_fastpath_reports_total', 'call results applied from the rings', () => st.reports);
    counter(
      'lars_agent_fastpath_torn_entries_total',
      'ring entries dropped: check word wrong (overwritten by a very late writer)',
      () => st.tornEntries,
    );
    counter(
      'lars_agent_fastpath_skipped_entries_total',
      'ring positions skipped: reserved but not committed within 50 ms (writer died or stalled)',
      () => st.skippedEntries,
    );
    counter(
      'lars_agent_fastpath_left_out_total',
      'route rewrites that left the route on UDP (weighted, too many hosts, table full)',
      () => st.leftOut['table-full'] + st.leftOut['too-many-hosts'] + st.leftOut.weighted,
    );
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      const now = performance.now();
      if (this.drainNow()) this.lastWorkMs = now;
      const since = now - this.lastWorkMs;
      this.schedule(since === 0 ? ACTIVE_DRAIN_MS : since < QUIET_AFTER_MS ? IDLE_DRAIN_MS : QUIET_DRAIN_MS);
    }, ms);
    this.timer.unref();
  }

  private segmentFor(modid: number, cmdid: number): FastPathSegment | undefined {
    const local = this.portIndexes.indexOf(agentPortIndex(modid, cmdid, this.portCount));
    const seg = local < 0 ? undefined : this.segments[local];
    return seg && !seg.closed ? seg : undefined;
  }

  private flush(): void {
    if (this.dirty.size === 0) return;
    for (const { modid, cmdid } of this.dirty.values()) {
      const seg = this.segmentFor(modid, cmdid);
      if (seg) this.rewrite(seg, modid, cmdid);
    }
    this.dirty.clear();
  }

  private rewrite(seg: FastPathSegment, modid: number, cmdid: number): void {
    const lb = this.core.balancer(modid, cmdid);
    const key = agentRouteKey(modid, cmdid);
    if (!lb || lb.size === 0) {
      this.account(key, seg.unpublish(modid, cmdid));
      return;
    }
    if (!lb.unweighted) {
      // Smooth weighted round robin is not in the table (issue 15's weights): UDP for this route.
      if (seg.isPublished(modid, cmdid)) this.account(key, seg.unpublish(modid, cmdid));
      this.stats.leftOut.weighted += 1;
      return;
    }
    const q = lb.queues();
    const res = seg.publish(modid, cmdid, q.idle.map(wire), q.overload.map(wire));
    this.account(key, res);
    if (res.refused) this.stats.leftOut[res.refused] += 1;
  }

  /** A slot's counter was reset: count the calls the scan had not counted yet. */
  private account(key: string, c: Consumed): void {
    this.stats.getHost += c.calls - (this.seen.get(key) ?? 0);
    this.stats.probes += c.probes;
    this.seen.delete(key);
  }

  /**
   * Routes used through shared memory never reach AgentCore.getHost: let them refresh from dns
   * after update_timeout as a UDP request would, and rebase counters long before they could wrap.
   */
  private scan(): void {
    for (const seg of this.segments) {
      if (seg.closed) continue;
      for (const { modid, cmdid } of seg.published()) {
        const key = agentRouteKey(modid, cmdid);
        const calls = seg.pendingCalls(modid, cmdid);
        const before = this.seen.get(key) ?? 0;
        if (calls > before) {
          this.stats.getHost += calls - before;
          this.seen.set(key, calls);
          this.core.touch(modid, cmdid);
        }
        if (calls > REQ_REBASE_AT) this.markDirty(modid, cmdid);
      }
    }
  }
}

function wire(h: HostView): TableHost {
  return { ip: h.ip | 0, port: h.port };
}
