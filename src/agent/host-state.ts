import type { LoadBalanceConfig } from './lb-config.js';

/**
 * One host of a route and its idle/overload state machine (DESIGN §5, STYLE §13).
 *
 * IP addresses: the wire carries them in an int32 field (negative from 128.0.0.0 up, DESIGN §2).
 * Inside the agent a host's `ip` is always the UNSIGNED number (what the database stores and what
 * `numberToIp` formats); the LoadBalancer converts at its edge: it accepts either form (`>>> 0`)
 * and hands out wire `HostInfo`/`HostCallResult` objects with the int32 form (`| 0`).
 *
 * Time is milliseconds from an injected clock; nothing here reads a clock or arms a timer.
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

/** HostEntry.carryErr while nothing is carried: a count is never negative. */
const NOT_CARRIED = -1;

/**
 * Mutable per-host record. Only the owning LoadBalancer writes it. Kept small on purpose (an agent
 * holds ~200k of them): no config or listener references, the two queue links are intrusive.
 */
export class HostEntry {
  readonly ip: number;
  readonly port: number;
  state: HostState = HostState.Idle;
  vsucc: number;
  verr = 0;
  rsucc = 0;
  rerr = 0;
  continSucc = 0;
  continErr = 0;
  /**
   * Start of the current idle window while idle, of the overload while overloaded: one field, as
   * only one of them means anything at a time (issue 17: one 8-byte field and one boxed double less).
   */
  since: number;
  /** Share of calls (issue 15); only read when some host of the route weighs more than 1. */
  weight = 1;
  /** Smooth weighted round robin's running score (see LoadBalancer.pickWeighted). */
  current = 0;
  /**
   * Real counters of a window that a transition or a window reset ended before they were reported
   * (DESIGN §5: report the counters the host had before the reset, so the failures that overloaded
   * it reach the reporter). Summed if several windows end between two reports.
   */
  carrySucc = 0;
  /** NOT_CARRIED while no ended window waits to be reported (saves a flag field, issue 17). */
  carryErr = NOT_CARRIED;
  /** Real calls since this entry was created, never reset (issue 16: exact calls per minute). */
  totalSucc = 0;
  totalErr = 0;
  /** Links of the idle or overload queue the host is in (HostQueue owns them). */
  prev: HostEntry | null = null;
  next: HostEntry | null = null;

  /**
   * A fresh host is fully initialised as idle at `now`: vsucc = initSuccCnt, window starts now.
   * (The original left these uninitialised, so a single failure overloaded a fresh host.)
   */
  constructor(ip: number, port: number, config: LoadBalanceConfig, now: number) {
    this.ip = ip >>> 0;
    this.port = port;
    this.vsucc = config.initSuccCnt;
    this.since = now;
  }

  /** Counts a successful call; returns the reason to become idle, if this success earns it. */
  recordSuccess(config: LoadBalanceConfig): TransitionReason | undefined {
    this.vsucc += 1;
    this.rsucc += 1;
    this.totalSucc += 1;
    this.continSucc += 1;
    this.continErr = 0;
    if (this.state !== HostState.Overload) return undefined;
    if (this.vsucc / (this.vsucc + this.verr) > config.succRate) return TransitionReason.SuccRate;
    if (this.continSucc >= config.continSuccLimit) return TransitionReason.ContinSucc;
    return undefined;
  }

  /**
   * Counts a failed call (virtual errors amplified by its duration); returns the reason to become
   * overloaded, if this failure earns it.
   */
  recordFailure(config: LoadBalanceConfig, timecostMs: number | undefined): TransitionReason | undefined {
    this.verr += virtualErrorsFor(timecostMs);
    this.rerr += 1;
    this.totalErr += 1;
    this.continErr += 1;
    this.continSucc = 0;
    if (this.state !== HostState.Idle) return undefined;
    if (this.verr / (this.vsucc + this.verr) > config.errRate) return TransitionReason.ErrRate;
    if (this.continErr >= config.continErrLimit) return TransitionReason.ContinErr;
    return undefined;
  }

  /** Real error rate of the current idle window reached windowErrRate (no calls: never). */
  windowErrRateReached(config: LoadBalanceConfig): boolean {
    const calls = this.rsucc + this.rerr;
    return calls > 0 && this.rerr / calls >= config.windowErrRate;
  }

