import { describe, expect, it } from 'vitest';
import { LeaseGuard } from '../src/dns/lease-guard.js';
import type { ExpiringLease, LeaseAgent } from '../src/store/index.js';

// The protection rules of lease expiry (issue 15), as pure decisions on fake times.

const T = 1_000_000;
const cand = (agent: string, port: number, renewedAt: number, ttlMs = 10_000): ExpiringLease => ({
  modid: 1,
  cmdid: 1,
  ip: 1,
  port,
  agent,
  weight: 1,
  ttlMs,
  renewedAt,
  createdRow: true,
});
const agent = (name: string, lastRenewedAt: number, leases = 1): LeaseAgent => ({
  agent: name,
  leases,
  lastRenewedAt,
});
const ports = (ls: ExpiringLease[]) => ls.map((l) => l.port);

describe('LeaseGuard', () => {
  it('expires nothing with a ttl longer than the uptime minus the grace', () => {
    const g = new LeaseGuard({ startedAtMs: T, graceMs: 2_000 });
    expect(g.maxTtlMs(T)).toBeLessThan(1_000);
    expect(g.maxTtlMs(T + 12_000)).toBe(10_000);
  });

  it('expires nothing while the database is down, nor for a ttl after it is back', () => {
    const g = new LeaseGuard({ startedAtMs: T, graceMs: 1_000 });
    expect(g.maxTtlMs(T + 100_000)).toBe(99_000);
    g.dbFailed();
    expect(g.maxTtlMs(T + 200_000)).toBeLessThan(0);
    g.dbOk(T + 200_000);
    expect(g.maxTtlMs(T + 205_000)).toBe(4_000);
    // Only the first success after a failure restarts the clock.
    g.dbOk(T + 206_000);
    expect(g.maxTtlMs(T + 211_000)).toBe(10_000);
  });

  it('a lease its agent stopped renewing while renewing others expires at once', () => {
    const g = new LeaseGuard({ startedAtMs: T });
    const now = T + 100_000;
    const d = g.decide(
      [cand('a', 1, now - 11_000), cand('b', 2, now - 11_000), cand('c', 3, now - 11_000)],
      [agent('a', now - 1_000, 5), agent('b', now - 2_000, 5), agent('c', now - 500, 5)],
      now,
    );
    expect(ports(d.expire)).toEqual([1, 2, 3]);
    expect(d.held).toEqual([]);
  });

  it('one silent agent of many (a dead host) loses its leases at once', () => {
    const g = new LeaseGuard({ startedAtMs: T });
    const now = T + 100_000;
    const d = g.decide(
      [cand('dead', 1, now - 11_000), cand('dead', 2, now - 11_000)],
      [agent('dead', now - 11_000, 2), agent('b', now - 100), agent('c', now - 100)],
      now,
    );
    expect(ports(d.expire)).toEqual([1, 2]);
  });

  it('most agents silent at once: their leases are held, for at most brakeMaxMs', () => {
    const g = new LeaseGuard({ startedAtMs: T, brakeMaxMs: 30_000 });
    const now = T + 100_000;
    const agents = [agent('a', now - 11_000), agent('b', now - 11_000), agent('c', now - 100, 3)];
    const cands = [cand('a', 1, now - 11_000), cand('b', 2, now - 11_000), cand('c', 3, now - 12_000)];
    const first = g.decide(cands, agents, now);
    expect(first.braking).toBe(true);
    expect(ports(first.held)).toEqual([1, 2]);
    // c still renews its other leases: its dropped lease goes even while braking.
    expect(ports(first.expire)).toEqual([3]);
    expect(g.braking).toBe(true);
    const later = g.decide(cands.slice(0, 2), agents, now + 10_000);
    expect([later.braking, ports(later.held)]).toEqual([false, [1, 2]]);
    const released = g.decide(cands.slice(0, 2), agents, now + 30_000);
    expect(ports(released.expire)).toEqual([1, 2]);
    // Agents renewing again: the brake is off.
    g.decide([], [agent('a', now + 30_000), agent('b', now + 30_000)], now + 30_000);
    expect(g.braking).toBe(false);
  });

  it('a single agent (one-host setups) is never held by the brake', () => {
    const g = new LeaseGuard({ startedAtMs: T });
    const now = T + 100_000;
    const d = g.decide([cand('only', 1, now - 11_000)], [agent('only', now - 11_000)], now);
    expect(ports(d.expire)).toEqual([1]);
  });
});
