import type { HostCallResult, HostInfo } from '../protocol/messages.js';
import { RetCode } from '../protocol/retcode.js';
import {
  HostState,
  HostTable,
  NO_HOST,
  TransitionReason,
  type HostTransitionListener,
  type HostView,
} from './host-state.js';
import { DEFAULT_LOAD_BALANCE_CONFIG, type LoadBalanceConfig } from './lb-config.js';

/**
 * The agent's load balancer of one route (modid, cmdid), DESIGN §5. Pure: no I/O, no timers, no
 * clock of its own. Every entry point takes `now` (milliseconds from a monotonic clock the agent
 * injects) and first applies the time-based transitions due at `now` (idle-window end, overload
 * timeout), so the outcome never depends on whether a `tick(now)` happened to run just before.
 *
 * Arithmetic of the err_rate rule (checked after each failure of an idle host; the failure is
 * already counted): verr / (vsucc + verr) > errRate. A fresh host has vsucc = initSuccCnt = 180, so
 * after s successes and e one-unit errors it is overloaded by rate iff e / (180 + s + e) > 0.1, i.e.
 * e > (180 + s) / 9. For s = 10: e > 21.11, the boundary is e = 22 (21/211 = 0.0995 does not
 * overload, 22/212 = 0.1038 does). For s = 500: e > 75.56, the boundary is e = 76 (75/755 = 0.0993,
 * 76/756 = 0.1005). DESIGN §5's "21" and "75" are those real-valued thresholds rounded down, not the
 * first error count that overloads; no reading of the formula as stated (`>` or `>=`, with or
 * without the 180, ratio to total or to successes) makes both 21 and 75 exact, so we implement the
 * formula and test 22 and 76. Those boundaries also need the errors spread out (at most
 * continErrLimit - 1 = 9 in a row), or the consecutive-error rule overloads the host at the 10th
 * consecutive failure first; the order of successes and errors does not change the final ratio.
 */

export const RouteState = {
  /** Served from its hosts; may be pulled from dns when stale. */
  New: 'new',
  /** A pull from dns is in flight; no other pull is started. */
  Pulling: 'pulling',
} as const;

export type RouteState = (typeof RouteState)[keyof typeof RouteState];

export interface GetHostResult {
  readonly retcode: typeof RetCode.SUCC | typeof RetCode.OVERLOAD | typeof RetCode.NOEXIST;
  /** Wire form (int32 ip); present iff retcode is SUCC. */
  readonly host?: HostInfo;
  /** The host is an overloaded host given a trial call. */
  readonly probe: boolean;
}

/**
 * A host as pick() hands it out: `ip` unsigned. Valid until this balancer, or another sharing its
 * HostTable, is next called.
 */
export interface PickedHost {
  readonly ip: number;
  readonly port: number;
}

export interface RouteUpdateResult {
  readonly added: number;
  readonly removed: number;
  readonly kept: number;
  /** Entries skipped because their ip or port is out of range (or repeated). */
  readonly skipped: number;
  /** The route has no hosts now: the caller removes it. */
  readonly empty: boolean;
  /** Kept hosts whose weight changed (issue 15); present only when there are some. */
  readonly reweighted?: number;
}

export interface LoadBalancerOptions {
  /** Defaults to DEFAULT_LOAD_BALANCE_CONFIG; share one frozen config between routes. */
  readonly config?: LoadBalanceConfig;
  /** Every host state change of this route (tracing, metrics). */
  readonly onTransition?: HostTransitionListener;
  /** Where the route's hosts live; an agent shares one between its routes. Default: a table of its own. */
  readonly table?: HostTable;
}

const NOEXIST: GetHostResult = Object.freeze({ retcode: RetCode.NOEXIST, probe: false });
const OVERLOAD: GetHostResult = Object.freeze({ retcode: RetCode.OVERLOAD, probe: false });

/**
 * Map key of a host: unsigned ip * 2^16 + port. Exact in a double (< 2^48) and, unlike an
 * `"ip:port"` string, allocates nothing on the report path.
 */
function hostKey(unsignedIp: number, port: number): number {
  return unsignedIp * 65536 + port;
}

