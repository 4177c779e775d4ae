import { InvalidArgumentError } from '../errors.js';

export interface BackoffOptions {
  /** Delay before the first retry. */
  initialMs: number;
  /** Cap of the (un-jittered) delay. */
  maxMs: number;
  /**
   * Fraction in [0, 1] of the delay that is randomised away: a delay d becomes a value in
   * [d * (1 - jitter), d]. Jitter only ever shortens, so the cap holds and clients that hit the cap
   * together still spread out instead of redialling in lock-step.
   */
  jitter: number;
  /** Growth factor per attempt. Default 2. */
  multiplier?: number;
  /** Injected for tests; returns a number in [0, 1). Default Math.random. */
  random?: () => number;
}

/**
 * Exponential backoff with jitter (STYLE §12; grpc-js backoff-timeout.ts). Pure arithmetic, no
 * timers: the owner arms (and unref()s) its own timer with the value of next(), which keeps this
 * class testable with an injected RNG and keeps timers visible to the owner's close().
 */
export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly jitter: number;
  private readonly multiplier: number;
  private readonly random: () => number;
  private base: number;
  private _attempts = 0;

  constructor(options: BackoffOptions) {
    const { initialMs, maxMs, jitter } = options;
    const multiplier = options.multiplier ?? 2;
    if (!(initialMs > 0) || !(maxMs >= initialMs)) {
      throw new InvalidArgumentError(`backoff: need 0 < initialMs (${initialMs}) <= maxMs (${maxMs})`);
    }
    if (!(jitter >= 0 && jitter <= 1))
      throw new InvalidArgumentError(`backoff: jitter ${jitter} must be in [0, 1]`);
    if (!(multiplier >= 1)) throw new InvalidArgumentError(`backoff: multiplier ${multiplier} must be >= 1`);
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.jitter = jitter;
    this.multiplier = multiplier;
    this.random = options.random ?? Math.random;
    this.base = initialMs;
  }

  /** Retries handed out since the last reset(). */
  get attempts(): number {
    return this._attempts;
  }

  /** The delay before the next attempt; each call grows the base delay up to maxMs. */
  next(): number {
    const base = this.base;
    this.base = Math.min(this.maxMs, base * this.multiplier);
    this._attempts += 1;
    return Math.round(base * (1 - this.jitter * this.random()));
  }

  /** Back to initialMs, e.g. after a successful connect. */
  reset(): void {
    this.base = this.initialMs;
    this._attempts = 0;
  }
}
