import { connect } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AgentService } from '../src/agent/agent-service.js';
import { DEFAULT_LOAD_BALANCE_CONFIG } from '../src/agent/lb-config.js';
import { LarsClient } from '../src/api/index.js';
import { routeKey } from '../src/dns/route-key.js';
import { Subscriptions } from '../src/dns/subscriptions.js';
import { ipToNumber, ipToWire, RetCode } from '../src/protocol/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';
import { startTestDns } from './helpers/dns.js';
import { waitFor, waitForAsync } from './helpers/latch.js';
import { rawGetRouteFrame, RawRouteClient } from './helpers/raw-route-client.js';

/**
 * Issue 11, item 3: subscriptions to routes dns does not have expire and are few per connection;
 * the agent's later pull subscribes again. Also: an agent's quiet connection survives the
 * handshake timeout, an idle agent holds none.
 */

const k = routeKey;

describe('Subscriptions (unknown routes)', () => {
  it('expires subscriptions to absent routes in the order they were last asked for', () => {
    const subs = new Subscriptions<string>();
    subs.subscribe('a', k(1, 1));
    subs.subscribeAbsent('a', k(9, 1), 100, 10);
    subs.subscribeAbsent('a', k(9, 2), 200, 10);
    subs.subscribeAbsent('b', k(9, 1), 150, 10);
    expect(subs.size).toBe(4);
    expect(subs.absentSize).toBe(3);
    // Asking again renews: (9,1) on a now lives to 300 and is the youngest.
    subs.subscribeAbsent('a', k(9, 1), 300, 10);
    expect(subs.expire(199, () => false)).toBe(1); // b's (9,1)
    expect([...subs.subscribers(k(9, 1))]).toEqual(['a']);
    expect(subs.expire(250, () => false)).toBe(1); // a's (9,2)
    expect(subs.subscriberCount(k(9, 2))).toBe(0);
    // The route appeared before the expiry: the subscription stays, as an ordinary one.
    expect(subs.expire(400, (key) => key === k(9, 1))).toBe(0);
    expect([...subs.subscribers(k(9, 1))]).toEqual(['a']);
    expect(subs.absentSize).toBe(0);
    expect(subs.expire(10_000, () => false)).toBe(0);
    expect(subs.size).toBe(2);
    expect(subs.stats.absentExpired).toBe(2);
  });

  it('a route goes from one subscriber to several and back, whichever connection leaves first', () => {
    const subs = new Subscriptions<string>();
    const r = k(5, 5);
    subs.subscribe('a', r);
    subs.subscribe('a', r); // asking again changes nothing
    expect([...subs.subscribers(r)]).toEqual(['a']);
    subs.subscribe('b', r);
    subs.subscribe('c', r);
    expect(subs.subscriberCount(r)).toBe(3);
    subs.drop('a');
    expect([...subs.subscribers(r)].sort()).toEqual(['b', 'c']);
    subs.drop('c');
    expect([...subs.subscribers(r)]).toEqual(['b']);
    subs.subscribe('a', r);
    expect([...subs.subscribers(r)].sort()).toEqual(['a', 'b']);
    subs.drop('b');
    subs.drop('a');
    expect(subs.subscriberCount(r)).toBe(0);
    expect([...subs.subscribers(r)]).toEqual([]);
    expect(subs.size).toBe(0);
  });

  it('caps absent subscriptions per connection, dropping the oldest; present ones do not count', () => {
    const subs = new Subscriptions<string>();
    for (let i = 0; i < 50; i++) subs.subscribe('a', k(1, i));
    for (let i = 0; i < 1_000; i++) subs.subscribeAbsent('a', k(9, i), 1_000 + i, 100);
    expect(subs.absentSize).toBe(100);
    expect(subs.size).toBe(150);
    expect(subs.stats.absentEvicted).toBe(900);
    expect(subs.subscriberCount(k(9, 899))).toBe(0);
    expect(subs.subscriberCount(k(9, 900))).toBe(1);
    expect(subs.subscriberCount(k(1, 0))).toBe(1);
    // A route that appears stops expiring when asked for again.
    subs.subscribe('a', k(9, 999));
    expect(subs.absentSize).toBe(99);
    subs.drop('a');
    expect(subs.size).toBe(0);
    expect(subs.absentSize).toBe(0);
  });

  it('a removed route keeps its subscribers only until it expires', () => {
    const subs = new Subscriptions<string>();
    subs.subscribe('a', k(1, 1));
    subs.subscribe('b', k(1, 1));
    subs.routeRemoved(k(1, 1), 500, 10);
    expect(subs.absentSize).toBe(2);
    expect(subs.expire(499, () => false)).toBe(0);
    expect(subs.expire(500, () => false)).toBe(2);
    expect(subs.size).toBe(0);
  });
});

