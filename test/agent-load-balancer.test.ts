import { describe, expect, it } from 'vitest';
import {
  LoadBalancer,
  RouteState,
  type GetHostResult,
  type LoadBalancerOptions,
} from '../src/agent/load-balancer.js';
import {
  HostTable,
  NO_HOST,
  virtualErrorsFor,
  type HostTransition,
  type HostView,
} from '../src/agent/host-state.js';
import { DEFAULT_LOAD_BALANCE_CONFIG, resolveLoadBalanceConfig } from '../src/agent/lb-config.js';
import { ipToNumber, toWireIp } from '../src/protocol/ip.js';
import { RetCode, retCodeName } from '../src/protocol/retcode.js';
import type { HostInfo } from '../src/protocol/messages.js';

// ---------------------------------------------------------------------------------------------
// Fakes and helpers. Policies are asserted as sequences of picks and states (STYLE §15).

/** Named hosts; C is above 128.0.0.0 so its wire ip is negative. */
const HOSTS = {
  A: { ip: ipToNumber('10.0.0.1'), port: 8001 },
  B: { ip: ipToNumber('10.0.0.2'), port: 8002 },
  C: { ip: ipToNumber('192.168.1.177'), port: 8003 },
  D: { ip: ipToNumber('10.0.0.4'), port: 8004 },
} as const;
type Name = keyof typeof HOSTS;

const NAME_BY_KEY = new Map<string, Name>(
  Object.entries(HOSTS).map(([n, h]) => [`${h.ip >>> 0}:${h.port}`, n as Name]),
);
const nameOf = (h: { ip: number; port: number }): string =>
  NAME_BY_KEY.get(`${h.ip >>> 0}:${h.port}`) ?? `?${h.ip}:${h.port}`;

/** Wire form (int32 ip), as dns sends it. */
const wire = (...names: Name[]): HostInfo[] =>
  names.map((n) => ({ ip: toWireIp(HOSTS[n].ip), port: HOSTS[n].port }));

/** The balancer never reads time itself; tests move this clock. */
class FakeClock {
  constructor(public t = 1_000_000) {}
  now(): number {
    return this.t;
  }
  set(t: number): number {
    this.t = t;
    return t;
  }
}

/** 'A', 'A*' for a probe, or the retcode name. */
const pickName = (r: GetHostResult): string =>
  r.host === undefined ? retCodeName(r.retcode) : `${nameOf(r.host)}${r.probe ? '*' : ''}`;

const picks = (lb: LoadBalancer, n: number, clock: FakeClock): string[] =>
  Array.from({ length: n }, () => pickName(lb.getHost(clock.now())));

const viewOf = (lb: LoadBalancer, n: Name): HostView | undefined => lb.host(HOSTS[n].ip, HOSTS[n].port);
const stateOf = (lb: LoadBalancer, n: Name): string => viewOf(lb, n)?.state ?? 'absent';

/** Reports 's' (success) / 'f' (failure, no timecost) in order; returns the host's state after each. */
function play(lb: LoadBalancer, n: Name, pattern: string, clock: FakeClock): string[] {
  const h = HOSTS[n];
  return [...pattern].map((c) => {
    expect(
      lb.report(h.ip, h.port, c === 's' ? RetCode.SUCC : RetCode.SYSTEM_ERROR, undefined, clock.now()),
    ).toBe(true);
    return stateOf(lb, n);
  });
}

/** Index (1-based) of the first report after which the host was overloaded; 0 if never. */
const firstOverload = (states: string[]): number => states.indexOf('overload') + 1;

function makeLb(names: Name[], clock: FakeClock, options: LoadBalancerOptions = {}) {
  const events: HostTransition[] = [];
  const lb = new LoadBalancer(1, 2, { ...options, onTransition: (e) => events.push(e) });
  lb.updateRoute(wire(...names), clock.now());
  const transitions = () => events.map((e) => `${nameOf(e)}:${e.from}->${e.to}:${e.reason}@${e.atMs}`);
  return { lb, events, transitions };
}

function queueNames(lb: LoadBalancer): { idle: string[]; overload: string[] } {
  const q = lb.queues();
  return { idle: q.idle.map(nameOf), overload: q.overload.map(nameOf) };
}

/** 10 consecutive failures: the contin_err_limit path. */
function overload(lb: LoadBalancer, n: Name, clock: FakeClock): void {
  play(lb, n, 'ffffffffff', clock);
  expect(stateOf(lb, n)).toBe('overload');
}

const rep = (s: string, n: number): string => s.repeat(n);

// ---------------------------------------------------------------------------------------------