/** Routes with more hosts than this get a Map from hostKey to host; smaller ones are searched. */
const INDEX_ABOVE = 16;

function isPort(port: number): boolean {
  return (port & 0xffff) === port;
}

function isIp(ip: number): boolean {
  return Number.isInteger(ip) && ip >= -0x80000000 && ip <= 0xffffffff;
}

/** HostInfo.weight: absent or 0 means 1 (issue 15). */
function weightOf(h: HostInfo): number {
  const w = h.weight;
  return w !== undefined && Number.isInteger(w) && w > 0 ? w : 1;
}

export class LoadBalancer {
  readonly modid: number;
  readonly cmdid: number;
  readonly config: LoadBalanceConfig;
  /** Route refresh state; the agent drives it with markPulling / pullAborted / updateRoute. */
  state: RouteState = RouteState.New;
  /** When the route was last updated from dns; -Infinity until the first update. */
  lastUpdateMs = Number.NEGATIVE_INFINITY;

  private readonly table: HostTable;
  /** The hosts' slots in `table`, in route order. */
  private list: number[] = [];
  /**
   * Lookup by hostKey, kept only for routes of more than INDEX_ABOVE hosts: a small route is
   * searched directly, which costs about the same and saves a Map per route (10,000 routes hold
   * 10,000 of them; issue 17's footprint).
   */
  private index: Map<number, number> | undefined;
  /** Head slots of the idle and overload queues (HostTable.enqueue), NO_HOST when empty. */
  private idle = NO_HOST;
  private overload = NO_HOST;
  private overloaded = 0;
  private readonly onTransition: HostTransitionListener | undefined;
  private readonly idleMs: number;
  private readonly overloadMs: number;
  private readonly updateMs: number;
  /** getHost calls modulo probeNum; see getHost. */
  private requests = 0;
  /** Earliest time a host's window or overload period may end; before it, time checks are skipped. */
  private nextDueMs = Number.POSITIVE_INFINITY;
  /** Hosts whose weight is not 1: while 0, picks are the plain queue rotation. */
  private weighted = 0;
  private changed = false;
  private stateChanged = false;
  /** Whether the last pick() answered a probe. */
  lastPickProbe = false;

  constructor(modid: number, cmdid: number, options: LoadBalancerOptions = {}) {
    this.modid = modid;
    this.cmdid = cmdid;
    this.config = options.config ?? DEFAULT_LOAD_BALANCE_CONFIG;
    this.onTransition = options.onTransition;
    this.table = options.table ?? new HostTable();
    this.idleMs = this.config.idleTimeoutS * 1000;
    this.overloadMs = this.config.overloadTimeoutS * 1000;
    this.updateMs = this.config.updateTimeoutS * 1000;
  }

  /**
   * Picks a host for one call.
   *
   * Probe counting: every call counts, whatever it answers (NOEXIST and OVERLOAD included); the
   * counter starts at 0 for a new balancer and is never reset. Call n (1-based) is a probe slot when
   * n % probeNum === 0, i.e. calls probeNum, 2·probeNum, ... In a probe slot, if the overload queue
   * is non-empty, its head is answered (and moved to its tail); otherwise the slot is served like
   * any other call. Other calls take the idle queue's head (moved to its tail); with no idle host
   * they answer OVERLOAD. A route without hosts answers NOEXIST.
   *
   * Weights (issue 15): when some host of the route weighs more than 1, non-probe calls pick among
   * the idle hosts by smooth weighted round robin instead (pickWeighted). With every weight 1 the
   * sequence is exactly the rotation above.
   */
  getHost(now: number): GetHostResult {
    const h = this.pick(now);
    if (h === undefined) return NOEXIST;
    if (h === null) return OVERLOAD;
    return { retcode: RetCode.SUCC, host: { ip: h.ip | 0, port: h.port }, probe: this.lastPickProbe };
  }

