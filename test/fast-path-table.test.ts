import { describe, expect, it, onTestFinished } from 'vitest';
import type { FastPathSettings } from '../src/agent/agent-fast-path.js';
import { DEFAULT_LOAD_BALANCE_CONFIG, type LoadBalanceConfig } from '../src/agent/lb-config.js';
import { LoadBalancer } from '../src/agent/load-balancer.js';
import { FastPath } from '../src/api/fast-path.js';
import { ipToWire, RetCode, wireToIp } from '../src/protocol/index.js';
import { consumedBy, findSlot, pickIndex } from '../src/protocol/shm-table.js';
import { coreWithFastPath, segmentWords, skipNoAddon, slotPlace } from './helpers/fast-path.js';
import { unusedPort } from './helpers/ports.js';

/** Small deterministic PRNG (mulberry32): the same script every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('fast-path table rule (src/protocol/shm-table.ts)', () => {
  it('pickIndex over a static table is the balancer rotation with a probe every probe_num-th call', () => {
    // k = 3 idle, m = 2 overloaded, probe_num 4, phase 0: calls 4, 8, 12 ... probe 3, 4, 3, ...
    const seq = Array.from({ length: 12 }, (_, i) => pickIndex(i + 1, 0, 3, 2, 4));
    expect(seq).toEqual([0, 1, 2, 3, 0, 1, 2, 4, 0, 1, 2, 3]);
    // A phase carried over from before the rewrite shifts the probe slots.
    expect(Array.from({ length: 4 }, (_, i) => pickIndex(i + 1, 2, 3, 1, 4))).toEqual([0, 3, 1, 2]);
    // No idle host: OVERLOAD except in probe slots; no overloaded host: probe slots serve idle hosts.
    expect(Array.from({ length: 4 }, (_, i) => pickIndex(i + 1, 0, 0, 1, 2))).toEqual([-1, 0, -1, 0]);
    expect(Array.from({ length: 4 }, (_, i) => pickIndex(i + 1, 0, 2, 0, 2))).toEqual([0, 1, 0, 1]);
    expect(consumedBy(12, 0, 3, 2, 4)).toEqual({ idleTurns: 9, probes: 3 });
    expect(consumedBy(12, 0, 3, 0, 4)).toEqual({ idleTurns: 12, probes: 0 });
  });
});

/** Route 1/1 published by a fast path, the same hosts in a reference balancer, a client in `require` mode. */
async function oneRoute(
  config: LoadBalanceConfig,
  hosts: Array<[string, number]>,
  settings: FastPathSettings = {},
): Promise<ReturnType<typeof coreWithFastPath> & { ref: LoadBalancer; client: FastPath }> {
  const port = await unusedPort();
  const env = coreWithFastPath([port], config, settings);
  env.route(1, 1, hosts);
  const ref = new LoadBalancer(1, 1, { config });
  ref.updateRoute(
    hosts.map(([ip, p]) => ({ ip: ipToWire(ip), port: p })),
    env.clock.ms,
  );
  const client = new FastPath({ host: '127.0.0.1', ports: [port], mode: 'require' });
  onTestFinished(() => client.close());
  return { ...env, ref, client };
}

