import { RateLimitError } from '../errors.js';

/**
 * Failed-login limiter (issue 11: five failures from anywhere used to lock a name out for everyone
 * for 15 minutes, so an outsider could lock the admin out at will).
 *
 * - Per source and name: after `maxFailuresPerUser` failures of one name from one address in the
 *   window, that address is refused (429) for that name, even with the right password (otherwise a
 *   guesser would learn when it found it). The same name from another address is unaffected.
 * - Per source: after `maxFailuresPerIp` failures from one address, it is refused for every name.
 * - Global slow-down: when failures from everyone pass `slowdownFreeFailures` a minute (guessing
 *   spread over many addresses), every login waits before its password is checked, 100 ms more per
 *   failure past the limit, at most `slowdownMaxMs`. Nobody is locked out; guessing gets slow.
 *
 * A success clears the (source, name) counter but not the source's, so one valid account cannot be
 * used to reset the budget for guessing others from the same address. Both maps are bounded: past
 * `maxKeys` entries, expired ones are dropped, then the oldest, so a flood of random names cannot
 * grow memory without bound.
 */

export const DEFAULT_LOGIN_WINDOW_MS = 15 * 60_000;
export const DEFAULT_MAX_FAILURES_PER_IP = 20;
/** Failures of one name from one address before that address is refused for that name. */
export const DEFAULT_MAX_FAILURES_PER_USER = 5;
export const DEFAULT_RATE_LIMIT_MAX_KEYS = 10_000;
/** Failed logins a minute, from everyone, before logins are slowed down. */
export const DEFAULT_SLOWDOWN_FREE_FAILURES = 30;
/** Added wait per failure past the free ones, and the most a login waits. */
export const DEFAULT_SLOWDOWN_STEP_MS = 100;
export const DEFAULT_SLOWDOWN_MAX_MS = 5_000;
const SLOWDOWN_WINDOW_S = 60;

export interface LoginRateLimitOptions {
  windowMs?: number;
  maxFailuresPerIp?: number;
  /** Per (source address, name). */
  maxFailuresPerUser?: number;
  maxKeys?: number;
  slowdownFreeFailures?: number;
  slowdownStepMs?: number;
  slowdownMaxMs?: number;
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

/** Failures of the last minute, from everyone, in one-second buckets. */
class RecentFailures {
  private readonly buckets = new Array<number>(SLOWDOWN_WINDOW_S).fill(0);
  private readonly second = new Array<number>(SLOWDOWN_WINDOW_S).fill(-1);

  add(now: number): void {
    const s = Math.floor(now / 1000);
    const i = s % SLOWDOWN_WINDOW_S;
    if (this.second[i] !== s) {
      this.second[i] = s;
      this.buckets[i] = 0;
    }
    this.buckets[i]! += 1;
  }

  count(now: number): number {
    const s = Math.floor(now / 1000);
    let n = 0;
    for (let i = 0; i < SLOWDOWN_WINDOW_S; i++)
      if (s - this.second[i]! < SLOWDOWN_WINDOW_S) n += this.buckets[i]!;
    return n;
  }
}

export class LoginRateLimiter {
  private readonly byIp: FailureCounter;
  private readonly bySourceUser: FailureCounter;
  private readonly recent = new RecentFailures();
  private readonly slowdown: { free: number; stepMs: number; maxMs: number };

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
    this.bySourceUser = new FailureCounter(
      options.maxFailuresPerUser ?? DEFAULT_MAX_FAILURES_PER_USER,
      windowMs,
      maxKeys,
    );
    this.slowdown = {
      free: options.slowdownFreeFailures ?? DEFAULT_SLOWDOWN_FREE_FAILURES,
      stepMs: options.slowdownStepMs ?? DEFAULT_SLOWDOWN_STEP_MS,
      maxMs: options.slowdownMaxMs ?? DEFAULT_SLOWDOWN_MAX_MS,
    };
  }

  /** Throws RateLimitError when this address is blocked, or blocked for this name. */
  check(ip: string, userName: string): void {
    const now = this.now();
    const waitMs = Math.max(
      this.byIp.blockedFor(ip, now),
      this.bySourceUser.blockedFor(sourceUserKey(ip, userName), now),
    );
    if (waitMs > 0) {
      const retryAfterS = Math.max(1, Math.ceil(waitMs / 1000));
      throw new RateLimitError(`too many failed logins; try again in ${retryAfterS} s`, retryAfterS);
    }
  }

  /** How long a login should wait before its password is checked (the global slow-down). */
  slowDownMs(): number {
    const over = this.recent.count(this.now()) - this.slowdown.free;
    return over > 0 ? Math.min(this.slowdown.maxMs, over * this.slowdown.stepMs) : 0;
  }

  recordFailure(ip: string, userName: string): void {
    const now = this.now();
    this.byIp.fail(ip, now);
    this.bySourceUser.fail(sourceUserKey(ip, userName), now);
    this.recent.add(now);
  }

  recordSuccess(ip: string, userName: string): void {
    this.bySourceUser.clear(sourceUserKey(ip, userName));
  }
}

/** Case-folded so "Admin" and "admin" share one budget; bounded so a huge name cannot be a huge key. */
function sourceUserKey(ip: string, name: string): string {
  return `${ip}\u0000${name.slice(0, 128).toLowerCase()}`;
}