  /**
   * getHost without allocating (the agent's hot path, issue 17): the chosen host itself (read its
   * `ip` — unsigned — and `port` at once, before the balancer changes), null for OVERLOAD, undefined
   * for NOEXIST (no hosts). `lastPickProbe` tells whether it was a probe. Same sequence as getHost.
   */
  pick(now: number): PickedHost | null | undefined {
    this.advance(now);
    this.requests = this.requests + 1 === this.config.probeNum ? 0 : this.requests + 1;
    if (this.list.length === 0) return undefined;
    const probe = this.requests === 0 && this.overload !== NO_HOST;
    this.lastPickProbe = probe;
    let h: number;
    if (probe) {
      h = this.overload;
      this.overload = this.table.next[h]!; // round robin: the queues are circular, the head becomes the tail
    } else {
      h = this.weighted === 0 ? this.rotateIdle() : this.pickWeighted();
    }
    return h === NO_HOST ? null : this.table.picked(h);
  }

  /**
   * Records the result of one call to ip:port (ip in wire int32 or unsigned form). retcode 0 is a
   * success, anything else a failure; a failure's `timecostMs` amplifies its virtual errors
   * (max(1, floor(timecostMs / 100))). Returns false, changing nothing, when the host is not in the
   * route (a late report after a route update, or a foreign host): the agent counts those.
   */
  report(ip: number, port: number, retcode: number, timecostMs: number | undefined, now: number): boolean {
    this.advance(now);
    if (!isPort(port)) return false;
    const h = this.find(ip >>> 0, port);
    if (h === NO_HOST) return false;
    this.changed = true;
    if (retcode === RetCode.SUCC) {
      const reason = this.table.recordSuccess(h, this.config);
      if (reason !== undefined) this.transition(h, HostState.Idle, reason, now);
    } else {
      const reason = this.table.recordFailure(h, this.config, timecostMs);
      if (reason !== undefined) this.transition(h, HostState.Overload, reason, now);
    }
    return true;
  }

  /** Applies the time-based transitions due at `now`, so quiet hosts' windows and overloads expire. */
  tick(now: number): void {
    this.advance(now);
  }

  /**
   * Replaces the route's host list with the one dns sent. Hosts that remain keep their state and
   * counters (and queue position); new hosts join the idle queue's tail, initialised at `now`;
   * vanished hosts leave their queue and the lookup map, so they are never picked or probed again.
   * Sets lastUpdateMs = now and state NEW.
   */
  updateRoute(hosts: Iterable<HostInfo>, now: number): RouteUpdateResult {
    this.advance(now);
    const wanted = new Map<number, { ip: number; port: number; weight: number }>();
    let skipped = 0;
    for (const h of hosts) {
      const { ip, port } = h;
      if (!isIp(ip) || !isPort(port)) {
        skipped += 1;
        continue;
      }
      const key = hostKey(ip >>> 0, port);
      if (wanted.has(key)) skipped += 1;
      else wanted.set(key, { ip: ip >>> 0, port, weight: weightOf({ ip, port, weight: h.weight }) });
    }
    let removed = 0;
    let reweighted = 0;
    const table = this.table;
    const kept: number[] = [];
    for (const h of this.list) {
      const key = hostKey(table.ip[h]!, table.port[h]!);
      const w = wanted.get(key);
      if (w !== undefined) {
        if (w.weight !== table.weight[h]) {
          this.setWeight(h, w.weight);
          reweighted += 1;
        }
        kept.push(h);
        wanted.delete(key);
        continue;
      }
      this.drop(h);
      removed += 1;
    }
    let added = 0;
    for (const { ip, port, weight } of wanted.values()) {
      const h = table.add(ip, port, this.config, now);
      this.setWeight(h, weight);
      kept.push(h);
      this.idle = table.enqueue(this.idle, h);
      this.noteDue(now + this.idleMs);
      added += 1;
    }
    if (added > 0 || removed > 0) this.setList(kept);
    if (added > 0 || removed > 0 || reweighted > 0) this.changed = true;
    this.lastUpdateMs = now;
    this.state = RouteState.New;
    const size = this.list.length;
    const out = { added, removed, kept: size - added, skipped, empty: size === 0 };
    return reweighted > 0 ? { ...out, reweighted } : out;
  }

  /**
   * Frees the hosts' slots in the HostTable and forgets them, with no transition or report: for a
   * balancer dropped while it still has hosts (otherwise a shared table would keep their slots).
   */
  release(): void {
    for (const h of this.list) this.drop(h);
    this.setList([]);
  }