describe('LoadBalancer.getHost: round robin and probes', () => {
  it('round-robins over the idle hosts in route order', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A', 'B', 'C'], clock);
    // Probe slots (10th) with an empty overload queue are served from the idle queue as usual.
    expect(picks(lb, 12, clock)).toEqual(['A', 'B', 'C', 'A', 'B', 'C', 'A', 'B', 'C', 'A', 'B', 'C']);
  });

  it('answers the wire form of the ip (int32, negative from 128.0.0.0 up)', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['C'], clock);
    expect(lb.getHost(clock.now())).toEqual({
      retcode: RetCode.SUCC,
      host: { ip: -1062731343, port: 8003 },
      probe: false,
    });
  });

  it('gives the overloaded host a trial call on every 10th request (exact 30 picks)', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A', 'B', 'C'], clock);
    overload(lb, 'C', clock);
    expect(queueNames(lb)).toEqual({ idle: ['A', 'B'], overload: ['C'] });
    expect(picks(lb, 30, clock)).toEqual([
      ...['A', 'B', 'A', 'B', 'A', 'B', 'A', 'B', 'A', 'C*'],
      ...['B', 'A', 'B', 'A', 'B', 'A', 'B', 'A', 'B', 'C*'],
      ...['A', 'B', 'A', 'B', 'A', 'B', 'A', 'B', 'A', 'C*'],
    ]);
  });

  it('answers OVERLOAD when every host is overloaded, except the probes, which rotate', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A', 'B', 'C'], clock);
    overload(lb, 'A', clock);
    overload(lb, 'B', clock);
    overload(lb, 'C', clock);
    const o = rep('OVERLOAD,', 9).split(',').slice(0, 9);
    expect(picks(lb, 30, clock)).toEqual([...o, 'A*', ...o, 'B*', ...o, 'C*']);
    expect(lb.idleCount).toBe(0);
    expect(lb.overloadCount).toBe(3);
  });

  it('counts every getHost call for probing, NOEXIST and OVERLOAD answers included, from 0', () => {
    const clock = new FakeClock();
    const lb = new LoadBalancer(1, 2);
    expect(picks(lb, 4, clock)).toEqual(['NOEXIST', 'NOEXIST', 'NOEXIST', 'NOEXIST']);
    lb.updateRoute(wire('A', 'B'), clock.now());
    overload(lb, 'B', clock);
    // Calls 5..14: the 10th call overall is the probe.
    expect(picks(lb, 10, clock)).toEqual(['A', 'A', 'A', 'A', 'A', 'B*', 'A', 'A', 'A', 'A']);
  });

  it('honours probe_num', () => {
    const clock = new FakeClock();
    const config = resolveLoadBalanceConfig({ probeNum: 3 });
    const { lb } = makeLb(['A', 'B'], clock, { config });
    overload(lb, 'B', clock);
    expect(picks(lb, 9, clock)).toEqual(['A', 'A', 'B*', 'A', 'A', 'B*', 'A', 'A', 'B*']);
  });

  it('answers NOEXIST for a route without hosts', () => {
    const clock = new FakeClock();
    expect(new LoadBalancer(1, 2).getHost(clock.now())).toEqual({ retcode: RetCode.NOEXIST, probe: false });
  });
});

