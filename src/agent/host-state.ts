import type { LoadBalanceConfig } from './lb-config.js';

/**
 * The hosts of the agent's routes and their idle/overload state machine (DESIGN §5, STYLE §13).
 *
 * IP addresses: the wire carries them in an int32 field (negative from 128.0.0.0 up, DESIGN §2).
 * Inside the agent a host's `ip` is always the UNSIGNED number (what the database stores and what
 * `numberToIp` formats); the LoadBalancer converts at its edge: it accepts either form (`>>> 0`)
 * and hands out wire `HostInfo`/`HostCallResult` objects with the int32 form (`| 0`).
 *
 * Time is milliseconds from an injected clock; nothing here reads a clock or arms a timer.
 *
 * Hosts live in a HostTable: one typed-array column per field, one row ("slot") per host, shared by
 * the balancers of an agent (issue 17: an agent holds 100,000+ hosts; an object per host took
 * 230 bytes of heap, a row takes 96).
 */

export const HostState = {
  Idle: 'idle',
  Overload: 'overload',
} as const;

export type HostState = (typeof HostState)[keyof typeof HostState];

/** Why a host changed state; carried by every transition event. */
export const TransitionReason = {
  /** Idle -> overload: after a failure, verr / (vsucc + verr) > errRate. */
  ErrRate: 'err_rate',
  /** Idle -> overload: consecutive failures reached continErrLimit. */
  ContinErr: 'contin_err',
  /** Idle -> overload: at the end of an idle window, rerr / (rsucc + rerr) >= windowErrRate. */
  WindowErrRate: 'window_err_rate',
  /** Overload -> idle: after a success, vsucc / (vsucc + verr) > succRate. */
  SuccRate: 'succ_rate',
  /** Overload -> idle: consecutive successes reached continSuccLimit. */
  ContinSucc: 'contin_succ',
  /** Overload -> idle: overloaded for overloadTimeoutS. */
  OverloadTimeout: 'overload_timeout',
} as const;

export type TransitionReason = (typeof TransitionReason)[keyof typeof TransitionReason];

/** A state change of one host, for tracing and metrics. `ip` is unsigned. */
export interface HostTransition {
  readonly modid: number;
  readonly cmdid: number;
  readonly ip: number;
  readonly port: number;
  readonly from: HostState;
  readonly to: HostState;
  readonly reason: TransitionReason;
  readonly atMs: number;
}

/**
 * Called after a transition is complete (counters reset, host moved to its new queue). It may read
 * the balancer (e.g. `snapshotForReport()`) but must not call getHost/report/updateRoute/tick on it.
 */
export type HostTransitionListener = (event: HostTransition) => void;

/** Read-only copy of a host's state, for tests, metrics and the console. `ip` is unsigned. */
export interface HostView {
  readonly ip: number;
  readonly port: number;
  readonly state: HostState;
  readonly vsucc: number;
  readonly verr: number;
  readonly rsucc: number;
  readonly rerr: number;
  readonly continSucc: number;
  readonly continErr: number;
  /** Start of the current idle window; NaN while overloaded. */
  readonly windowStart: number;
  /** When the host became overloaded; NaN while idle. */
  readonly overloadStart: number;
  /** Share of calls relative to the route's other hosts (issue 15); 1 unless dns says otherwise. */
  readonly weight: number;
}

/** Virtual errors one failed call counts for: max(1, floor(timecost / 100 ms)). */
export function virtualErrorsFor(timecostMs: number | undefined): number {
  if (timecostMs === undefined || !(timecostMs >= 100)) return 1; // also catches NaN and negatives
  return Math.floor(timecostMs / 100);
}

/** No slot: the end of a walk, an empty queue, no host picked. */
export const NO_HOST = -1;

/** HostTable.state values. */
const IDLE = 0;
const OVERLOAD = 1;

/** Slots of a fresh table; it doubles when full. */
const MIN_SLOTS = 16;

/**
 * Bytes of one row, the widths of HostTable's columns: 7 doubles, 9 32-bit integers, the port and
 * two bytes. grow() lays them out; a column that does not fit throws there.
 */
const ROW_BYTES = 7 * 8 + 9 * 4 + 2 + 2 * 1;