describe.skipIf(skipNoAddon)('fast path = one balancer', () => {
  it('picks from shared memory follow the very sequence of one LoadBalancer through transitions', async () => {
    const config: LoadBalanceConfig = {
      ...DEFAULT_LOAD_BALANCE_CONFIG,
      probeNum: 4,
      continErrLimit: 3,
      continSuccLimit: 3,
    };
    const hosts: Array<[string, number]> = [1, 2, 3, 4, 5].map((i) => [`10.0.0.${i}`, 8000 + i]);
    const { fast, clock, ref, client } = await oneRoute(config, hosts);

    const rnd = prng(18);
    let picks = 0;
    let probes = 0;
    let overloads = 0;
    let transitions = 0;
    for (let step = 0; step < 400; step++) {
      if (rnd() < 0.5) {
        for (let n = 1 + Math.floor(rnd() * 30); n > 0; n--) {
          const want = ref.getHost(clock.ms);
          const got = client.tryGetHost(1, 1);
          expect(got, `pick ${picks}`).toBeDefined();
          if (want.retcode === RetCode.SUCC) {
            expect(got!.host, `pick ${picks}`).toEqual({
              ip: wireToIp(want.host!.ip),
              port: want.host!.port,
            });
            if (want.probe) probes++;
          } else {
            expect(got!.retcode, `pick ${picks}`).toBe(want.retcode);
            overloads++;
          }
          picks++;
        }
      } else {
        // At most 5 results between two drains: a host changes state at most once in between.
        const before = ref.queues().overload.length;
        for (let n = 1 + Math.floor(rnd() * 5); n > 0; n--) {
          const [ip, p] = hosts[Math.floor(rnd() * hosts.length)]!;
          const rc = rnd() < 0.6 ? 1 : 0;
          ref.report(ipToWire(ip), p, rc, undefined, clock.ms);
          expect(client.report(1, 1, ip, p, rc, undefined)).toBe(true);
        }
        fast.drainNow();
        if (ref.queues().overload.length !== before) transitions++;
      }
    }
    // The script exercised what it claims to.
    expect(picks).toBeGreaterThan(2000);
    expect(probes).toBeGreaterThan(20);
    expect(transitions).toBeGreaterThan(10);
    expect(overloads).toBeGreaterThan(0);
    expect(client.stats.fallbacks).toEqual({});
  });

  it('rebuilding the route index (tombstones cleared) keeps each route its slot and rotation', async () => {
    const config: LoadBalanceConfig = { ...DEFAULT_LOAD_BALANCE_CONFIG, probeNum: 4 };
    const hosts: Array<[string, number]> = [1, 2, 3].map((i) => [`10.0.1.${i}`, 7000 + i]);
    // 4 routes at most: an index of 8 words, rebuilt once more than 2 of them are tombstones.
    const { fast, route, clock, ref, client } = await oneRoute(config, hosts, { routes: 4 });
    const pickBoth = (n: number): void => {
      for (let i = 0; i < n; i++) {
        const want = ref.getHost(clock.ms);
        expect(client.tryGetHost(1, 1)?.host).toEqual({ ip: wireToIp(want.host!.ip), port: want.host!.port });
      }
    };
    pickBoth(5); // mid-rotation, and one probe slot past
    for (const m of [2, 3, 4]) route(m, 1, [['10.0.2.1', 7100 + m]]);
    for (const m of [2, 3, 4]) route(m, 1, []); // three tombstones
    pickBoth(2);
    route(5, 1, [['10.0.3.1', 7200]]); // needs an index word: the index is rebuilt first
    expect(fast.routes).toBe(2);
    pickBoth(7);
    expect(client.tryGetHost(5, 1)?.host).toEqual({ ip: '10.0.3.1', port: 7200 });
    expect(client.stats.fallbacks).toEqual({});
  });

  it('hands out route slots densely, a freed one first (touched memory grows with the routes held)', async () => {
    const port = await unusedPort();
    const { route } = coreWithFastPath([port], DEFAULT_LOAD_BALANCE_CONFIG);
    for (let m = 1; m <= 20; m++) route(m, 1, [['10.0.4.1', 7300 + m]]);
    const w = segmentWords(port);
    const place = slotPlace(w);
    const slotOf = (m: number): number => {
      const at = findSlot(w, place, m, 1);
      return at < 0 ? -1 : (at - place.routesOffset) / place.slotLen;
    };
    const slots = Array.from({ length: 20 }, (_, i) => slotOf(i + 1));
    expect([...slots].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    route(7, 1, []);
    expect(slotOf(7)).toBe(-1);
    route(21, 1, [['10.0.4.2', 7400]]);
    expect(slotOf(21)).toBe(slots[6]);
  });
});
