import type { EventEmitter } from 'node:events';

// Captured at import, before any test installs fake timers: a latch's own deadline must stay real,
// or a test using fake timers would wait forever instead of failing.
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;
const realSetImmediate = globalThis.setImmediate;

export const DEFAULT_WAIT_MS = 5_000;

/**
 * Deadlines in tests are written as what an idle machine needs; they only bound a failure, never
 * pace a test. CI runs on a 2-core machine that may be busy, so every deadline of these helpers is
 * stretched by this factor (LARS_TEST_DEADLINE_FACTOR, default 4).
 */
export const DEADLINE_FACTOR = Math.max(1, Number(process.env.LARS_TEST_DEADLINE_FACTOR) || 4);
export const stretch = (ms: number): number => ms * DEADLINE_FACTOR;

class LatchTimeoutError extends Error {
  override name = 'LatchTimeoutError';
}

/**
 * Counts down to zero; wait() resolves at zero and rejects (failing the test) when the deadline
 * passes first. Replaces sleeps in tests (STYLE §14).
 */
export class Latch {
  private remaining: number;
  private waiters: (() => void)[] = [];

  constructor(
    count = 1,
    private readonly label = 'latch',
  ) {
    this.remaining = count;
  }

  get count(): number {
    return this.remaining;
  }

  countDown = (): void => {
    if (this.remaining === 0) return;
    this.remaining -= 1;
    if (this.remaining === 0) for (const w of this.waiters.splice(0)) w();
  };

  wait(timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    if (this.remaining === 0) return Promise.resolve();
    timeoutMs = stretch(timeoutMs);
    const err = new LatchTimeoutError(`${this.label}: still ${this.remaining} to go after ${timeoutMs} ms`);
    return new Promise((resolve, reject) => {
      const timer = realSetTimeout(() => reject(err), timeoutMs);
      this.waiters.push(() => {
        realClearTimeout(timer);
        resolve();
      });
    });
  }
}

/**
 * Resolves once `predicate()` is true, re-checking after every turn of the event loop (I/O included);
 * rejects after `timeoutMs`. For state reached through real I/O that emits no event of its own
 * (e.g. a counter on a server).
 */
export function waitFor(
  predicate: () => boolean,
  timeoutMs = DEFAULT_WAIT_MS,
  label = 'condition',
): Promise<void> {
  timeoutMs = stretch(timeoutMs);
  const err = new LatchTimeoutError(`${label} not met within ${timeoutMs} ms`);
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = realSetTimeout(() => {
      done = true;
      reject(err);
    }, timeoutMs);
    const check = (): void => {
      if (done) return;
      let ok = false;
      try {
        ok = predicate();
      } catch (e) {
        done = true;
        realClearTimeout(timer);
        reject(e);
        return;
      }
      if (ok) {
        done = true;
        realClearTimeout(timer);
        resolve();
        return;
      }
      realSetImmediate(check);
    };
    check();
  });
}

/** Resolves with the arguments of the next `event` on `emitter`; rejects after `timeoutMs`. */
export function waitForEvent<T extends unknown[] = unknown[]>(
  emitter: EventEmitter,
  event: string,
  timeoutMs = DEFAULT_WAIT_MS,
): Promise<T> {
  timeoutMs = stretch(timeoutMs);
  const err = new LatchTimeoutError(`event ${event} not emitted within ${timeoutMs} ms`);
  return new Promise((resolve, reject) => {
    const timer = realSetTimeout(() => {
      emitter.off(event, on);
      reject(err);
    }, timeoutMs);
    const on = (...args: unknown[]): void => {
      realClearTimeout(timer);
      resolve(args as T);
    };
    emitter.once(event, on);
  });
}

/**
 * Like waitFor, for conditions that need an async read (a database query): checks every 20 ms
 * until `check` resolves true, and fails after `timeoutMs`.
 */
export async function waitForAsync(
  check: () => Promise<boolean>,
  timeoutMs = DEFAULT_WAIT_MS,
  label = 'condition',
): Promise<void> {
  timeoutMs = stretch(timeoutMs);
  const err = new LatchTimeoutError(`${label} not met within ${timeoutMs} ms`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw err;
    await new Promise<void>((resolve) => realSetTimeout(resolve, 20));
  }
}