/** A host as pick() hands it out (unsigned ip); see HostTable.picked. */
export interface PickedSlot {
  ip: number;
  port: number;
}

type Column = Float64Array | Uint32Array | Int32Array | Uint16Array | Uint8Array;

/** Places copies of columns with room for `n` slots each, one after another, in one buffer. */
class ColumnLayout {
  private at = 0;
  private readonly buffer: ArrayBuffer;

  constructor(private readonly n: number) {
    this.buffer = new ArrayBuffer(n * ROW_BYTES);
  }

  /** A copy of `col` with room for `n` slots (the new slots are zero). */
  widen<T extends Column>(col: T): T {
    const ctor = col.constructor as new (buffer: ArrayBuffer, at: number, length: number) => T;
    const out = new ctor(this.buffer, this.at, this.n);
    out.set(col);
    this.at += this.n * out.BYTES_PER_ELEMENT;
    return out;
  }
}

/**
 * The per-host records of many routes, by slot, with each host's idle/overload state machine.
 * Only the LoadBalancer owning a slot reads or writes it; it frees the slot when the host leaves.
 *
 * Column widths keep every value the object fields held: counts that can grow without bound
 * (virtual counts start from the config, the totals go out as uint64), times and weights are
 * doubles. The real counters of one window (reset at every window end and state change) and the
 * carried ones (reset at every report) are 32-bit, as their wire fields (succ, err) are: they would
 * need 4 billion calls to one host within one window or between two reports to wrap.
 *
 * Queues: a host is in its balancer's idle or overload queue, a circular doubly linked list
 * through `prev`/`next` named by its head slot (the tail is the head's `prev`), so a queue costs
 * its balancer one number. A free slot's `next` links the free list instead.
 */
export class HostTable {
  ip = new Uint32Array(0);
  port = new Uint16Array(0);
  /** IDLE or OVERLOAD. */
  state = new Uint8Array(0);
  /** 1 when carrySucc/carryErr hold a window that ended unreported (see takeReportCounters). */
  carried = new Uint8Array(0);
  vsucc = new Float64Array(0);
  verr = new Float64Array(0);
  /** Start of the idle window while idle, of the overload while overloaded. */
  since = new Float64Array(0);
  /** Share of calls (issue 15); only read when some host of the route weighs more than 1. */
  weight = new Float64Array(0);
  /** Smooth weighted round robin's running score (see LoadBalancer.pickWeighted). */
  current = new Float64Array(0);
  /** Real calls since the host joined its route, never reset (issue 16: exact calls per minute). */
  totalSucc = new Float64Array(0);
  totalErr = new Float64Array(0);
  rsucc = new Uint32Array(0);
  rerr = new Uint32Array(0);
  continSucc = new Uint32Array(0);
  continErr = new Uint32Array(0);
  /**
   * Real counters of windows that a transition or a window reset ended before they were reported
   * (DESIGN §5: report the counters the host had before the reset, so the failures that overloaded
   * it reach the reporter). Summed if several windows end between two reports.
   */
  carrySucc = new Uint32Array(0);
  carryErr = new Uint32Array(0);
  prev = new Int32Array(0);
  next = new Int32Array(0);
  /** pick()'s answer, reused so that a pick allocates nothing (issue 17's hot path). */
  private readonly pickedHost: PickedSlot = { ip: 0, port: 0 };
  private firstFree = NO_HOST;
  /** Slots handed out at least once; the ones above are untouched. */
  private used = 0;

  /**
   * A slot for a new host, initialised as idle at `now`: vsucc = initSuccCnt, the window starts
   * now. (The original left these uninitialised, so a single failure overloaded a fresh host.)
   */
  add(ip: number, port: number, config: LoadBalanceConfig, now: number): number {
    const h = this.takeSlot();
    this.ip[h] = ip >>> 0;
    this.port[h] = port;
    this.state[h] = IDLE;
    this.carried[h] = 0;
    this.carrySucc[h] = 0;
    this.carryErr[h] = 0;
    this.weight[h] = 1;
    this.current[h] = 0;
    this.totalSucc[h] = 0;
    this.totalErr[h] = 0;
    this.resetCounters(h, config.initSuccCnt, 0);
    this.since[h] = now;
    return h;
  }

