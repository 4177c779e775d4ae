import { existsSync } from 'node:fs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AgentService, type AgentServiceOptions } from '../src/agent/agent-service.js';
import { ThreadedAgent } from '../src/agent/agent-threads.js';
import { FastPathSegment } from '../src/agent/fast-path-segment.js';
import { DEFAULT_LOAD_BALANCE_CONFIG } from '../src/agent/lb-config.js';
import { FastPathError, LarsClient } from '../src/api/index.js';
import { ErrorCode } from '../src/errors.js';
import { loadNative } from '../src/native/index.js';
import { ipToNumber, ipToWire, RetCode } from '../src/protocol/index.js';
import {
  FAST_PATH_VERSION,
  fastPathSegmentName,
  findSlot,
  H_PID,
  H_VERSION,
  S_SEQ,
} from '../src/protocol/shm-table.js';
import { openStore, type Store } from '../src/store/index.js';
import { startTestDns } from './helpers/dns.js';
import { segmentWords, skipNoAddon, slotPlace, startPeer } from './helpers/fast-path.js';
import { waitFor } from './helpers/latch.js';
import { unusedPort } from './helpers/ports.js';

const WARM = { tries: 200, intervalMs: 25 };
const uid = process.getuid?.() ?? 0;

async function stack(hosts: Array<[number, number, string, number, number?]>) {
  const store: Store = await openStore('sqlite::memory:');
  onTestFinished(() => store.close());
  await store.migrate();
  for (const [m, c, ip, port, weight] of hosts)
    await store.addHost(m, c, ipToNumber(ip), port, weight ? { weight } : undefined);
  const { port } = await startTestDns(store, { register: false });
  return { store, dnsPort: port };
}

async function startAgent(dnsPort: number, extra: Partial<AgentServiceOptions> = {}) {
  const agent = new AgentService({
    host: '127.0.0.1',
    ports: [await unusedPort()],
    dns: { host: '127.0.0.1', port: dnsPort },
    reporter: undefined,
    lb: DEFAULT_LOAD_BALANCE_CONFIG,
    reportIntervalS: 1,
    cacheDir: undefined,
    callerIp: ipToWire('127.0.0.1'),
    backoff: { initialMs: 20, maxMs: 200, jitter: 0.2 },
    fastPath: {},
    ...extra,
  });
  const { ports } = await agent.start();
  onTestFinished(() => agent.destroy());
  return { agent, ports };
}

function client(ports: number[], fastPath: 'auto' | 'require' | 'off' = 'auto'): LarsClient {
  const c = new LarsClient({ host: '127.0.0.1', ports, timeoutMs: 10_000, fastPath });
  onTestFinished(() => c.close());
  return c;
}

type Status = {
  getHost: number;
  reports: number;
  fallbacks: Record<string, number>;
  ports: Array<{ mapped: boolean }>;
};
const status = (c: LarsClient) => c.fastPathStatus() as unknown as Status;

/** The seqlock word of route (modid, cmdid)'s slot, found through the segment's index as a client finds it. */
function slotSeq(w: Int32Array, modid: number, cmdid: number): number {
  const at = findSlot(w, slotPlace(w), modid, cmdid);
  expect(at).toBeGreaterThanOrEqual(0);
  return at + S_SEQ;
}

/** regInit, then wait until the agent wrote the route into its table. */
async function warm(c: LarsClient, agent: AgentService, modid: number, cmdid: number) {
  await c.regInit(modid, cmdid, WARM);
  await waitFor(() => agent.fastPath!.routes > 0, 5_000, 'route published');
}