  /** Guarded transition overload -> idle; resets to idle start values. False if already idle. */
  toIdle(config: LoadBalanceConfig, now: number): boolean {
    if (this.state !== HostState.Overload) return false;
    this.state = HostState.Idle;
    // Rejoins the weighted rotation without a score earned before it was overloaded.
    this.current = 0;
    this.resetIdleCounters(config, now);
    return true;
  }

  /** Guarded transition idle -> overload; resets to overload start values. False if already overloaded. */
  toOverload(config: LoadBalanceConfig, now: number): boolean {
    if (this.state !== HostState.Idle) return false;
    this.state = HostState.Overload;
    this.carryRealCounters();
    this.vsucc = 0;
    this.verr = config.initErrCnt;
    this.rsucc = 0;
    this.rerr = 0;
    this.continSucc = 0;
    this.continErr = 0;
    this.since = now;
    return true;
  }

  /** Starts a new idle window (idle -> idle, not a transition). False if the host is overloaded. */
  resetWindow(config: LoadBalanceConfig, now: number): boolean {
    if (this.state !== HostState.Idle) return false;
    this.resetIdleCounters(config, now);
    return true;
  }

  view(): HostView {
    return {
      ip: this.ip,
      port: this.port,
      state: this.state,
      vsucc: this.vsucc,
      verr: this.verr,
      rsucc: this.rsucc,
      rerr: this.rerr,
      continSucc: this.continSucc,
      continErr: this.continErr,
      windowStart: this.state === HostState.Idle ? this.since : NaN,
      overloadStart: this.state === HostState.Overload ? this.since : NaN,
      weight: this.weight,
    };
  }

  /**
   * The real counters to report now: those of a window that ended unreported, else the current
   * window's. Clears the carried ones; true in `pending` when the current window still has calls
   * that this report does not contain (they go in the next one).
   */
  takeReportCounters(): { succ: number; err: number; pending: boolean } {
    if (this.carryErr === NOT_CARRIED) return { succ: this.rsucc, err: this.rerr, pending: false };
    const out = { succ: this.carrySucc, err: this.carryErr, pending: this.rsucc + this.rerr > 0 };
    this.carrySucc = 0;
    this.carryErr = NOT_CARRIED;
    return out;
  }

  private carryRealCounters(): void {
    if (this.carryErr === NOT_CARRIED) this.carryErr = 0;
    this.carrySucc += this.rsucc;
    this.carryErr += this.rerr;
  }

  private resetIdleCounters(config: LoadBalanceConfig, now: number): void {
    this.carryRealCounters();
    this.vsucc = config.initSuccCnt;
    this.verr = 0;
    this.rsucc = 0;
    this.rerr = 0;
    this.continSucc = 0;
    this.continErr = 0;
    this.since = now;
  }
}

/**
 * Intrusive doubly linked FIFO of hosts: push, remove and head-to-tail rotation are O(1) and
 * allocate nothing. A host is in at most one queue at a time (its links are its own).
 */
export class HostQueue {
  head: HostEntry | null = null;
  tail: HostEntry | null = null;
  size = 0;

  push(h: HostEntry): void {
    h.prev = this.tail;
    h.next = null;
    if (this.tail) this.tail.next = h;
    else this.head = h;
    this.tail = h;
    this.size += 1;
  }

  /** Contract: `h` is in this queue. */
  remove(h: HostEntry): void {
    if (h.prev) h.prev.next = h.next;
    else this.head = h.next;
    if (h.next) h.next.prev = h.prev;
    else this.tail = h.prev;
    h.prev = null;
    h.next = null;
    this.size -= 1;
  }

  /** Moves the head to the tail and returns it (round robin); null when empty. */
  rotate(): HostEntry | null {
    const h = this.head;
    if (h === null || h === this.tail) return h;
    this.head = h.next;
    (this.head as HostEntry).prev = null;
    h.prev = this.tail;
    h.next = null;
    (this.tail as HostEntry).next = h;
    this.tail = h;
    return h;
  }

  toArray(): HostEntry[] {
    const out: HostEntry[] = [];
    for (let h = this.head; h !== null; h = h.next) out.push(h);
    return out;
  }
}