  /** Contract: `h` is in no queue and is not used again by its balancer. */
  free(h: number): void {
    this.next[h] = this.firstFree;
    this.firstFree = h;
  }

  isOverloaded(h: number): boolean {
    return this.state[h] === OVERLOAD;
  }

  /**
   * `h`'s ip (unsigned) and port in an object that the next pick() of any balancer of this table
   * overwrites: read it at once.
   */
  picked(h: number): PickedSlot {
    const out = this.pickedHost;
    out.ip = this.ip[h]!;
    out.port = this.port[h]!;
    return out;
  }

  /** Counts a successful call; returns the reason to become idle, if this success earns it. */
  recordSuccess(h: number, config: LoadBalanceConfig): TransitionReason | undefined {
    const vsucc = this.vsucc[h]! + 1;
    this.vsucc[h] = vsucc;
    this.rsucc[h]! += 1;
    this.totalSucc[h]! += 1;
    this.continSucc[h]! += 1;
    this.continErr[h] = 0;
    if (this.state[h] !== OVERLOAD) return undefined;
    if (vsucc / (vsucc + this.verr[h]!) > config.succRate) return TransitionReason.SuccRate;
    if (this.continSucc[h]! >= config.continSuccLimit) return TransitionReason.ContinSucc;
    return undefined;
  }

  /**
   * Counts a failed call (virtual errors amplified by its duration); returns the reason to become
   * overloaded, if this failure earns it.
   */
  recordFailure(
    h: number,
    config: LoadBalanceConfig,
    timecostMs: number | undefined,
  ): TransitionReason | undefined {
    const verr = this.verr[h]! + virtualErrorsFor(timecostMs);
    this.verr[h] = verr;
    this.rerr[h]! += 1;
    this.totalErr[h]! += 1;
    this.continErr[h]! += 1;
    this.continSucc[h] = 0;
    if (this.state[h] !== IDLE) return undefined;
    if (verr / (this.vsucc[h]! + verr) > config.errRate) return TransitionReason.ErrRate;
    if (this.continErr[h]! >= config.continErrLimit) return TransitionReason.ContinErr;
    return undefined;
  }

  /** Real error rate of the current idle window reached windowErrRate (no calls: never). */
  windowErrRateReached(h: number, config: LoadBalanceConfig): boolean {
    const rerr = this.rerr[h]!;
    const calls = this.rsucc[h]! + rerr;
    return calls > 0 && rerr / calls >= config.windowErrRate;
  }

  /** Guarded transition overload -> idle; resets to idle start values. False if already idle. */
  toIdle(h: number, config: LoadBalanceConfig, now: number): boolean {
    if (this.state[h] !== OVERLOAD) return false;
    this.state[h] = IDLE;
    // Rejoins the weighted rotation without a score earned before it was overloaded.
    this.current[h] = 0;
    this.endWindow(h, config.initSuccCnt, 0, now);
    return true;
  }

  /** Guarded transition idle -> overload; resets to overload start values. False if already overloaded. */
  toOverload(h: number, config: LoadBalanceConfig, now: number): boolean {
    if (this.state[h] !== IDLE) return false;
    this.state[h] = OVERLOAD;
    this.endWindow(h, 0, config.initErrCnt, now);
    return true;
  }

  /** Starts a new idle window (idle -> idle, not a transition). False if the host is overloaded. */
  resetWindow(h: number, config: LoadBalanceConfig, now: number): boolean {
    if (this.state[h] !== IDLE) return false;
    this.endWindow(h, config.initSuccCnt, 0, now);
    return true;
  }

  view(h: number): HostView {
    const idle = this.state[h] === IDLE;
    const since = this.since[h]!;
    return {
      ip: this.ip[h]!,
      port: this.port[h]!,
      state: idle ? HostState.Idle : HostState.Overload,
      vsucc: this.vsucc[h]!,
      verr: this.verr[h]!,
      rsucc: this.rsucc[h]!,
      rerr: this.rerr[h]!,
      continSucc: this.continSucc[h]!,
      continErr: this.continErr[h]!,
      windowStart: idle ? since : NaN,
      overloadStart: idle ? NaN : since,
      weight: this.weight[h]!,
    };
  }