describe('LoadBalancer.report: idle -> overload', () => {
  it('does not overload a fresh host on one failure (initialised counters)', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A'], clock);
    expect(viewOf(lb, 'A')).toMatchObject({ state: 'idle', vsucc: 180, verr: 0, windowStart: clock.now() });
    expect(play(lb, 'A', 'f', clock)).toEqual(['idle']);
    expect(viewOf(lb, 'A')).toMatchObject({ vsucc: 180, verr: 1, rsucc: 0, rerr: 1, continErr: 1 });
  });

  // DESIGN §5 says "10 successes + 21 errors overload a fresh host, 500 successes need 75 errors".
  // With the formula as stated the first overloading error is the 22nd (21/211 = 0.0995, 22/212 =
  // 0.1038) and the 76th (75/755 = 0.0993, 76/756 = 0.1005); see load-balancer.ts. Errors are spread
  // out (at most 9 in a row) so the consecutive-error rule stays out of the way.
  it('err_rate: 10 successes + 21 errors stay idle, the 22nd error overloads', () => {
    const clock = new FakeClock();
    const { lb, transitions } = makeLb(['A'], clock);
    const pattern = rep('s', 8) + rep('f', 9) + 's' + rep('f', 9) + 's' + rep('f', 3); // 10 s, 21 f
    expect(play(lb, 'A', pattern, clock).every((s) => s === 'idle')).toBe(true);
    expect(viewOf(lb, 'A')).toMatchObject({ vsucc: 190, verr: 21, continErr: 3 });
    expect(play(lb, 'A', 'f', clock)).toEqual(['overload']);
    expect(transitions()).toEqual([`A:idle->overload:err_rate@${clock.now()}`]);
    expect(viewOf(lb, 'A')).toMatchObject({
      vsucc: 0,
      verr: 5,
      rsucc: 0,
      rerr: 0,
      overloadStart: clock.now(),
    });
  });

  it('err_rate: 500 successes + 75 errors stay idle, the 76th error overloads', () => {
    const clock = new FakeClock();
    const { lb, transitions } = makeLb(['A'], clock);
    const pattern = rep('s', 492) + rep(rep('f', 9) + 's', 8) + rep('f', 3); // 500 s, 75 f
    expect(play(lb, 'A', pattern, clock).every((s) => s === 'idle')).toBe(true);
    expect(viewOf(lb, 'A')).toMatchObject({ vsucc: 680, verr: 75, rsucc: 500, rerr: 75 });
    expect(play(lb, 'A', 'f', clock)).toEqual(['overload']);
    expect(transitions()).toEqual([`A:idle->overload:err_rate@${clock.now()}`]);
  });

  it('err_rate alone (consecutive rule disabled): boundaries 22 and 76 with errors back to back', () => {
    const config = resolveLoadBalanceConfig({ continErrLimit: 1000 });
    for (const [succ, boundary] of [
      [10, 22],
      [500, 76],
    ] as const) {
      const clock = new FakeClock();
      const { lb } = makeLb(['A'], clock, { config });
      play(lb, 'A', rep('s', succ), clock);
      expect(firstOverload(play(lb, 'A', rep('f', 100), clock))).toBe(boundary);
    }
  });

  it('contin_err: 9 consecutive failures stay idle, the 10th overloads', () => {
    const clock = new FakeClock();
    const { lb, transitions } = makeLb(['A'], clock);
    expect(firstOverload(play(lb, 'A', rep('f', 10), clock))).toBe(10);
    expect(transitions()).toEqual([`A:idle->overload:contin_err@${clock.now()}`]);
    // Read literally in order, "10 successes then errors" overloads at the 10th error, by this rule.
    const c2 = new FakeClock();
    const second = makeLb(['A'], c2);
    expect(firstOverload(play(second.lb, 'A', rep('s', 10) + rep('f', 21), c2))).toBe(20);
  });

  it('contin_err: a success in between resets the run', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A'], clock);
    expect(firstOverload(play(lb, 'A', rep('f', 9) + 's' + rep('f', 9), clock))).toBe(0);
    expect(viewOf(lb, 'A')).toMatchObject({ continErr: 9, verr: 18, vsucc: 181 });
  });

  it('amplifies slow failures: 1000 ms counts 10 virtual errors, 50 ms counts 1', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A', 'B'], clock);
    const a = HOSTS.A;
    lb.report(a.ip, a.port, 1, 1000, clock.now());
    expect(viewOf(lb, 'A')).toMatchObject({ state: 'idle', verr: 10, rerr: 1, continErr: 1 });
    lb.report(a.ip, a.port, 1, 1000, clock.now()); // 20 / 200 = 0.1, not > 0.1
    expect(viewOf(lb, 'A')).toMatchObject({ state: 'idle', verr: 20, rerr: 2 });
    lb.report(a.ip, a.port, 1, 1000, clock.now()); // 30 / 210 > 0.1
    expect(stateOf(lb, 'A')).toBe('overload');

    const b = HOSTS.B;
    lb.report(b.ip, b.port, 1, 50, clock.now());
    expect(viewOf(lb, 'B')).toMatchObject({ verr: 1, rerr: 1 });
    lb.report(b.ip, b.port, 0, 5000, clock.now()); // a success's duration does not matter
    expect(viewOf(lb, 'B')).toMatchObject({ vsucc: 181, verr: 1 });
  });

  it('virtual errors per failure: max(1, floor(timecost / 100))', () => {
    const inputs = [undefined, 0, -5, Number.NaN, 50, 99, 100, 199, 200, 1000, 1099];
    expect(inputs.map(virtualErrorsFor)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 2, 10, 10]);
  });
});

describe('LoadBalancer.report: overload -> idle', () => {
  it('contin_succ: 9 consecutive successes stay overloaded, the 10th recovers', () => {
    const clock = new FakeClock();
    const { lb, transitions } = makeLb(['A'], clock);
    overload(lb, 'A', clock);
    clock.set(clock.now() + 1000);
    expect(firstOverload(play(lb, 'A', rep('s', 9), clock))).toBe(1);
    expect(play(lb, 'A', 's', clock)).toEqual(['idle']);
    expect(transitions()[1]).toBe(`A:overload->idle:contin_succ@${clock.now()}`);
    expect(viewOf(lb, 'A')).toMatchObject({
      vsucc: 180,
      verr: 0,
      rsucc: 0,
      rerr: 0,
      continSucc: 0,
      continErr: 0,
      windowStart: clock.now(),
    });
  });

  it('contin_succ: a failure while overloaded resets the run', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A'], clock);
    overload(lb, 'A', clock);
    const states = play(lb, 'A', rep('s', 9) + 'f' + rep('s', 10), clock);
    expect(states.indexOf('idle') + 1).toBe(20);
  });

  it('succ_rate: 57 successes stay overloaded, the 58th recovers (58/63 > 0.92)', () => {
    const clock = new FakeClock();
    const config = resolveLoadBalanceConfig({ continSuccLimit: 1000 });
    const { lb, transitions } = makeLb(['A'], clock, { config });
    overload(lb, 'A', clock);
    const states = play(lb, 'A', rep('s', 60), clock);
    expect(states.indexOf('idle') + 1).toBe(58);
    expect(transitions()[1]).toMatch(/^A:overload->idle:succ_rate@/);
  });
});