describe.skipIf(skipNoAddon)('fast path: agent and SDK', () => {
  it('answers from shared memory once the route is in the table; a route not in it goes over UDP', async () => {
    const { dnsPort } = await stack([
      [1, 1, '10.0.0.1', 1],
      [1, 1, '10.0.0.2', 2],
    ]);
    const { agent, ports } = await startAgent(dnsPort);
    const c = client(ports);
    // Unknown to the agent: not in the table, so UDP, which answers NOEXIST and pulls the route.
    expect((await c.tryGetHost(1, 1)).retcode).toBe(RetCode.NOEXIST);
    expect(status(c).fallbacks['route-missing']).toBe(1);
    await warm(c, agent, 1, 1);
    const picks: number[] = [];
    for (let i = 0; i < 6; i++) picks.push((await c.getHost(1, 1)).port);
    expect(picks.sort()).toEqual([1, 1, 1, 2, 2, 2]);
    expect(status(c).getHost).toBe(6);
    expect(agent.core.stats.getHost).toBe(1); // only the first, over UDP
    await waitFor(() => agent.fastPath!.stats.getHost === 6, 5_000, 'agent counted the table picks');
    // A loop that awaits nothing but shared-memory answers still lets timers and I/O run.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    onTestFinished(() => clearInterval(timer));
    for (let i = 0; i < 20_000 && ticks < 2; i++) await c.getHost(1, 1);
    expect(ticks).toBeGreaterThanOrEqual(2);
  });

  it('a weighted route stays on UDP (smooth weighted round robin is not in the table)', async () => {
    const { dnsPort } = await stack([
      [2, 1, '10.0.0.1', 1, 3],
      [2, 1, '10.0.0.2', 2, 1],
    ]);
    const { agent, ports } = await startAgent(dnsPort);
    const c = client(ports);
    await c.regInit(2, 1, WARM);
    await waitFor(() => agent.fastPath!.stats.leftOut.weighted > 0, 5_000, 'weighted route left out');
    const picks: number[] = [];
    for (let i = 0; i < 8; i++) picks.push((await c.getHost(2, 1)).port);
    expect(picks.filter((p) => p === 1)).toHaveLength(6);
    expect(status(c).getHost).toBe(0);
    expect(status(c).fallbacks['route-missing']).toBe(8);
  });

  it('a full ring sends the rest over UDP: every report reaches the balancer once', async () => {
    const { dnsPort } = await stack([[3, 1, '10.0.0.3', 3]]);
    const { agent, ports } = await startAgent(dnsPort, { fastPath: { ringEntries: 16 } });
    const c = client(ports);
    await warm(c, agent, 3, 1);
    const before = agent.core.stats.report;
    // Synchronously: the agent cannot drain in between.
    for (let i = 0; i < 100; i++) c.report(3, 1, '10.0.0.3', 3, 0);
    expect(status(c).reports).toBe(16);
    expect(status(c).fallbacks['ring-full']).toBe(84);
    await waitFor(() => agent.core.stats.report === before + 100, 5_000, 'all 100 reports applied');
    expect(agent.core.balancer(3, 1)!.host(ipToNumber('10.0.0.3'), 3)!.rsucc).toBe(100);
  });

  it('a slot being rewritten (odd sequence) sends the call over UDP at once', async () => {
    const { dnsPort } = await stack([[4, 1, '10.0.0.4', 4]]);
    const { agent, ports } = await startAgent(dnsPort);
    const c = client(ports);
    await warm(c, agent, 4, 1);
    const w = segmentWords(ports[0]!);
    const at = slotSeq(w, 4, 1);
    const seq = Atomics.load(w, at);
    expect(seq & 1).toBe(0);
    Atomics.store(w, at, seq + 1); // as the agent does while rewriting
    expect(await c.getHost(4, 1)).toEqual({ ip: '10.0.0.4', port: 4 });
    expect(status(c).fallbacks.rewriting).toBe(1);
    expect(agent.core.stats.getHost).toBe(1);
    Atomics.store(w, at, seq);
    expect(await c.getHost(4, 1)).toEqual({ ip: '10.0.0.4', port: 4 });
    expect(status(c).getHost).toBe(1);
  });

  it('a closed segment goes back to UDP; a replacing agent is mapped again', async () => {
    const { dnsPort } = await stack([[5, 1, '10.0.0.5', 5]]);
    const first = await startAgent(dnsPort);
    const c = client(first.ports);
    await warm(c, first.agent, 5, 1);
    await c.getHost(5, 1);
    expect(status(c).getHost).toBe(1);
    // The agent stops its fast path (as at shutdown): the client notices at its next call.
    first.agent.fastPath!.close();
    expect(await c.getHost(5, 1)).toEqual({ ip: '10.0.0.5', port: 5 });
    expect(status(c).fallbacks.closed).toBe(1);
    expect(status(c).ports[0]!.mapped).toBe(false);
    // A second agent on the same port number (a replacement) creates the segment again.
    await first.agent.destroy();
    const second = await startAgent(dnsPort, { ports: first.ports });
    await warm(c, second.agent, 5, 1);
    await waitFor(
      () => status(c).ports[0]!.mapped || (void c.tryGetHost(5, 1), false),
      5_000,
      'mapped again',
    );
    const before = status(c).getHost;
    await c.getHost(5, 1);
    expect(status(c).getHost).toBe(before + 1);
  });

  it('a replacing agent closes the former segment under its name, so old clients move over', async () => {
    const { dnsPort } = await stack([[6, 1, '10.0.0.6', 6]]);
    // A UDP-only agent answers fallbacks; the two segments under its port play two agents' tables.
    const { ports } = await startAgent(dnsPort, { fastPath: false });
    const port = ports[0]!;
    const addon = loadNative()!;
    const geometry = { routeSlots: 16, hostsPerRoute: 4, ringEntries: 16 };
    const name = fastPathSegmentName(uid, port);
    const old = FastPathSegment.create(addon, { name, port, probeNum: 10, bindIp: 0, ...geometry });
    onTestFinished(() => old.close());
    old.publish(6, 1, [{ ip: ipToWire('10.0.1.1'), port: 61 }], []);
    const c = client([port]);
    expect(await c.getHost(6, 1)).toEqual({ ip: '10.0.1.1', port: 61 });
    const fresh = FastPathSegment.create(addon, { name, port, probeNum: 10, bindIp: 0, ...geometry });
    onTestFinished(() => fresh.close());
    expect(fresh.replacedFormer).toBe(true);
    fresh.publish(6, 1, [{ ip: ipToWire('10.0.2.2'), port: 62 }], []);
    // The next call finds the old slot closed for good: UDP answers (the agent pulls the route).
    await c.tryGetHost(6, 1);
    expect(status(c).fallbacks.closed).toBe(1);
    // Then the name is mapped again: the new table answers.
    expect(await c.getHost(6, 1)).toEqual({ ip: '10.0.2.2', port: 62 });
  });

  it('segments of agents that died are removed when an agent starts', async () => {
    const port = await unusedPort();
    const name = fastPathSegmentName(uid, port);
    const seg = FastPathSegment.create(loadNative()!, {
      name,
      port,
      probeNum: 10,
      bindIp: 0,
      routeSlots: 16,
      hostsPerRoute: 4,
      ringEntries: 16,
    });
    onTestFinished(() => seg.close());
    const exited = startPeer({ op: 'picks', ports: [1], modid: 1, cmdid: 1, n: 0, mode: 'off' });
    await exited.exited;
    segmentWords(port)[H_PID] = exited.pid; // as if that (now dead) process had created it
    const { dnsPort } = await stack([[1, 1, '10.0.0.1', 1]]);
    await startAgent(dnsPort);
    expect(existsSync(`/dev/shm${name}`)).toBe(false);
  });

  it('an agent that stopped beating is left for UDP', async () => {
    const { dnsPort } = await stack([[7, 1, '10.0.0.7', 7]]);
    // An agent without a fast path serves UDP; a bare segment under its port plays a dead agent's.
    const { ports } = await startAgent(dnsPort, { fastPath: false });
    const seg = FastPathSegment.create(loadNative()!, {
      name: fastPathSegmentName(uid, ports[0]!),
      port: ports[0]!,
      probeNum: 10,
      bindIp: 0,
      routeSlots: 16,
      hostsPerRoute: 4,
      ringEntries: 16,
    });
    onTestFinished(() => seg.close());
    seg.publish(7, 1, [{ ip: ipToWire('10.9.9.9'), port: 99 }], []);
    const c = client(ports);
    expect(await c.getHost(7, 1)).toEqual({ ip: '10.9.9.9', port: 99 }); // from the table
    seg.heartbeat(Date.now() - 60_000);
    // Noticed by the client's timer (or every 4096 calls); then UDP answers from the live agent.
    await waitFor(() => !status(c).ports[0]!.mapped, 5_000, 'stale segment dropped');
    await c.regInit(7, 1, WARM);
    expect(await c.getHost(7, 1)).toEqual({ ip: '10.0.0.7', port: 7 });
    // A client started now does not map it at all.
    const late = client(ports);
    expect(await late.getHost(7, 1)).toEqual({ ip: '10.0.0.7', port: 7 });
    expect(status(late).fallbacks.stale).toBe(1);
    expect(() => client(ports, 'require')).toThrow(
      expect.objectContaining({ code: ErrorCode.FAST_PATH, reason: 'stale' }),
    );
  });

  it('no segment, another layout version, a remote agent: UDP in auto, LARS_ERR_FAST_PATH in require', async () => {
    const { dnsPort } = await stack([[8, 1, '10.0.0.8', 8]]);
    const noFast = await startAgent(dnsPort, { fastPath: false });
    const c = client(noFast.ports);
    await c.regInit(8, 1, WARM);
    expect(await c.getHost(8, 1)).toEqual({ ip: '10.0.0.8', port: 8 });
    expect(status(c).fallbacks['no-segment']).toBe(1);
    let err: unknown;
    try {
      client(noFast.ports, 'require');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FastPathError);
    expect(err).toMatchObject({ code: 'LARS_ERR_FAST_PATH', reason: 'no-segment' });

    const { agent, ports } = await startAgent(dnsPort);
    await warm(client(ports), agent, 8, 1);
    const w = segmentWords(ports[0]!);
    w[H_VERSION] = 99;
    const other = client(ports);
    expect(await other.getHost(8, 1)).toEqual({ ip: '10.0.0.8', port: 8 });
    expect(status(other).fallbacks.version).toBe(1);
    expect(() => client(ports, 'require')).toThrow(expect.objectContaining({ reason: 'version' }));
    w[H_VERSION] = FAST_PATH_VERSION;

    const remote = new LarsClient({ host: '10.1.2.3', ports, fastPath: 'auto', timeoutMs: 50 });
    onTestFinished(() => remote.close());
    await remote.tryGetHost(8, 1).catch(() => undefined);
    expect((remote.fastPathStatus() as unknown as Status).fallbacks['remote-agent']).toBe(1);
  });

  it('off: never maps a segment', async () => {
    const { dnsPort } = await stack([[9, 1, '10.0.0.9', 9]]);
    const { agent, ports } = await startAgent(dnsPort);
    const c = client(ports, 'off');
    await warm(c, agent, 9, 1);
    await c.getHost(9, 1);
    expect(c.fastPathStatus()).toEqual({ mode: 'off' });
    expect(agent.core.stats.getHost).toBe(1);
    expect(() => new LarsClient({ ports, fastPath: 'fast' as never })).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
  });
});

