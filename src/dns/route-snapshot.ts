import { decodeMessage, encodeRouteBody, MsgId, type HostInfo } from '../protocol/index.js';
import { parseRouteKey, routeKey, type RouteKey } from './route-key.js';

/** One host row as the store yields it: ip is the unsigned INET_ATON number. */
export interface RouteHostRow {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
}

/** A host whose weight is not 1 (issue 15). */
export interface RouteWeightRow extends RouteHostRow {
  weight: number;
}

/** Per-host key inside one route: unsigned ip * 2^16 + port (exact below 2^48). */
export const hostKeyOf = (ip: number, port: number): number => (ip >>> 0) * 65536 + port;

/**
 * The whole route table at one version: immutable once built. Queries read the current snapshot;
 * a reload builds a new one and the service swaps the reference in one step, so a reader never
 * sees a half-loaded table (DESIGN §4).
 *
 * Each route is held only as its encoded GetRouteResponse body (the same body answers msgid 2 and
 * 8), packed into large shared buffers. That is what every query sends, so answering costs no
 * encoding, and it keeps 1M hosts in about a third of the memory of one object per host — which
 * matters because a reload holds two snapshots at once.
 */
export class RouteSnapshot {
  readonly version: number;
  readonly loadedAt: number;
  readonly hostCount: number;
  /** Routes whose answer holds only the hosts that fit one frame (see encodeRouteBody). */
  readonly oversized: ReadonlySet<RouteKey>;
  private readonly bodies: ReadonlyMap<RouteKey, Uint8Array>;

  constructor(
    version: number,
    bodies: ReadonlyMap<RouteKey, Uint8Array>,
    hostCount: number,
    oversized: ReadonlySet<RouteKey> = new Set(),
    loadedAt = Date.now(),
  ) {
    this.version = version;
    this.bodies = bodies;
    this.hostCount = hostCount;
    this.oversized = oversized;
    this.loadedAt = loadedAt;
  }

  static empty(): RouteSnapshot {
    return new RouteSnapshot(0, new Map(), 0, new Set(), 0);
  }

  get routeCount(): number {
    return this.bodies.size;
  }

  has(modid: number, cmdid: number): boolean {
    return this.bodies.has(routeKey(modid, cmdid));
  }

  /**
   * The encoded GetRouteResponse body of a route. Unknown routes answer with an empty host list,
   * as the original did (encoded per call: a flood of random ids must not grow memory).
   */
  responseBody(modid: number, cmdid: number): Uint8Array {
    return this.bodies.get(routeKey(modid, cmdid)) ?? encodeRouteBody(modid, cmdid, []).body;
  }

  /** The encoded body of a route by key, undefined when the route has no hosts. */
  bodyOf(key: RouteKey): Uint8Array | undefined {
    return this.bodies.get(key);
  }

  /** The same table at another version (a full reload that found nothing changed). */
  atVersion(version: number): RouteSnapshot {
    return new RouteSnapshot(version, this.bodies, this.hostCount, this.oversized);
  }

  /** The hosts of a route (decoded; off the hot path: tests, diagnostics). */
  hosts(modid: number, cmdid: number): HostInfo[] {
    const body = this.bodies.get(routeKey(modid, cmdid));
    return body ? decodeHosts(body) : [];
  }

  /** A new snapshot with the given routes replaced (an empty list removes the route). */
  withRoutes(version: number, changed: ReadonlyMap<RouteKey, readonly HostInfo[]>): RouteSnapshot {
    const next = new Map(this.bodies);
    const oversized = new Set(this.oversized);
    let hostCount = this.hostCount;
    for (const [key, hosts] of changed) {
      const old = next.get(key);
      if (old) hostCount -= decodeHosts(old).length;
      oversized.delete(key);
      if (hosts.length === 0) {
        next.delete(key);
      } else {
        const { modid, cmdid } = parseRouteKey(key);
        const { body, truncated } = encodeRouteBody(modid, cmdid, hosts);
        next.set(key, body);
        if (truncated) oversized.add(key);
        hostCount += hosts.length;
      }
    }
    return new RouteSnapshot(version, next, hostCount, oversized);
  }

  /**
   * Routes whose answer differs between this snapshot and `other` (either side may lack it).
   * Yields to the event loop every `yieldEvery` routes: on 100k routes a single pass would stall
   * queries for tens of milliseconds.
   */
  async diff(other: RouteSnapshot, yieldEvery = 10_000): Promise<RouteKey[]> {
    // A reload that found nothing changed shares the bodies (atVersion): nothing to walk, and
    // walking 100k entries allocates a pair per entry (issue 17).
    if (other.bodies === this.bodies) return [];
    const out: RouteKey[] = [];
    let n = 0;
    for (const [key, body] of this.bodies) {
      const o = other.bodies.get(key);
      if (o !== body && (o === undefined || !sameBytes(o, body))) out.push(key);
      if (++n % yieldEvery === 0) await yieldToLoop();
    }
    for (const key of other.bodies.keys()) {
      if (!this.bodies.has(key)) out.push(key);
      if (++n % yieldEvery === 0) await yieldToLoop();
    }
    return out;
  }
}

export const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The first `len` bytes of `a` are `b` (len defaults to a's length: no subarray view to compare a prefix). */
export function sameBytes(a: Uint8Array, b: Uint8Array, len = a.length): boolean {
  if (len !== b.length) return false;
  for (let i = 0; i < len; i++) if (a[i] !== b[i]) return false;
  return true;
}

function decodeHosts(body: Uint8Array): HostInfo[] {
  return decodeMessage(MsgId.GetRouteResponse, body).host;
}