describe('LoadBalancer: rate rules are strict (>), exact at the boundary', () => {
  it('succ_rate: a success rate equal to succ_rate is not enough, the next success recovers', () => {
    // Overloaded: vsucc 0, verr 5. 15 successes give 15/20 = 0.75 exactly (a binary fraction).
    const clock = new FakeClock();
    const config = resolveLoadBalanceConfig({ succRate: 0.75, continSuccLimit: 1000 });
    const { lb } = makeLb(['A'], clock, { config });
    overload(lb, 'A', clock);
    expect(play(lb, 'A', rep('s', 16), clock).indexOf('idle') + 1).toBe(16);
  });

  it('err_rate: an error rate equal to err_rate is not enough, the next failure overloads', () => {
    // Fresh: vsucc 15. 5 failures give 5/20 = 0.25 exactly.
    const clock = new FakeClock();
    const config = resolveLoadBalanceConfig({ errRate: 0.25, initSuccCnt: 15, continErrLimit: 1000 });
    const { lb } = makeLb(['A'], clock, { config });
    expect(firstOverload(play(lb, 'A', rep('f', 6), clock))).toBe(6);
  });
});

describe('LoadBalancer: idle_timeout and overload_timeout differ (fake clock)', () => {
  // Each deadline is kept apart: a host's window ends after idle_timeout, an overload after
  // overload_timeout, whichever is shorter, and the balancer wakes up for the earlier one.
  const run = (idleS: number, overloadS: number, overloadAt: number, times: number[]) => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const config = resolveLoadBalanceConfig({ idleTimeoutS: idleS, overloadTimeoutS: overloadS });
    const { lb } = makeLb(['A', 'B'], clock, { config });
    clock.set(t0 + overloadAt);
    overload(lb, 'A', clock);
    return times.map((dt) => {
      lb.tick(clock.set(t0 + dt));
      const a = viewOf(lb, 'A')!;
      return `${dt}: A ${a.state}${a.state === 'idle' ? ` @${a.windowStart - t0}` : ''}, B @${viewOf(lb, 'B')!.windowStart - t0}`;
    });
  };

  it('overload_timeout shorter than idle_timeout', () => {
    expect(run(10, 3, 1_000, [3_999, 4_000, 9_999, 10_000, 13_999, 14_000])).toEqual([
      '3999: A overload, B @0',
      '4000: A idle @4000, B @0',
      '9999: A idle @4000, B @0',
      '10000: A idle @4000, B @10000',
      '13999: A idle @4000, B @10000',
      '14000: A idle @14000, B @10000',
    ]);
    // B's window ends while A is overloaded: A's deadline is recomputed from overload_timeout.
    expect(run(10, 3, 8_000, [9_999, 10_000, 10_999, 11_000])).toEqual([
      '9999: A overload, B @0',
      '10000: A overload, B @10000',
      '10999: A overload, B @10000',
      '11000: A idle @11000, B @10000',
    ]);
  });

  it('overload_timeout longer than idle_timeout', () => {
    expect(run(3, 10, 1_000, [2_999, 3_000, 5_999, 6_000, 10_999, 11_000])).toEqual([
      '2999: A overload, B @0',
      '3000: A overload, B @3000',
      '5999: A overload, B @3000',
      '6000: A overload, B @6000',
      // B's window is checked at 10999 (not at 9000): a new window starts at the check.
      '10999: A overload, B @10999',
      '11000: A idle @11000, B @10999',
    ]);
  });

  it('a host recovered by successes starts a window of idle_timeout, not overload_timeout', () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const config = resolveLoadBalanceConfig({ idleTimeoutS: 3, overloadTimeoutS: 10 });
    const { lb } = makeLb(['A'], clock, { config });
    clock.set(t0 + 1_000);
    overload(lb, 'A', clock);
    lb.tick(clock.set(t0 + 3_000));
    clock.set(t0 + 5_000);
    expect(play(lb, 'A', rep('s', 10), clock).at(-1)).toBe('idle');
    const windowAt = (t: number) => (lb.tick(clock.set(t0 + t)), viewOf(lb, 'A')!.windowStart - t0);
    expect([windowAt(7_999), windowAt(8_000)]).toEqual([5_000, 8_000]);
  });
});