describe.each(backends({ memory: false }).filter((b) => b.kind === 'sqlite'))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'dns subscriptions to unknown routes'), () => {
    it('a flood of made-up ids leaves at most unknown_route_max subscriptions, and they expire', async () => {
      const { store } = await freshStore(b);
      await store.addHost(1, 1, ipToNumber('10.0.0.1'), 80);
      const { dns, port } = await startTestDns(store, {
        register: false,
        unknownRouteTtlMs: 300,
        maxUnknownRoutesPerConnection: 100,
      });
      const c = await RawRouteClient.connect(port);
      onTestFinished(() => c.close());
      c.ask(1, 1);
      await c.waitForCount(1);
      const N = 5_000;
      for (let i = 0; i < N; i++) c.ask(50_000 + i, 7);
      await c.waitForCount(N + 1, 20_000);
      expect(dns.health().subscriptions).toBe(101);
      expect(dns.health().unknownRouteSubscriptions).toBe(100);
      // They expire (the real route's subscription does not) and the connection stays open.
      await waitFor(() => dns.health().subscriptions === 1, 5_000, 'unknown subscriptions expired');
      const metrics = await dns.registry.metrics();
      expect(metrics).toMatch(new RegExp(`lars_dns_unknown_route_subscriptions_dropped_total ${N}\\b`));
      expect(dns.health().connections).toBe(1);
    });

    it('a route added while its unknown subscription lives is pushed to the asker', async () => {
      const { store } = await freshStore(b);
      const { dns, port } = await startTestDns(store, { register: false, unknownRouteTtlMs: 60_000 });
      const c = await RawRouteClient.connect(port);
      onTestFinished(() => c.close());
      c.ask(4, 4);
      expect((await c.waitForCount(1)).hosts).toEqual([]);
      await store.addHost(4, 4, ipToNumber('10.0.0.4'), 44);
      await dns.pollNow();
      const pushed = await c.waitForCount(2);
      expect(pushed.hosts.map((h) => h.port)).toEqual([44]);
      expect(dns.health().unknownRouteSubscriptions).toBe(1); // until the next sweep sees the route
    });

    it('the agent asks again later: an expired subscription comes back with the next pull', async () => {
      const { store } = await freshStore(b);
      const { dns, port } = await startTestDns(store, { register: false, unknownRouteTtlMs: 200 });
      const agent = new AgentService({
        host: '127.0.0.1',
        ports: [0],
        dns: { host: '127.0.0.1', port },
        reporter: undefined,
        // update_timeout 1 s: the agent forgets an empty route after 1 s and asks again.
        lb: { ...DEFAULT_LOAD_BALANCE_CONFIG, updateTimeoutS: 1 },
        reportIntervalS: 1,
        cacheDir: undefined,
        callerIp: ipToWire('127.0.0.1'),
        backoff: { initialMs: 20, maxMs: 200, jitter: 0.2 },
      });
      const { ports } = await agent.start();
      onTestFinished(() => agent.destroy());
      // An agent that was asked nothing holds no connection to dns (it would be cut at handshake_timeout).
      expect(agent.health().dns).toBe('idle');
      expect(dns.health().connections).toBe(0);
      const client = new LarsClient({ host: '127.0.0.1', ports, timeoutMs: 10_000 });
      onTestFinished(() => client.close());

      expect((await client.tryGetHost(5, 5)).retcode).toBe(RetCode.NOEXIST);
      await waitFor(() => dns.health().unknownRouteSubscriptions === 1, 5_000, 'agent subscribed');
      await waitFor(() => dns.health().subscriptions === 0, 5_000, 'subscription expired on dns');
      // The route appears now: no subscriber, nothing pushed; the agent still answers NOEXIST.
      await store.addHost(5, 5, ipToNumber('10.0.0.5'), 55);
      await dns.pollNow();
      // Its next pull (after update_timeout) subscribes again and brings the route.
      await waitForAsync(
        async () => (await client.tryGetHost(5, 5)).retcode === RetCode.SUCC,
        10_000,
        'agent pulled the route again',
      );
      expect(dns.health().subscriptions).toBe(1);
      expect(dns.health().unknownRouteSubscriptions).toBe(0);
      expect(dns.stats.queries).toBeGreaterThanOrEqual(2);
    });

    it("an agent's quiet connection outlives the handshake timeout that cuts a silent one", async () => {
      const { store } = await freshStore(b);
      await store.addHost(6, 6, ipToNumber('10.0.0.6'), 66);
      const { dns, port } = await startTestDns(store, {
        register: false,
        handshakeTimeoutMs: 400,
        headerTimeoutMs: 200,
      });
      const agent = new AgentService({
        host: '127.0.0.1',
        ports: [0],
        dns: { host: '127.0.0.1', port },
        reporter: undefined,
        lb: DEFAULT_LOAD_BALANCE_CONFIG,
        reportIntervalS: 1,
        cacheDir: undefined,
        callerIp: ipToWire('127.0.0.1'),
      });
      const { ports } = await agent.start();
      onTestFinished(() => agent.destroy());
      const client = new LarsClient({ host: '127.0.0.1', ports, timeoutMs: 10_000 });
      onTestFinished(() => client.close());
      await client.regInit(6, 6, { tries: 200, intervalMs: 25 });
      expect(agent.health().dns).toBe('connected');
      // A silent connection opened after the agent's is cut at the handshake timeout...
      const silent = connect({ host: '127.0.0.1', port });
      silent.on('error', () => {});
      onTestFinished(() => void silent.destroy());
      await new Promise<void>((r) => silent.once('close', () => r()));
      expect(dns.tcpStats.handshakeTimeouts).toBe(1);
      // ...and one that stalls inside a frame at the header timeout; the quiet agent stays.
      const stalled = connect({ host: '127.0.0.1', port });
      stalled.on('error', () => {});
      onTestFinished(() => void stalled.destroy());
      stalled.write(rawGetRouteFrame(6, 6).subarray(0, 10));
      await new Promise<void>((r) => stalled.once('close', () => r()));
      expect(dns.tcpStats.headerTimeouts).toBe(1);
      await waitFor(() => dns.health().connections === 1, 5_000, 'cut connections gone');
      expect(agent.health().dns).toBe('connected');
      expect(dns.tcpStats.connectionsAccepted).toBe(3);
    });
  });
});
