import {
  encodeRouteBody,
  MAX_BODY_LEN,
  routeBodyLength,
  toWireIp,
  writeRouteBody,
  type HostInfo,
} from '../protocol/index.js';
import { routeKey, type RouteKey } from './route-key.js';
import {
  hostKeyOf,
  RouteSnapshot,
  sameBytes,
  yieldToLoop,
  type RouteHostRow,
  type RouteWeightRow,
} from './route-snapshot.js';
import { RowColumns } from './row-columns.js';

/**
 * Accumulates store rows (in any order) and builds a snapshot. Every full reload (issue 17) runs
 * through here, so it keeps no object or array per host or per route: rows go into typed-array
 * columns outside the JS heap, are grouped per route by a counting sort at build time, and each
 * route's body is written straight into a shared arena (no HostInfo objects, no protobufjs
 * writer). build() yields to the event loop every few thousand routes so queries keep being
 * answered.
 */
export class SnapshotBuilder {
  private readonly index = new Map<RouteKey, number>();
  private readonly keys: RouteKey[] = [];
  /** modid, cmdid of each route, by route number. */
  private readonly ids: number[] = [];
  private readonly rows = new RowColumns();
  /** Routes with weighted hosts: per route, host key -> weight. Empty for most tables. */
  private readonly weights = new Map<RouteKey, Map<number, number>>();

  /** Weights of the hosts that do not weigh 1; hosts not in the table are ignored. */
  setWeights(rows: Iterable<RouteWeightRow>): void {
    for (const r of rows) {
      const key = routeKey(r.modid, r.cmdid);
      let m = this.weights.get(key);
      if (m === undefined) {
        m = new Map();
        this.weights.set(key, m);
      }
      m.set(hostKeyOf(r.ip, r.port), r.weight);
    }
  }

  add(rows: Iterable<RouteHostRow>): void {
    // Rows come in id order, which keeps a route's hosts together in most tables: reusing the
    // previous row's route saves building a key string per row.
    let modid = NaN;
    let cmdid = NaN;
    let route = -1;
    for (const r of rows) {
      if (route < 0 || r.modid !== modid || r.cmdid !== cmdid) {
        modid = r.modid;
        cmdid = r.cmdid;
        route = this.routeOf(modid, cmdid);
      }
      this.rows.push(route, toWireIp(r.ip), r.port);
    }
  }

  private routeOf(modid: number, cmdid: number): number {
    const key = routeKey(modid, cmdid);
    let route = this.index.get(key);
    if (route === undefined) {
      route = this.keys.length;
      this.index.set(key, route);
      this.keys.push(key);
      this.ids.push(modid, cmdid);
    }
    return route;
  }

  /**
   * The snapshot of the rows added. When they encode to exactly `previous`'s table (the usual
   * outcome of a periodic full reload), `previous`'s bodies are kept instead of copied into new
   * arenas: a reload then leaves no second table behind as garbage.
   */
  async build(version: number, previous?: RouteSnapshot, yieldEvery = 2_000): Promise<RouteSnapshot> {
    const groups = new RouteGroups(this.rows, this.keys.length);
    const same = previous !== undefined && (await this.encodesTo(previous, groups, yieldEvery));
    const snapshot = same ? previous.atVersion(version) : await this.encode(version, groups, yieldEvery);
    this.clear();
    return snapshot;
  }

  /** Every route encodes to the body `previous` holds for it, and `previous` has no other route. */
  private async encodesTo(
    previous: RouteSnapshot,
    groups: RouteGroups,
    yieldEvery: number,
  ): Promise<boolean> {
    if (this.keys.length !== previous.routeCount || this.rows.length !== previous.hostCount) return false;
    const scratch = Buffer.allocUnsafe(MAX_BODY_LEN);
    for (let route = 0; route < this.keys.length; route++) {
      const old = previous.bodyOf(this.keys[route] as RouteKey);
      const n = groups.hostsOf(route);
      const weights = this.weightsOf(route, groups.hosts, n);
      const modid = this.ids[2 * route] as number;
      const cmdid = this.ids[2 * route + 1] as number;
      const len = routeBodyLength(modid, cmdid, groups.hosts, weights, n);
      // An oversized route takes the full path: it is rare and its truncation is encodeRouteBody's.
      if (old === undefined || len !== old.length || len > MAX_BODY_LEN) return false;
      writeRouteBody(scratch, 0, modid, cmdid, groups.hosts, weights, n);
      if (!sameBytes(scratch, old, len)) return false;
      if ((route + 1) % yieldEvery === 0) await yieldToLoop();
    }
    return true;
  }