describe('LoadBalancer: time-based transitions (fake clock)', () => {
  it('window_err_rate: an idle window with rerr/(rsucc+rerr) = 0.7 overloads at exactly idle_timeout', () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const { lb, transitions } = makeLb(['A', 'B'], clock);
    play(lb, 'A', 'ffsffsffsf', clock); // 7 failures, 3 successes, never 3 in a row
    expect(stateOf(lb, 'A')).toBe('idle');
    lb.tick(clock.set(t0 + 14_999));
    expect(stateOf(lb, 'A')).toBe('idle');
    lb.tick(clock.set(t0 + 15_000));
    expect(stateOf(lb, 'A')).toBe('overload');
    // B had no calls in its window: a new window, not an overload.
    expect(viewOf(lb, 'B')).toMatchObject({ state: 'idle', windowStart: t0 + 15_000 });
    expect(transitions()).toEqual([`A:idle->overload:window_err_rate@${t0 + 15_000}`]);
  });

  it('below window_err_rate the window restarts at the check with idle start values', () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const { lb, transitions } = makeLb(['A'], clock);
    play(lb, 'A', 'ffsffsffss', clock); // 0.6
    lb.snapshotForReport();
    lb.tick(clock.set(t0 + 20_000)); // checked late: the new window starts now, not at t0 + 15 s
    expect(viewOf(lb, 'A')).toMatchObject({
      state: 'idle',
      vsucc: 180,
      verr: 0,
      rsucc: 0,
      rerr: 0,
      continSucc: 0,
      continErr: 0,
      windowStart: t0 + 20_000,
    });
    expect(lb.dirty).toBe(true);
    expect(transitions()).toEqual([]);
    lb.tick(clock.set(t0 + 34_999));
    play(lb, 'A', 'ffffffff', clock);
    lb.tick(clock.set(t0 + 35_000));
    expect(stateOf(lb, 'A')).toBe('overload');
  });

  it('a report at the window end closes the old window first, then counts in the new state', () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const { lb } = makeLb(['A'], clock);
    play(lb, 'A', 'ffsffsffsf', clock);
    clock.set(t0 + 15_000);
    play(lb, 'A', 's', clock);
    expect(viewOf(lb, 'A')).toMatchObject({ state: 'overload', vsucc: 1, verr: 5, rsucc: 1, continSucc: 1 });
  });

  it('overload_timeout returns a host to idle at exactly overload_timeout, seen by getHost', () => {
    const clock = new FakeClock();
    const { lb, transitions } = makeLb(['A', 'B'], clock);
    const t1 = clock.set(clock.now() + 3_000);
    overload(lb, 'A', clock);
    const seq = [pickName(lb.getHost(clock.set(t1 + 14_999))), stateOf(lb, 'A')];
    seq.push(pickName(lb.getHost(clock.set(t1 + 15_000))), stateOf(lb, 'A'));
    // A rejoins the idle queue at its tail ([B, A]) before the pick, which then rotates B.
    expect(seq).toEqual(['B', 'overload', 'B', 'idle']);
    expect(transitions()).toEqual([
      `A:idle->overload:contin_err@${t1}`,
      `A:overload->idle:overload_timeout@${t1 + 15_000}`,
    ]);
    expect(viewOf(lb, 'A')).toMatchObject({ vsucc: 180, verr: 0, windowStart: t1 + 15_000 });
    expect(queueNames(lb)).toEqual({ idle: ['A', 'B'], overload: [] });
  });

  it('overload_timeout is also seen by tick and by report (which then counts in the idle state)', () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const { lb } = makeLb(['A', 'B'], clock);
    overload(lb, 'A', clock);
    overload(lb, 'B', clock);
    lb.tick(clock.set(t0 + 15_000));
    expect([stateOf(lb, 'A'), stateOf(lb, 'B')]).toEqual(['idle', 'idle']);

    const c2 = new FakeClock();
    const second = makeLb(['A'], c2);
    overload(second.lb, 'A', c2);
    c2.set(c2.now() + 15_000);
    expect(play(second.lb, 'A', 'f', c2)).toEqual(['idle']);
    expect(viewOf(second.lb, 'A')).toMatchObject({ verr: 1, rerr: 1, continErr: 1 });
  });

  it('an overloaded host that keeps failing its probes still returns to idle after the timeout', () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const { lb } = makeLb(['A', 'B'], clock);
    overload(lb, 'A', clock);
    const seq: string[] = [];
    for (let t = t0; t <= t0 + 16_000; t += 100) {
      const r = lb.getHost(clock.set(t));
      if (r.probe && r.host) lb.report(r.host.ip, r.host.port, 1, 200, t);
      seq.push(stateOf(lb, 'A'));
    }
    expect(seq.indexOf('idle')).toBe(150); // t0 + 15 000 ms
  });
});