  /** The route's last update is older than updateTimeoutS and no pull is in flight. */
  needsRefresh(now: number): boolean {
    return this.state !== RouteState.Pulling && now - this.lastUpdateMs > this.updateMs;
  }

  /** NEW -> PULLING when the agent sends a pull; false (no change) if one is already in flight. */
  markPulling(): boolean {
    if (this.state === RouteState.Pulling) return false;
    this.state = RouteState.Pulling;
    return true;
  }

  /** PULLING -> NEW without an answer (dns link lost), so the route is pulled again. */
  pullAborted(): boolean {
    if (this.state !== RouteState.Pulling) return false;
    this.state = RouteState.New;
    return true;
  }

  /**
   * Real counters and overload flag of every host (wire form: int32 ip), in route order. A host
   * whose window ended (state change or window reset) since the last report carries the counters
   * it had before the reset (DESIGN §5), with its current overload flag. Clears `dirty` (unless
   * calls after such a reset still wait for the next report) and `stateChangedSinceReport`: call it
   * when the statistics are actually sent.
   */
  snapshotForReport(): HostCallResult[] {
    const out: HostCallResult[] = [];
    let pending = false;
    const table = this.table;
    for (const h of this.list) {
      const c = table.takeReportCounters(h);
      if (c.pending) pending = true;
      out.push({
        ip: table.ip[h]! | 0,
        port: table.port[h]!,
        succ: c.succ,
        err: c.err,
        overload: table.isOverloaded(h),
        total_succ: table.totalSucc[h]!,
        total_err: table.totalErr[h]!,
      });
    }
    this.changed = pending;
    this.stateChanged = false;
    return out;
  }

  /** Counters, states or hosts changed since the last snapshotForReport (report once per interval). */
  get dirty(): boolean {
    return this.changed;
  }

  /** A host changed state since the last snapshotForReport (report immediately). */
  get stateChangedSinceReport(): boolean {
    return this.stateChanged;
  }

  /**
   * The route's hosts in wire form (int32 ip), in route order: the answer to an API GetRoute. A
   * weight is present only when it is not 1.
   */
  hosts(): HostInfo[] {
    const out: HostInfo[] = [];
    const table = this.table;
    for (const h of this.list) {
      const ip = table.ip[h]! | 0;
      const port = table.port[h]!;
      const weight = table.weight[h]!;
      out.push(weight === 1 ? { ip, port } : { ip, port, weight });
    }
    return out;
  }

  /** Every host weighs 1 (the plain rotation is in use). */
  get unweighted(): boolean {
    return this.weighted === 0;
  }

  /** Copies of every host's state (unsigned ip), in route order. */
  hostViews(): HostView[] {
    return this.list.map((h) => this.table.view(h));
  }

  /** Copy of one host's state, or undefined if it is not in the route. */
  host(ip: number, port: number): HostView | undefined {
    if (!isPort(port)) return undefined;
    const h = this.find(ip >>> 0, port);
    return h === NO_HOST ? undefined : this.table.view(h);
  }

  /** Queue contents head first (unsigned ip); for tests and diagnostics. */
  queues(): { idle: HostView[]; overload: HostView[] } {
    return {
      idle: this.table.queue(this.idle).map((h) => this.table.view(h)),
      overload: this.table.queue(this.overload).map((h) => this.table.view(h)),
    };
  }

  get size(): number {
    return this.list.length;
  }

  get idleCount(): number {
    return this.list.length - this.overloaded;
  }

  get overloadCount(): number {
    return this.overloaded;
  }

  /**
   * Applies every time-based transition due at `now`. Cheap when nothing is due: one comparison
   * against the earliest deadline, rescanning the (~20) hosts only once a deadline has passed.
   */
  private advance(now: number): void {
    if (now < this.nextDueMs) return;
    let next = Number.POSITIVE_INFINITY;
    const table = this.table;
    for (const h of this.list) {
      if (!table.isOverloaded(h)) {
        if (now >= table.since[h]! + this.idleMs) {
          if (table.windowErrRateReached(h, this.config)) {
            this.transition(h, HostState.Overload, TransitionReason.WindowErrRate, now);
          } else {
            // The window starts again at the check, not at the old window's end (as the original).
            table.resetWindow(h, this.config, now);
            this.changed = true;
          }
        }
      } else if (now >= table.since[h]! + this.overloadMs) {
        this.transition(h, HostState.Idle, TransitionReason.OverloadTimeout, now);
      }
      const due = table.since[h]! + (table.isOverloaded(h) ? this.overloadMs : this.idleMs);
      if (due < next) next = due;
    }
    this.nextDueMs = next;
  }

