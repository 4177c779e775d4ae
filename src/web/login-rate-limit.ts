import { RateLimitError } from '../errors.js';

/**
 * Failed-login limiter: counts failures per client IP and per user name in a fixed window. Once
 * either count reaches its limit, further logins for that IP or name are refused with 429 until the
 * window ends, even with the right password; otherwise a guesser would learn when it found it.
 * A success clears the name's counter (its owner is back) but not the IP's, so one valid account
 * cannot be used to reset the budget for guessing others from the same address.
 *
 * Both maps are bounded: past `maxKeys` entries, expired ones are dropped, then the oldest, so a
 * flood of random names cannot grow memory without bound.
 */

export const DEFAULT_LOGIN_WINDOW_MS = 15 * 60_000;
export const DEFAULT_MAX_FAILURES_PER_IP = 20;
export const DEFAULT_MAX_FAILURES_PER_USER = 5;
export const DEFAULT_RATE_LIMIT_MAX_KEYS = 10_000;

export interface LoginRateLimitOptions {
  windowMs?: number;
  maxFailuresPerIp?: number;
  maxFailuresPerUser?: number;
  maxKeys?: number;
}

interface Entry {
  failures: number;
  resetAt: number;
}

class FailureCounter {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly maxKeys: number,
  ) {}

  /** Milliseconds until this key may try again, or 0 when it may now. */
  blockedFor(key: string, now: number): number {
    const e = this.entries.get(key);
    if (!e) return 0;
    if (e.resetAt <= now) {
      this.entries.delete(key);
      return 0;
    }
    return e.failures >= this.limit ? e.resetAt - now : 0;
  }

  fail(key: string, now: number): void {
    const e = this.entries.get(key);
    if (e && e.resetAt > now) {
      e.failures++;
      return;
    }
    this.entries.delete(key);
    this.makeRoom(now);
    this.entries.set(key, { failures: 1, resetAt: now + this.windowMs });
  }

  clear(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  private makeRoom(now: number): void {
    if (this.entries.size < this.maxKeys) return;
    for (const [k, e] of this.entries) if (e.resetAt <= now) this.entries.delete(k);
    // Map iteration is insertion order: the first keys are the oldest windows.
    for (const k of this.entries.keys()) {
      if (this.entries.size < this.maxKeys) break;
      this.entries.delete(k);
    }
  }
}

export class LoginRateLimiter {
  private readonly byIp: FailureCounter;
  private readonly byUser: FailureCounter;

  constructor(
    options: LoginRateLimitOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    const windowMs = options.windowMs ?? DEFAULT_LOGIN_WINDOW_MS;
    const maxKeys = options.maxKeys ?? DEFAULT_RATE_LIMIT_MAX_KEYS;
    this.byIp = new FailureCounter(
      options.maxFailuresPerIp ?? DEFAULT_MAX_FAILURES_PER_IP,
      windowMs,
      maxKeys,
    );
    this.byUser = new FailureCounter(
      options.maxFailuresPerUser ?? DEFAULT_MAX_FAILURES_PER_USER,
      windowMs,
      maxKeys,
    );
  }

  /** Throws RateLimitError when this IP or this user name has used up its failures. */
  check(ip: string, userName: string): void {
    const now = this.now();
    const waitMs = Math.max(this.byIp.blockedFor(ip, now), this.byUser.blockedFor(userKey(userName), now));
    if (waitMs > 0) {
      const retryAfterS = Math.max(1, Math.ceil(waitMs / 1000));
      throw new RateLimitError(`too many failed logins; try again in ${retryAfterS} s`, retryAfterS);
    }
  }

  recordFailure(ip: string, userName: string): void {
    const now = this.now();
    this.byIp.fail(ip, now);
    this.byUser.fail(userKey(userName), now);
  }

  recordSuccess(userName: string): void {
    this.byUser.clear(userKey(userName));
  }
}

/** Case-folded so "Admin" and "admin" share one budget; bounded so a huge name cannot be a huge key. */
function userKey(name: string): string {
  return name.slice(0, 128).toLowerCase();
}