describe.skipIf(skipNoAddon)(
  'fast path: results in the ring drive the state machine as UDP reports do',
  () => {
    it('same host states, same failure count to ejection, across real processes', async () => {
      const { dnsPort } = await stack([
        [10, 1, '10.0.0.1', 1],
        [10, 1, '10.0.0.2', 2],
        [10, 1, '10.0.0.3', 3],
      ]);
      // Long windows: a slow run must not end an idle window on one agent and not on the other.
      const lb = { ...DEFAULT_LOAD_BALANCE_CONFIG, idleTimeoutS: 600, overloadTimeoutS: 600 };
      const fast = await startAgent(dnsPort, { lb });
      const udp = await startAgent(dnsPort, { lb, fastPath: false });
      await warm(client(fast.ports), fast.agent, 10, 1);
      await client(udp.ports).regInit(10, 1, WARM);

      const run = async (list: Array<[number, number, string, number, number, number]>) => {
        const a = fast.agent.core.stats.report;
        const b = udp.agent.core.stats.report;
        const pf = startPeer({ op: 'reports', ports: fast.ports, mode: 'require', list });
        const pu = startPeer({ op: 'reports', ports: udp.ports, mode: 'off', list });
        const [rf] = (await Promise.all([pf.result, pu.result])) as Array<{ status: Status }>;
        expect(rf!.status.reports).toBe(list.length);
        await waitFor(
          () =>
            fast.agent.core.stats.report === a + list.length &&
            udp.agent.core.stats.report === b + list.length,
          10_000,
          'both agents applied every result',
        );
      };
      const views = (agent: AgentService) =>
        agent.core
          .balancer(10, 1)!
          .hostViews()
          .map(({ windowStart: _w, overloadStart: _o, ...rest }) => rest);

      // Host :2 fails 9 times in a row (slow failures count more), among successes of the others.
      const nine: Array<[number, number, string, number, number, number]> = [];
      for (let i = 0; i < 9; i++) {
        nine.push([10, 1, '10.0.0.2', 2, 1, i % 3 === 0 ? 250 : 0]);
        nine.push([10, 1, '10.0.0.1', 1, 0, 0], [10, 1, '10.0.0.3', 3, i % 4 === 0 ? 1 : 0, 0]);
      }
      await run(nine);
      expect(views(fast.agent)).toEqual(views(udp.agent));
      expect(fast.agent.core.summary().overloaded).toBe(0);
      // The 10th consecutive failure ejects it on both agents.
      await run([[10, 1, '10.0.0.2', 2, 1, 0]]);
      expect(fast.agent.core.summary().overloaded).toBe(1);
      expect(udp.agent.core.summary().overloaded).toBe(1);
      expect(views(fast.agent)).toEqual(views(udp.agent));
      expect(fast.agent.core.stats.transitionsToOverload).toBe(udp.agent.core.stats.transitionsToOverload);
      // And the table stops handing it out (except as a probe).
      const c = client(fast.ports, 'require');
      await waitFor(() => fast.agent.fastPath!.stats.reports === 28, 5_000, 'drained');
      const picks: number[] = [];
      for (let i = 0; i < 30; i++) picks.push((await c.getHost(10, 1)).port);
      expect(picks.filter((p) => p === 2)).toHaveLength(3);
    });
  },
);

