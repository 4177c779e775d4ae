import { describe, expect, it } from 'vitest';
import { AgentCore, MAX_RESULTS_PER_REPORT } from '../src/agent/agent-core.js';
import { DEFAULT_LOAD_BALANCE_CONFIG } from '../src/agent/lb-config.js';
import {
  encodeFrame,
  encodeMessage,
  ipToWire,
  MsgId,
  RetCode,
  type ReportStatusRequest,
} from '../src/protocol/index.js';

function core() {
  let now = 1_000_000;
  const pulls: string[] = [];
  const reports: ReportStatusRequest[] = [];
  const changes: Array<[string, number | undefined]> = [];
  const c = new AgentCore({
    config: DEFAULT_LOAD_BALANCE_CONFIG,
    reportIntervalS: 1,
    callerIp: ipToWire('10.1.1.1'),
    now: () => now,
    unixNow: () => 1_700_000_000,
    links: {
      pull: (m, cmd) => (pulls.push(`${m}:${cmd}`), true),
      report: (r) => reports.push(r),
      routeChanged: (m, cmd, hosts) => changes.push([`${m}:${cmd}`, hosts?.length]),
    },
  });
  return { c, pulls, reports, changes, advance: (ms: number) => (now += ms) };
}

const twoHosts = (modid: number, cmdid: number) => ({
  modid,
  cmdid,
  host: [
    { ip: ipToWire('10.0.0.1'), port: 1 },
    { ip: ipToWire('10.0.0.2'), port: 2 },
  ],
});

describe('AgentCore', () => {
  it('answers NOEXIST for an unknown route and asks dns once, not on every call', () => {
    const { c, pulls, advance } = core();
    expect(c.getHost(9, 9).retcode).toBe(RetCode.NOEXIST);
    c.applyRoute({ modid: 9, cmdid: 9, host: [] });
    for (let i = 0; i < 100; i++) expect(c.getHost(9, 9).retcode).toBe(RetCode.NOEXIST);
    expect(pulls).toEqual(['9:9']);
    // After update_timeout the route is asked for again...
    advance(DEFAULT_LOAD_BALANCE_CONFIG.updateTimeoutS * 1000 + 1);
    c.getHost(9, 9);
    expect(pulls).toEqual(['9:9', '9:9']);
    // ...and an empty route nobody asks for is forgotten: random ids cannot pile up.
    advance(DEFAULT_LOAD_BALANCE_CONFIG.updateTimeoutS * 1000 + 1);
    c.tick();
    expect(c.routeCount).toBe(0);
  });

  it('splits the statistics of a huge route over several frames that each fit', () => {
    const { c, reports } = core();
    const host = Array.from({ length: 4000 }, (_, i) => ({
      ip: ipToWire('200.0.0.0') - i,
      port: 60000 + (i % 5000),
    }));
    c.applyRoute({ modid: 1, cmdid: 1, host });
    c.report(1, 1, host[0]!.ip, host[0]!.port, 1, 5000);
    c.tick();
    expect(reports.length).toBe(Math.ceil(4000 / MAX_RESULTS_PER_REPORT));
    expect(reports.reduce((n, r) => n + r.results.length, 0)).toBe(4000);
    for (const r of reports)
      expect(() =>
        encodeFrame(MsgId.ReportStatusRequest, encodeMessage(MsgId.ReportStatusRequest, r)),
      ).not.toThrow();
  });

  it('reports at once on a state change and at most once per report_interval otherwise', () => {
    const { c, reports, advance } = core();
    c.applyRoute({
      modid: 2,
      cmdid: 1,
      host: [
        { ip: 1, port: 1 },
        { ip: 2, port: 2 },
      ],
    });
    c.report(2, 1, 1, 1, 0);
    c.tick();
    expect(reports).toHaveLength(0); // dirty, but the interval has not passed
    advance(1000);
    c.report(2, 1, 1, 1, 0);
    c.tick();
    expect(reports).toHaveLength(1);
    for (let i = 0; i < 10; i++) c.report(2, 1, 2, 2, 1); // 10 consecutive errors: overloaded
    expect(reports).toHaveLength(2);
    expect(reports[1]!.results.find((r) => r.port === 2)).toMatchObject({ overload: true });
    c.tick();
    expect(reports).toHaveLength(2);
  });

  it('a pull dns never answers is abandoned after 3 s: the next request asks again', () => {
    const { c, pulls, advance } = core();
    expect(c.getHost(5, 5).retcode).toBe(RetCode.NOEXIST);
    advance(2_999);
    expect(c.getHost(5, 5).retcode).toBe(RetCode.NOEXIST);
    expect(pulls).toEqual(['5:5']); // still in flight: no second pull
    advance(1);
    expect(c.getHost(5, 5).retcode).toBe(RetCode.NOEXIST);
    expect(pulls).toEqual(['5:5', '5:5']);
    // A stale route with hosts whose refresh is lost is asked for again the same way.
    c.applyRoute(twoHosts(5, 5));
    advance(DEFAULT_LOAD_BALANCE_CONFIG.updateTimeoutS * 1000 + 1);
    expect(c.getHost(5, 5).retcode).toBe(RetCode.SUCC);
    expect(pulls).toHaveLength(3);
    advance(2_999);
    c.getHost(5, 5);
    expect(pulls).toHaveLength(3);
    advance(1);
    c.getHost(5, 5);
    expect(pulls).toHaveLength(4);
  });

  it('when the dns link reconnects, routes whose pull was in flight are asked for again at once', () => {
    const { c, pulls } = core();
    c.getHost(6, 1); // PULLING, no answer
    c.applyRoute(twoHosts(6, 2)); // known route (NEW)
    expect(pulls).toEqual(['6:1']);
    c.dnsReconnected();
    // Both are asked for again: the in-flight one was reset to NEW (its request died with the
    // link), and every known route re-subscribes.
    expect(pulls.sort()).toEqual(['6:1', '6:1', '6:2']);
    // ...and each only once: they are PULLING now.
    c.getHost(6, 1);
    c.getHost(6, 2);
    expect(pulls).toHaveLength(3);
  });

  it('a route pushed back empty stops serving its vanished hosts at once', () => {
    const { c, changes } = core();
    c.applyRoute(twoHosts(7, 1));
    expect(c.getHost(7, 1).retcode).toBe(RetCode.SUCC);
    c.applyRoute({ modid: 7, cmdid: 1, host: [] });
    expect(c.getHost(7, 1).retcode).toBe(RetCode.NOEXIST);
    expect(c.getRoute(7, 1)).toBeUndefined();
    expect(c.balancer(7, 1)?.size).toBe(0);
    expect(changes).toEqual([
      ['7:1', 2],
      ['7:1', undefined],
    ]);
  });

  it('a route seeded again frees its old hosts for reuse; other routes keep theirs (one host table)', () => {
    const { c } = core();
    c.seedFromCache(1, 1, twoHosts(1, 1).host);
    c.seedFromCache(2, 1, twoHosts(2, 1).host);
    const old = c.balancer(1, 1)!;
    const other = [{ ip: ipToWire('10.0.0.9'), port: 9 }];
    c.seedFromCache(1, 1, other);
    expect(old.size).toBe(0);
    expect(c.balancer(1, 1)!.hosts()).toEqual(other);
    expect(c.balancer(2, 1)!.hosts()).toEqual(twoHosts(2, 1).host);
    expect([c.getHost(2, 1), c.getHost(2, 1)].map((r) => r.host)).toEqual(twoHosts(2, 1).host);
  });
});
