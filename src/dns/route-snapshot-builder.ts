import {
  encodeRouteBody,
  MAX_BODY_LEN,
  routeBodyLength,
  toWireIp,
  writeRouteBody,
  type HostInfo,
} from '../protocol/index.js';
import { parseRouteKey, routeKey, type RouteKey } from './route-key.js';
import {
  hostKeyOf,
  RouteSnapshot,
  sameBytes,
  yieldToLoop,
  type RouteHostRow,
  type RouteWeightRow,
} from './route-snapshot.js';

/**
 * Accumulates store rows (in any order) and builds a snapshot. Rows are grouped per route as flat
 * [ip, port, ip, port, ...] arrays (no object per host); build() writes each route's body straight
 * into a shared arena (no HostInfo objects, no protobufjs writer), yielding to the event loop every few thousand routes so queries keep being answered.
 */
export class SnapshotBuilder {
  private readonly routes = new Map<RouteKey, number[]>();
  /** Routes with weighted hosts: per route, host key -> weight. Empty for most tables. */
  private readonly weights = new Map<RouteKey, Map<number, number>>();
  private hostCount = 0;

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
    // previous row's array saves building a key string per row (issue 17: reload garbage).
    let modid = NaN;
    let cmdid = NaN;
    let flat: number[] | undefined;
    for (const r of rows) {
      if (flat === undefined || r.modid !== modid || r.cmdid !== cmdid) {
        modid = r.modid;
        cmdid = r.cmdid;
        flat = this.hostsOf(routeKey(modid, cmdid));
      }
      flat.push(toWireIp(r.ip), r.port);
      this.hostCount++;
    }
  }

  private hostsOf(key: RouteKey): number[] {
    let flat = this.routes.get(key);
    if (flat === undefined) {
      flat = [];
      this.routes.set(key, flat);
    }
    return flat;
  }

  /**
   * The snapshot of the rows added. When they encode to exactly `previous`'s table (the usual
   * outcome of a periodic full reload), `previous`'s bodies are kept instead of copied into new
   * arenas: a reload then leaves no second table behind as garbage (issue 17).
   */
  async build(version: number, previous?: RouteSnapshot, yieldEvery = 2_000): Promise<RouteSnapshot> {
    if (previous && (await this.encodesTo(previous, yieldEvery))) {
      this.clear();
      return previous.atVersion(version);
    }
    return this.encode(version, yieldEvery);
  }

  /** Every route encodes to the body `previous` holds for it, and `previous` has no other route. */
  private async encodesTo(previous: RouteSnapshot, yieldEvery: number): Promise<boolean> {
    if (this.routes.size !== previous.routeCount || this.hostCount !== previous.hostCount) return false;
    const scratch = Buffer.allocUnsafe(MAX_BODY_LEN);
    let n = 0;
    for (const [key, flat] of this.routes) {
      const old = previous.bodyOf(key);
      const { modid, cmdid } = parseRouteKey(key);
      const weights = this.weightsOf(key, flat);
      const len = routeBodyLength(modid, cmdid, flat, weights);
      // An oversized route takes the full path: it is rare and its truncation is encodeRouteBody's.
      if (old === undefined || len !== old.length || len > MAX_BODY_LEN) return false;
      writeRouteBody(scratch, 0, modid, cmdid, flat, weights);
      if (!sameBytes(scratch.subarray(0, len), old)) return false;
      if (++n % yieldEvery === 0) await yieldToLoop();
    }
    return true;
  }

  private weightsOf(key: RouteKey, flat: readonly number[]): number[] | undefined {
    const w = this.weights.get(key);
    return w && weightsOf(flat, w);
  }

  private clear(): void {
    this.routes.clear();
    this.weights.clear();
  }

  private async encode(version: number, yieldEvery: number): Promise<RouteSnapshot> {
    const bodies = new Map<RouteKey, Uint8Array>();
    const oversized = new Set<RouteKey>();
    const arena = new Arena();
    let n = 0;
    for (const [key, flat] of this.routes) {
      const { modid, cmdid } = parseRouteKey(key);
      const weights = this.weightsOf(key, flat);
      const len = routeBodyLength(modid, cmdid, flat, weights);
      if (len <= MAX_BODY_LEN) {
        const body = arena.alloc(len);
        writeRouteBody(body, 0, modid, cmdid, flat, weights);
        bodies.set(key, body);
      } else {
        // Too big for one frame: encodeRouteBody owns the truncation rule (rare, so objects are fine).
        const { body, truncated } = encodeRouteBody(modid, cmdid, hostInfos(flat, weights));
        bodies.set(key, arena.copy(body));
        if (truncated) oversized.add(key);
      }
      if (++n % yieldEvery === 0) await yieldToLoop();
    }
    this.clear();
    return new RouteSnapshot(version, bodies, this.hostCount, oversized);
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

/** Per host of `flat`, its weight from `w`, 0 for none (a weight of 1 is the default: left out). */
function weightsOf(flat: readonly number[], w: ReadonlyMap<number, number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < flat.length; i += 2) {
    const weight = w.get(hostKeyOf(flat[i] as number, flat[i + 1] as number));
    out.push(weight !== undefined && weight !== 1 ? weight : 0);
  }
  return out;
}

function hostInfos(flat: readonly number[], weights: readonly number[] | undefined): HostInfo[] {
  const hosts: HostInfo[] = [];
  for (let i = 0; i < flat.length; i += 2) {
    const h: HostInfo = { ip: flat[i] as number, port: flat[i + 1] as number };
    const weight = weights?.[i >> 1] ?? 0;
    if (weight !== 0) h.weight = weight;
    hosts.push(h);
  }
  return hosts;
}