describe('LoadBalancer.updateRoute', () => {
  it('keeps the state of surviving hosts, adds new ones idle, removes vanished ones from both queues', () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const { lb } = makeLb(['A', 'B', 'C'], clock);
    play(lb, 'A', 'sss', clock);
    overload(lb, 'B', clock);
    overload(lb, 'C', clock);
    const before = viewOf(lb, 'B');
    const t1 = clock.set(t0 + 5_000);
    expect(lb.updateRoute(wire('A', 'B', 'D'), t1)).toEqual({
      added: 1,
      removed: 1,
      kept: 2,
      skipped: 0,
      empty: false,
    });
    expect(queueNames(lb)).toEqual({ idle: ['A', 'D'], overload: ['B'] });
    expect(viewOf(lb, 'A')).toMatchObject({ state: 'idle', rsucc: 3, vsucc: 183, windowStart: t0 });
    expect(viewOf(lb, 'B')).toEqual(before);
    expect(viewOf(lb, 'D')).toMatchObject({ state: 'idle', vsucc: 180, verr: 0, windowStart: t1 });
    expect(stateOf(lb, 'C')).toBe('absent');
    expect(lb.hosts().map(nameOf)).toEqual(['A', 'B', 'D']);
    expect([lb.size, lb.idleCount, lb.overloadCount]).toEqual([3, 2, 1]);
  });

  it('a removed overloaded host is never probed again, and its late reports are ignored', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A', 'B', 'C'], clock);
    overload(lb, 'C', clock);
    lb.updateRoute(wire('A', 'B'), clock.now());
    expect(queueNames(lb)).toEqual({ idle: ['A', 'B'], overload: [] });
    const seq = picks(lb, 30, clock);
    expect(seq).toEqual(rep('A,B,', 15).split(',').slice(0, 30));
    expect(lb.report(HOSTS.C.ip, HOSTS.C.port, 0, undefined, clock.now())).toBe(false);
    expect(lb.snapshotForReport().map(nameOf)).toEqual(['A', 'B']);
  });

  it('a removed host that comes back starts fresh', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A', 'B'], clock);
    overload(lb, 'B', clock);
    lb.updateRoute(wire('A'), clock.now());
    lb.updateRoute(wire('A', 'B'), clock.now());
    expect(viewOf(lb, 'B')).toMatchObject({ state: 'idle', vsucc: 180, verr: 0, rerr: 0 });
    expect(queueNames(lb)).toEqual({ idle: ['A', 'B'], overload: [] });
  });

  it('removing a host in the middle keeps the round-robin order of the rest', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A', 'B', 'C', 'D'], clock);
    expect(picks(lb, 2, clock)).toEqual(['A', 'B']);
    lb.updateRoute(wire('A', 'B', 'D'), clock.now());
    expect(picks(lb, 5, clock)).toEqual(['D', 'A', 'B', 'D', 'A']);
  });

  it('a route that comes back empty reports empty and answers NOEXIST', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A', 'B'], clock);
    overload(lb, 'B', clock);
    expect(lb.updateRoute([], clock.now())).toEqual({
      added: 0,
      removed: 2,
      kept: 0,
      skipped: 0,
      empty: true,
    });
    expect(queueNames(lb)).toEqual({ idle: [], overload: [] });
    expect(picks(lb, 10, clock)).toEqual(rep('NOEXIST,', 10).split(',').slice(0, 10));
  });

  it('accepts wire or unsigned ips, skips out-of-range entries and repeats', () => {
    const clock = new FakeClock();
    const lb = new LoadBalancer(1, 2);
    const result = lb.updateRoute(
      [
        { ip: HOSTS.C.ip, port: HOSTS.C.port }, // unsigned
        { ip: toWireIp(HOSTS.C.ip), port: HOSTS.C.port }, // same host, wire form
        { ip: HOSTS.A.ip, port: 70_000 },
        { ip: 2 ** 32, port: 1 },
        { ip: 1.5, port: 1 },
      ],
      clock.now(),
    );
    expect(result).toEqual({ added: 1, removed: 0, kept: 0, skipped: 4, empty: false });
    expect(lb.hosts()).toEqual([{ ip: -1062731343, port: 8003 }]);
    expect(lb.report(toWireIp(HOSTS.C.ip), HOSTS.C.port, 0, undefined, clock.now())).toBe(true);
    expect(lb.report(HOSTS.C.ip, HOSTS.C.port, 0, undefined, clock.now())).toBe(true);
    expect(viewOf(lb, 'C')?.rsucc).toBe(2);
  });
});