  private async encode(version: number, groups: RouteGroups, yieldEvery: number): Promise<RouteSnapshot> {
    const bodies = new Map<RouteKey, Uint8Array>();
    const oversized = new Set<RouteKey>();
    const arena = new Arena();
    for (let route = 0; route < this.keys.length; route++) {
      const key = this.keys[route] as RouteKey;
      const n = groups.hostsOf(route);
      const weights = this.weightsOf(route, groups.hosts, n);
      const modid = this.ids[2 * route] as number;
      const cmdid = this.ids[2 * route + 1] as number;
      const len = routeBodyLength(modid, cmdid, groups.hosts, weights, n);
      if (len <= MAX_BODY_LEN) {
        const body = arena.alloc(len);
        writeRouteBody(body, 0, modid, cmdid, groups.hosts, weights, n);
        bodies.set(key, body);
      } else {
        // Too big for one frame: encodeRouteBody owns the truncation rule (rare, so objects are fine).
        const { body, truncated } = encodeRouteBody(modid, cmdid, hostInfos(groups.hosts, weights, n));
        bodies.set(key, arena.copy(body));
        if (truncated) oversized.add(key);
      }
      if ((route + 1) % yieldEvery === 0) await yieldToLoop();
    }
    return new RouteSnapshot(version, bodies, this.rows.length, oversized);
  }

  /** Per host, its weight (0 for none; a weight of 1 is the default: left out), or undefined. */
  private weightsOf(route: number, hosts: Int32Array, n: number): number[] | undefined {
    const w = this.weights.get(this.keys[route] as RouteKey);
    if (w === undefined) return undefined;
    const out: number[] = [];
    for (let i = 0; i < 2 * n; i += 2) {
      const weight = w.get(hostKeyOf(hosts[i] as number, hosts[i + 1] as number));
      out.push(weight !== undefined && weight !== 1 ? weight : 0);
    }
    return out;
  }

  private clear(): void {
    this.index.clear();
    this.keys.length = 0;
    this.ids.length = 0;
    this.rows.clear();
    this.weights.clear();
  }
}

/**
 * The rows of each route in arrival order, found by a counting sort over the route column: two
 * typed arrays for the whole table instead of an array per route.
 */
class RouteGroups {
  /** [ip, port, ...] of the route last asked for (hostsOf); reused. */
  readonly hosts: Int32Array;
  private readonly start: Int32Array;
  private readonly order: Int32Array;

  constructor(
    private readonly rows: RowColumns,
    routes: number,
  ) {
    const counts = new Int32Array(routes);
    for (let i = 0; i < rows.length; i++) counts[rows.route(i)] = (counts[rows.route(i)] as number) + 1;
    this.start = new Int32Array(routes + 1);
    let largest = 0;
    for (let r = 0; r < routes; r++) {
      const count = counts[r] as number;
      largest = Math.max(largest, count);
      this.start[r + 1] = (this.start[r] as number) + count;
    }
    // counts becomes each route's next free place in `order`.
    counts.set(this.start.subarray(0, routes));
    this.order = new Int32Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const route = rows.route(i);
      const at = counts[route] as number;
      this.order[at] = i;
      counts[route] = at + 1;
    }
    this.hosts = new Int32Array(2 * largest);
  }

  /** Fills `hosts` with the route's hosts; returns how many. */
  hostsOf(route: number): number {
    const from = this.start[route] as number;
    const n = (this.start[route + 1] as number) - from;
    for (let j = 0; j < n; j++) {
      const row = this.order[from + j] as number;
      this.hosts[2 * j] = this.rows.ip(row);
      this.hosts[2 * j + 1] = this.rows.port(row);
    }
    return n;
  }
}

/** Packs many small bodies into 1 MiB buffers: one allocation per MiB instead of one per route. */
class Arena {
  private buf = Buffer.allocUnsafe(0);
  private used = 0;

  /** `len` bytes of the arena, to be written by the caller. */
  alloc(len: number): Uint8Array {
    if (this.used + len > this.buf.length) {
      this.buf = Buffer.allocUnsafe(Math.max(ARENA_BYTES, len));
      this.used = 0;
    }
    const view = this.buf.subarray(this.used, this.used + len);
    this.used += len;
    return view;
  }

  copy(bytes: Uint8Array): Uint8Array {
    const view = this.alloc(bytes.length);
    view.set(bytes);
    return view;
  }
}

const ARENA_BYTES = 1 << 20;

function hostInfos(hosts: Int32Array, weights: readonly number[] | undefined, n: number): HostInfo[] {
  const out: HostInfo[] = [];
  for (let j = 0; j < n; j++) {
    const h: HostInfo = { ip: hosts[2 * j] as number, port: hosts[2 * j + 1] as number };
    const weight = weights?.[j] ?? 0;
    if (weight !== 0) h.weight = weight;
    out.push(h);
  }
  return out;
}
