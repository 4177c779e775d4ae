import { encodeMessage, MsgId, toWireIp, type HostInfo } from '../protocol/index.js';
import { routeKey, type RouteKey } from './route-key.js';

/** One host row as the store yields it: ip is the unsigned INET_ATON number. */
export interface RouteHostRow {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
}

/**
 * The whole route table at one version: immutable once built. Queries read the current snapshot;
 * a reload builds a new one and the service swaps the reference in one step, so a reader never
 * sees a half-loaded table (DESIGN §4).
 *
 * Each route's GetRouteResponse body is encoded lazily on first request and cached on the
 * snapshot (the cache is the only mutation, and it is invisible to readers).
 */
export class RouteSnapshot {
  readonly version: number;
  readonly loadedAt: number;
  private readonly routes: ReadonlyMap<RouteKey, readonly HostInfo[]>;
  private readonly bodies = new Map<RouteKey, Uint8Array>();
  readonly hostCount: number;

  constructor(version: number, routes: ReadonlyMap<RouteKey, readonly HostInfo[]>, loadedAt = Date.now()) {
    this.version = version;
    this.routes = routes;
    this.loadedAt = loadedAt;
    let n = 0;
    for (const hosts of routes.values()) n += hosts.length;
    this.hostCount = n;
  }

  static empty(): RouteSnapshot {
    return new RouteSnapshot(0, new Map(), 0);
  }

  get routeCount(): number {
    return this.routes.size;
  }

  hosts(modid: number, cmdid: number): readonly HostInfo[] {
    return this.routes.get(routeKey(modid, cmdid)) ?? EMPTY;
  }

  /**
   * The encoded GetRouteResponse body of a route (the same body serves msgid 2 and 8). Unknown
   * routes answer with an empty host list, as the original did.
   */
  responseBody(modid: number, cmdid: number): Uint8Array {
    const key = routeKey(modid, cmdid);
    let body = this.bodies.get(key);
    if (body === undefined) {
      const host = (this.routes.get(key) ?? EMPTY) as HostInfo[];
      body = encodeMessage(MsgId.GetRouteResponse, { modid, cmdid, host });
      // Unknown routes are not cached: a flood of random ids must not grow memory.
      if (this.routes.has(key)) this.bodies.set(key, body);
    }
    return body;
  }

  /** A new snapshot with the given routes replaced (an empty list removes the route). */
  withRoutes(version: number, changed: ReadonlyMap<RouteKey, readonly HostInfo[]>): RouteSnapshot {
    const next = new Map(this.routes);
    for (const [key, hosts] of changed) {
      if (hosts.length === 0) next.delete(key);
      else next.set(key, hosts);
    }
    return new RouteSnapshot(version, next);
  }

  *entries(): IterableIterator<[RouteKey, readonly HostInfo[]]> {
    yield* this.routes.entries();
  }
}

const EMPTY: readonly HostInfo[] = Object.freeze([]);

/** Accumulates store rows (in any order) into the route map of a snapshot. */
export class SnapshotBuilder {
  private readonly routes = new Map<RouteKey, HostInfo[]>();

  add(rows: Iterable<RouteHostRow>): void {
    for (const r of rows) {
      const key = routeKey(r.modid, r.cmdid);
      let hosts = this.routes.get(key);
      if (hosts === undefined) {
        hosts = [];
        this.routes.set(key, hosts);
      }
      hosts.push({ ip: toWireIp(r.ip), port: r.port });
    }
  }

  build(version: number): RouteSnapshot {
    return new RouteSnapshot(version, this.routes);
  }
}