describe('LoadBalancer: route state, reports to the reporter, unknown hosts', () => {
  it('needsRefresh: stale after update_timeout unless a pull is in flight', () => {
    const clock = new FakeClock();
    const lb = new LoadBalancer(1, 2);
    const seq: unknown[] = [lb.state, lb.needsRefresh(clock.now()), lb.markPulling(), lb.markPulling()];
    seq.push(lb.state, lb.needsRefresh(clock.now() + 60_000));
    const t1 = clock.now();
    lb.updateRoute(wire('A'), t1);
    seq.push(lb.state, lb.lastUpdateMs === t1, lb.needsRefresh(t1 + 15_000), lb.needsRefresh(t1 + 15_001));
    seq.push(lb.markPulling(), lb.needsRefresh(t1 + 15_001), lb.pullAborted(), lb.pullAborted());
    seq.push(lb.needsRefresh(t1 + 15_001));
    expect(seq).toEqual([
      RouteState.New,
      true,
      true,
      false,
      RouteState.Pulling,
      false,
      RouteState.New,
      true,
      false,
      true,
      true,
      false,
      true,
      false,
      true,
    ]);
  });

  it('ignores reports for hosts not in the route (and invalid ports), changing nothing', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A'], clock);
    lb.snapshotForReport();
    expect(lb.report(HOSTS.D.ip, HOSTS.D.port, 1, undefined, clock.now())).toBe(false);
    expect(lb.report(HOSTS.A.ip, HOSTS.A.port + 65_536, 1, undefined, clock.now())).toBe(false);
    expect(lb.report(HOSTS.A.ip, -1, 1, undefined, clock.now())).toBe(false);
    expect(lb.dirty).toBe(false);
    expect(viewOf(lb, 'A')).toMatchObject({ verr: 0, rerr: 0 });
  });

  it('snapshotForReport carries real counters and overload flags in wire form and clears the flags', () => {
    const clock = new FakeClock();
    const { lb } = makeLb(['A', 'C'], clock);
    const flags = () => [lb.dirty, lb.stateChangedSinceReport];
    const seq: unknown[] = [flags()];
    lb.snapshotForReport();
    seq.push(flags());
    lb.getHost(clock.now());
    seq.push(flags());
    play(lb, 'A', 'ssf', clock);
    seq.push(flags());
    play(lb, 'C', rep('f', 10), clock);
    seq.push(flags());
    expect(lb.snapshotForReport()).toEqual([
      { ip: toWireIp(HOSTS.A.ip), port: 8001, succ: 2, err: 1, overload: false, total_succ: 2, total_err: 1 },
      // Report before reset (DESIGN §5): the ten failures that overloaded C, with its new flag.
      { ip: -1062731343, port: 8003, succ: 0, err: 10, overload: true, total_succ: 0, total_err: 10 },
    ]);
    seq.push(flags());
    expect(seq).toEqual([
      [true, false],
      [false, false],
      [false, false],
      [true, false],
      [true, true],
      [false, false],
    ]);
    // Issue 16: the totals never reset, whatever windows and states do.
    play(lb, 'A', 'ss', clock);
    clock.set(clock.now() + 60_000);
    lb.getHost(clock.now());
    play(lb, 'A', 's', clock);
    const a = lb.snapshotForReport().find((r) => r.port === 8001);
    expect(a).toMatchObject({ total_succ: 5, total_err: 1 });
  });

  it('reports the counters a host had before a reset once, and later calls in the next report', () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const { lb } = makeLb(['A'], clock);
    const counts = () => lb.snapshotForReport().map((r) => [r.succ, r.err, r.overload]);
    // 5 successes then 10 failures: overloaded by contin_err; the report carries all 15 calls.
    play(lb, 'A', 'sssss' + rep('f', 10), clock);
    play(lb, 'A', 'f', clock); // a probe that fails after the reset, before the report is sent
    expect([lb.stateChangedSinceReport, counts(), lb.dirty]).toEqual([true, [[5, 10, true]], true]);
    expect(counts()).toEqual([[0, 1, true]]);
    expect(lb.dirty).toBe(false);
    // An idle window that ends unreported (reset at idle_timeout) is reported before its reset too.
    clock.set(t0 + 15_000); // overload timeout: idle again (reset, nothing new to carry)
    lb.tick(clock.now());
    expect(counts()).toEqual([[0, 1, false]]);
    play(lb, 'A', 'ss', clock);
    lb.tick(clock.set(t0 + 30_000));
    expect(viewOf(lb, 'A')).toMatchObject({ state: 'idle', rsucc: 0, windowStart: t0 + 30_000 });
    expect(counts()).toEqual([[2, 0, false]]);
    expect(counts()).toEqual([[0, 0, false]]);
  });

  it('reports every transition to the listener with route, host, states and reason', () => {
    const clock = new FakeClock();
    const t0 = clock.now();
    const { lb, events } = makeLb(['C'], clock);
    overload(lb, 'C', clock);
    lb.tick(t0 + 15_000);
    expect(events).toEqual([
      {
        modid: 1,
        cmdid: 2,
        ip: HOSTS.C.ip,
        port: 8003,
        from: 'idle',
        to: 'overload',
        reason: 'contin_err',
        atMs: t0,
      },
      {
        modid: 1,
        cmdid: 2,
        ip: HOSTS.C.ip,
        port: 8003,
        from: 'overload',
        to: 'idle',
        reason: 'overload_timeout',
        atMs: t0 + 15_000,
      },
    ]);
  });
});