  /**
   * The real counters to report now: those of a window that ended unreported, else the current
   * window's. Clears the carried ones; true in `pending` when the current window still has calls
   * that this report does not contain (they go in the next one).
   */
  takeReportCounters(h: number): { succ: number; err: number; pending: boolean } {
    const rsucc = this.rsucc[h]!;
    const rerr = this.rerr[h]!;
    if (this.carried[h] === 0) return { succ: rsucc, err: rerr, pending: false };
    const out = { succ: this.carrySucc[h]!, err: this.carryErr[h]!, pending: rsucc + rerr > 0 };
    this.carried[h] = 0;
    this.carrySucc[h] = 0;
    this.carryErr[h] = 0;
    return out;
  }

  /** Appends `h` to the queue whose head is `head`; returns the queue's head. */
  enqueue(head: number, h: number): number {
    if (head === NO_HOST) {
      this.prev[h] = h;
      this.next[h] = h;
      return h;
    }
    const tail = this.prev[head]!;
    this.prev[h] = tail;
    this.next[h] = head;
    this.next[tail] = h;
    this.prev[head] = h;
    return head;
  }

  /** Takes `h` out of the queue whose head is `head`; returns the queue's head. Contract: `h` is in it. */
  dequeue(head: number, h: number): number {
    const next = this.next[h]!;
    if (next === h) return NO_HOST;
    const prev = this.prev[h]!;
    this.next[prev] = next;
    this.prev[next] = prev;
    return head === h ? next : head;
  }

  /** The queue whose head is `head`, head first. */
  queue(head: number): number[] {
    const out: number[] = [];
    if (head === NO_HOST) return out;
    let h = head;
    do {
      out.push(h);
      h = this.next[h]!;
    } while (h !== head);
    return out;
  }

  /** Ends the window (its real counters are carried to the next report) and starts a new one at `now`. */
  private endWindow(h: number, vsucc: number, verr: number, now: number): void {
    this.carried[h] = 1;
    this.carrySucc[h]! += this.rsucc[h]!;
    this.carryErr[h]! += this.rerr[h]!;
    this.resetCounters(h, vsucc, verr);
    this.since[h] = now;
  }

  private resetCounters(h: number, vsucc: number, verr: number): void {
    this.vsucc[h] = vsucc;
    this.verr[h] = verr;
    this.rsucc[h] = 0;
    this.rerr[h] = 0;
    this.continSucc[h] = 0;
    this.continErr[h] = 0;
  }

  private takeSlot(): number {
    const h = this.firstFree;
    if (h !== NO_HOST) {
      this.firstFree = this.next[h]!;
      return h;
    }
    if (this.used === this.ip.length) this.grow(Math.max(MIN_SLOTS, this.used * 2));
    return this.used++;
  }

  /**
   * All columns live in one buffer, widest first (so each is aligned). One allocation per growth
   * matters for RSS: glibc serves a big one with fresh pages (the unused room stays out of RSS) and
   * returns it whole when freed, where columns allocated one by one land in the malloc heap,
   * zeroed page by page, and the outgrown ones stay resident (measured: +16 MB at 100,000 hosts).
   */
  private grow(n: number): void {
    const layout = new ColumnLayout(n);
    this.vsucc = layout.widen(this.vsucc);
    this.verr = layout.widen(this.verr);
    this.since = layout.widen(this.since);
    this.weight = layout.widen(this.weight);
    this.current = layout.widen(this.current);
    this.totalSucc = layout.widen(this.totalSucc);
    this.totalErr = layout.widen(this.totalErr);
    this.ip = layout.widen(this.ip);
    this.rsucc = layout.widen(this.rsucc);
    this.rerr = layout.widen(this.rerr);
    this.continSucc = layout.widen(this.continSucc);
    this.continErr = layout.widen(this.continErr);
    this.carrySucc = layout.widen(this.carrySucc);
    this.carryErr = layout.widen(this.carryErr);
    this.prev = layout.widen(this.prev);
    this.next = layout.widen(this.next);
    this.port = layout.widen(this.port);
    this.state = layout.widen(this.state);
    this.carried = layout.widen(this.carried);
  }
}