  /**
   * Smooth weighted round robin over the idle hosts (nginx's algorithm): every idle host's score
   * grows by its weight, the highest score wins (the first in queue order on a tie) and loses the
   * total. Over any run of W = sum of weights picks, a host of weight w is picked exactly w times,
   * spread out rather than in bursts. O(idle hosts) per pick; only used when some weight is not 1.
   */
  private pickWeighted(): number {
    const table = this.table;
    const head = this.idle;
    if (head === NO_HOST) return NO_HOST;
    let best = head;
    let total = 0;
    let h = head;
    do {
      const current = table.current[h]! + table.weight[h]!;
      table.current[h] = current;
      total += table.weight[h]!;
      if (current > table.current[best]!) best = h;
      h = table.next[h]!;
    } while (h !== head);
    table.current[best]! -= total;
    return best;
  }

  /** Plain round robin: the idle queue's head, which becomes its tail (the queue is circular). */
  private rotateIdle(): number {
    const h = this.idle;
    if (h !== NO_HOST) this.idle = this.table.next[h]!;
    return h;
  }

  /** The slot of host ip (unsigned):port of this route, or NO_HOST. */
  private find(ip: number, port: number): number {
    if (this.index !== undefined) return this.index.get(hostKey(ip, port)) ?? NO_HOST;
    const table = this.table;
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const h = list[i]!;
      if (table.ip[h] === ip && table.port[h] === port) return h;
    }
    return NO_HOST;
  }

  private setList(list: number[]): void {
    // An exact-size copy: the pushes that built `list` left room for more (56 bytes a route, issue 17).
    this.list = list.slice();
    this.index = undefined;
    if (list.length <= INDEX_ABOVE) return;
    this.index = new Map();
    for (const h of list) this.index.set(hostKey(this.table.ip[h]!, this.table.port[h]!), h);
  }

  private setWeight(h: number, weight: number): void {
    const table = this.table;
    if (table.weight[h] !== 1) this.weighted -= 1;
    if (weight !== 1) this.weighted += 1;
    table.weight[h] = weight;
    table.current[h] = 0;
  }

  /** Takes a host out of its queue and the weight count and frees its slot (not out of `list`). */
  private drop(h: number): void {
    const table = this.table;
    if (table.isOverloaded(h)) {
      this.overload = table.dequeue(this.overload, h);
      this.overloaded -= 1;
    } else {
      this.idle = table.dequeue(this.idle, h);
    }
    if (table.weight[h] !== 1) this.weighted -= 1;
    table.free(h);
  }

  private noteDue(due: number): void {
    if (due < this.nextDueMs) this.nextDueMs = due;
  }

  private transition(h: number, to: HostState, reason: TransitionReason, now: number): void {
    const table = this.table;
    const from = table.isOverloaded(h) ? HostState.Overload : HostState.Idle;
    if (to === HostState.Overload) {
      if (!table.toOverload(h, this.config, now)) return;
      this.idle = table.dequeue(this.idle, h);
      this.overload = table.enqueue(this.overload, h);
      this.overloaded += 1;
      this.noteDue(now + this.overloadMs);
    } else {
      if (!table.toIdle(h, this.config, now)) return;
      this.overload = table.dequeue(this.overload, h);
      this.idle = table.enqueue(this.idle, h);
      this.overloaded -= 1;
      this.noteDue(now + this.idleMs);
    }
    this.changed = true;
    this.stateChanged = true;
    this.onTransition?.({
      modid: this.modid,
      cmdid: this.cmdid,
      ip: table.ip[h]!,
      port: table.port[h]!,
      from,
      to,
      reason,
      atMs: now,
    });
  }
}