describe('HostTable: host state and queues', () => {
  it('guards transitions: toIdle only from overload, toOverload only from idle', () => {
    const cfg = DEFAULT_LOAD_BALANCE_CONFIG;
    const t = new HostTable();
    const h = t.add(toWireIp(HOSTS.C.ip), 80, cfg, 100);
    expect(t.ip[h]).toBe(HOSTS.C.ip);
    expect([
      t.toIdle(h, cfg, 200),
      t.toOverload(h, cfg, 300),
      t.toOverload(h, cfg, 400),
      t.resetWindow(h, cfg, 450),
    ]).toEqual([false, true, false, false]);
    expect(t.view(h)).toMatchObject({ state: 'overload', overloadStart: 300, vsucc: 0, verr: 5 });
    expect([t.toIdle(h, cfg, 500), t.toIdle(h, cfg, 600)]).toEqual([true, false]);
    expect(t.view(h)).toMatchObject({ state: 'idle', windowStart: 500, vsucc: 180, verr: 0 });
  });

  it('pushes, removes and rotates in O(1) keeping FIFO order', () => {
    const cfg = DEFAULT_LOAD_BALANCE_CONFIG;
    const t = new HostTable();
    const [a, b, c] = [1, 2, 3].map((p) => t.add(1, p, cfg, 0)) as [number, number, number];
    let q = NO_HOST; // the queue is named by its head; rotating moves the head to the tail
    const rotate = () => {
      const h = q;
      if (h !== NO_HOST) q = t.next[h]!;
      return h;
    };
    const order = () => t.queue(q).map((h) => t.port[h]);
    expect(rotate()).toBe(NO_HOST);
    q = t.enqueue(q, a);
    expect(rotate()).toBe(a);
    q = t.enqueue(q, b);
    q = t.enqueue(q, c);
    const seq = [order()];
    rotate();
    seq.push(order());
    q = t.dequeue(q, c);
    seq.push(order());
    q = t.dequeue(q, a);
    seq.push(order());
    q = t.dequeue(q, b);
    seq.push(order());
    expect(seq).toEqual([[1, 2, 3], [2, 3, 1], [2, 1], [2], []]);
    expect(q).toBe(NO_HOST);
  });

  it('gives a freed slot, fully reset, to the next host added', () => {
    const cfg = DEFAULT_LOAD_BALANCE_CONFIG;
    const t = new HostTable();
    const h = t.add(1, 1, cfg, 0);
    t.recordFailure(h, cfg, 5000);
    t.toOverload(h, cfg, 10);
    t.free(h);
    const again = t.add(2, 2, cfg, 20);
    expect(again).toBe(h);
    expect(t.view(again)).toEqual({
      ip: 2,
      port: 2,
      state: 'idle',
      vsucc: 180,
      verr: 0,
      rsucc: 0,
      rerr: 0,
      continSucc: 0,
      continErr: 0,
      windowStart: 20,
      overloadStart: NaN,
      weight: 1,
    });
    expect(t.takeReportCounters(again)).toEqual({ succ: 0, err: 0, pending: false });
  });
});

describe('LoadBalancer host lookup: small routes searched, big ones indexed', () => {
  const hostsOf = (n: number, from = 0): HostInfo[] =>
    Array.from({ length: n }, (_, i) => ({
      ip: toWireIp(ipToNumber(`10.9.${(from + i) >> 8}.${(from + i) & 255}`)),
      port: 6000 + from + i,
    }));

  it('finds every host of a route as it grows past the index threshold and shrinks back', () => {
    const lb = new LoadBalancer(1, 1);
    for (const [n, from] of [
      [5, 0],
      [40, 0],
      [40, 20], // 20 kept, 20 removed, 20 added
      [3, 57],
    ] as const) {
      const list = hostsOf(n, from);
      lb.updateRoute(list, 0);
      expect(lb.size).toBe(n);
      expect(lb.hosts()).toEqual(list); // route order: kept hosts first, in their order
      for (const h of list) expect(lb.report(h.ip, h.port, RetCode.SUCC, undefined, 1)).toBe(true);
      // A host of an earlier list that is gone now is not found.
      const gone = hostsOf(1, from === 0 ? 100 : 0)[0]!;
      expect(lb.report(gone.ip, gone.port, RetCode.SUCC, undefined, 1)).toBe(false);
      expect(lb.host(gone.ip, gone.port)).toBeUndefined();
    }
  });
});