describe.skipIf(skipNoAddon)('fast path: crash safety', () => {
  it('a client killed in the middle of a write neither wedges the ring nor corrupts the table', async () => {
    const { dnsPort } = await stack([
      [11, 1, '10.0.0.1', 1],
      [11, 1, '10.0.0.2', 2],
    ]);
    const { agent, ports } = await startAgent(dnsPort);
    const c = client(ports, 'require');
    await warm(c, agent, 11, 1);
    // A writer that reserved a position and wrote half an entry, then died.
    const stuck = startPeer({ op: 'stuck', port: ports[0] });
    await stuck.ready;
    stuck.kill();
    await stuck.exited;
    const before = agent.core.stats.report;
    for (let i = 0; i < 20; i++) c.report(11, 1, '10.0.0.1', 1, 0);
    await waitFor(
      () => agent.core.stats.report === before + 20,
      5_000,
      'results behind the dead entry applied',
    );
    expect(agent.fastPath!.stats.skippedEntries).toBe(1);

    // Clients killed at random moments while hammering getHost + report.
    for (let round = 0; round < 4; round++) {
      const p = startPeer({ op: 'hammer', ports, modid: 11, cmdid: 1 });
      await p.ready;
      const seen = agent.fastPath!.stats.reports;
      await waitFor(() => agent.fastPath!.stats.reports > seen + 1000 * (round + 1), 10_000, 'hammering');
      p.kill();
      await p.exited;
    }
    const applied = agent.core.stats.report;
    for (let i = 0; i < 50; i++) c.report(11, 1, '10.0.0.2', 2, 0);
    await waitFor(() => agent.core.stats.report === applied + 50, 5_000, 'ring still flows');
    expect(agent.fastPath!.stats.tornEntries).toBe(0);
    const picks = new Set<number>();
    for (let i = 0; i < 20; i++) picks.add((await c.getHost(11, 1)).port);
    expect([...picks].sort()).toEqual([1, 2]);
    expect(status(c).fallbacks).toEqual({});
  });
});

