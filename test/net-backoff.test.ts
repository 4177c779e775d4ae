import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../src/errors.js';
import { Backoff, DropOldestQueue } from '../src/net/index.js';

/** A scripted RNG: returns the given values in a loop. */
function scripted(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe('Backoff', () => {
  it('doubles from initialMs up to maxMs without jitter', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0, random: scripted(0.5) });
    expect(Array.from({ length: 7 }, () => b.next())).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
    expect(b.attempts).toBe(7);
  });

  it('jitter only shortens a delay, by at most the jitter fraction', () => {
    const b = new Backoff({
      initialMs: 100,
      maxMs: 400,
      jitter: 0.5,
      random: scripted(0, 0.5, 0.999999, 0.5, 0),
    });
    // bases: 100, 200, 400, 400, 400
    expect(Array.from({ length: 5 }, () => b.next())).toEqual([100, 150, 200, 300, 400]);
  });

  it('spreads clients that reached the cap', () => {
    const b = new Backoff({ initialMs: 1000, maxMs: 1000, jitter: 0.2, random: scripted(0.1, 0.9) });
    expect([b.next(), b.next()]).toEqual([980, 820]);
  });

  it('honours a custom multiplier and reset()', () => {
    const b = new Backoff({ initialMs: 10, maxMs: 10_000, jitter: 0, multiplier: 3 });
    expect([b.next(), b.next(), b.next()]).toEqual([10, 30, 90]);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(10);
  });

  it('rejects nonsensical settings with InvalidArgumentError', () => {
    const bad = [
      { initialMs: 0, maxMs: 10, jitter: 0 },
      { initialMs: 100, maxMs: 10, jitter: 0 },
      { initialMs: 1, maxMs: 10, jitter: 1.5 },
      { initialMs: 1, maxMs: 10, jitter: 0, multiplier: 0.5 },
    ];
    for (const o of bad) {
      expect(() => new Backoff(o)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    }
  });
});

describe('DropOldestQueue', () => {
  it('keeps FIFO order and drops the oldest when full', () => {
    const q = new DropOldestQueue<number>(3);
    expect([q.push(1), q.push(2), q.push(3)]).toEqual([undefined, undefined, undefined]);
    expect(q.push(4)).toBe(1);
    expect(q.push(5)).toBe(2);
    expect(q.dropped).toBe(2);
    expect([q.shift(), q.shift(), q.shift(), q.shift()]).toEqual([3, 4, 5, undefined]);
    q.push(6);
    expect(q.clear()).toBe(1);
    expect(q.length).toBe(0);
  });

  it('with capacity 0 drops everything', () => {
    const q = new DropOldestQueue<string>(0);
    expect(q.push('a')).toBe('a');
    expect(q.length).toBe(0);
    expect(q.dropped).toBe(1);
  });
});
