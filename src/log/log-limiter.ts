import type { Logger } from './logger.js';

/** One warning line per kind per minute at most; the rest are counted in the next line. */
export const DEFAULT_LOG_INTERVAL_MS = 60_000;

interface KindState {
  /** Date.now() of the last line written for this kind; undefined = never. */
  lastAt: number | undefined;
  /** Events of this kind since that line that were not written. */
  suppressed: number;
}

/**
 * Warnings about what peers do (malformed datagrams, protocol violations, cut connections) at a
 * bounded rate: the first event of each kind is logged at once, later ones at most once per
 * `intervalMs` per kind, with the number not logged since (`suppressed`). A flood of bad input
 * must not flood the logs (issue 11: dns wrote 2,569 lines for 2,569 bad connections); the exact
 * numbers are in the services' counters. Used by the UDP endpoint and the TCP server alike.
 */
export class LogLimiter<K extends string = string> {
  private readonly kinds = new Map<K, KindState>();

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = DEFAULT_LOG_INTERVAL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Logs `msg` for `kind` now, or counts it for the next line of that kind. True when written. */
  warn(kind: K, obj: object, msg: string): boolean {
    let s = this.kinds.get(kind);
    if (s === undefined) {
      s = { lastAt: undefined, suppressed: 0 };
      this.kinds.set(kind, s);
    }
    const t = this.now();
    if (s.lastAt !== undefined && t - s.lastAt < this.intervalMs) {
      s.suppressed += 1;
      return false;
    }
    const suppressed = s.suppressed;
    s.lastAt = t;
    s.suppressed = 0;
    const every = Math.round(this.intervalMs / 1000);
    this.logger.warn(
      suppressed > 0 ? { ...obj, suppressed } : obj,
      `${msg} (at most one line per ${every} s for this kind; the rest are only counted)`,
    );
    return true;
  }
}