describe.skipIf(skipNoAddon)('fast path: agent on several threads', () => {
  it('each thread publishes the routes of its ports; results reach the owner', async () => {
    const hosts: Array<[number, number, string, number]> = [];
    for (let m = 1; m <= 6; m++) hosts.push([m, 1, '10.0.0.1', 1000 + m], [m, 1, '10.0.0.2', 2000 + m]);
    const { dnsPort } = await stack(hosts);
    const agent = new ThreadedAgent({
      threads: 2,
      host: '127.0.0.1',
      ports: [await unusedPort(), await unusedPort(), await unusedPort()],
      dns: { host: '127.0.0.1', port: dnsPort },
      reporter: undefined,
      lb: DEFAULT_LOAD_BALANCE_CONFIG,
      reportIntervalS: 1,
      cacheDir: undefined,
      callerIp: ipToWire('127.0.0.1'),
      workerScript: new URL('./fixtures/agent-worker.mjs', import.meta.url),
      logLevel: 'silent',
      fastPath: {},
    });
    const { ports } = await agent.start();
    onTestFinished(() => agent.destroy());
    const c = client(ports, 'require');
    for (let m = 1; m <= 6; m++) await c.regInit(m, 1, WARM);
    // Every route ends up in the segment of its original port, written by the thread that owns it.
    await waitFor(
      () => {
        for (let m = 1; m <= 6; m++) void c.tryGetHost(m, 1);
        return status(c).getHost >= 60;
      },
      10_000,
      'routes answered from shared memory',
    );
    // A host ejected through the ring of its owner thread.
    for (let i = 0; i < 10; i++) c.report(5, 1, '10.0.0.2', 2005, 1);
    expect(status(c).reports).toBe(10);
    await waitFor(() => agent.health().overloaded === 1, 10_000, 'owner thread overloaded the host');
    // A client that sends everything to one port: routes of other ports are not in that segment,
    // so their results go over UDP and the agent forwards them to the owner.
    const one = client([ports[1]!]);
    for (let i = 0; i < 10; i++) one.report(4, 1, '10.0.0.2', 2004, 1);
    expect(status(one).fallbacks['route-missing']).toBeGreaterThan(0);
    await waitFor(() => agent.health().overloaded === 2, 10_000, 'second host overloaded via UDP');
  });
});
