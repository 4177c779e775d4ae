import { InvalidArgumentError } from '../errors.js';

export interface RestartPolicyOptions {
  /** Crashes within `windowMs` that make the supervisor give up (K). */
  maxCrashes: number;
  /** Window over which crashes are counted (T). */
  windowMs: number;
  /** Delay before the restart after the first crash in the window; doubles per further crash. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** Fraction of the delay randomised away (only ever shortens). Default 0.2. */
  jitter?: number;
  random?: () => number;
}

export type RestartDecision =
  | { action: 'restart'; delayMs: number; crashesInWindow: number }
  | { action: 'give-up'; crashesInWindow: number; windowMs: number };

/**
 * When to restart a crashed worker of one service, and when to stop trying (issue 7): exponential
 * backoff over the crashes of the last `windowMs`, and giving up at the K-th crash within that
 * window. Pure (time is passed in) so tests assert sequences of decisions without timers.
 *
 * A crash is any exit the supervisor did not ask for, including an exit before the worker became
 * ready. Crashes older than the window are forgotten, so a service that crashes once a day is
 * restarted after the initial delay every time.
 */
export class RestartPolicy {
  private readonly crashes: number[] = [];
  private readonly opts: Required<RestartPolicyOptions>;
  private _gaveUp = false;

  constructor(options: RestartPolicyOptions) {
    if (!(options.maxCrashes >= 1))
      throw new InvalidArgumentError(`restart policy: maxCrashes ${options.maxCrashes} must be >= 1`);
    if (!(options.windowMs > 0))
      throw new InvalidArgumentError(`restart policy: windowMs ${options.windowMs} must be > 0`);
    if (!(options.initialDelayMs > 0 && options.maxDelayMs >= options.initialDelayMs)) {
      throw new InvalidArgumentError(
        `restart policy: need 0 < initialDelayMs (${options.initialDelayMs}) <= maxDelayMs (${options.maxDelayMs})`,
      );
    }
    this.opts = { jitter: 0.2, random: Math.random, ...options };
  }

  get gaveUp(): boolean {
    return this._gaveUp;
  }

  /** Crashes counted in the window ending at `now`. */
  crashesInWindow(now: number): number {
    this.forget(now);
    return this.crashes.length;
  }

  recordCrash(now: number): RestartDecision {
    this.forget(now);
    this.crashes.push(now);
    const n = this.crashes.length;
    if (n >= this.opts.maxCrashes) {
      this._gaveUp = true;
      return { action: 'give-up', crashesInWindow: n, windowMs: this.opts.windowMs };
    }
    const base = Math.min(this.opts.maxDelayMs, this.opts.initialDelayMs * 2 ** (n - 1));
    const delayMs = Math.max(1, Math.round(base * (1 - this.opts.jitter * this.opts.random())));
    return { action: 'restart', delayMs, crashesInWindow: n };
  }

  /** Forget every crash and the give-up (SIGHUP retries a failed service). */
  reset(): void {
    this.crashes.length = 0;
    this._gaveUp = false;
  }

  private forget(now: number): void {
    const from = now - this.opts.windowMs;
    while (this.crashes.length > 0 && (this.crashes[0] as number) <= from) this.crashes.shift();
  }
}
