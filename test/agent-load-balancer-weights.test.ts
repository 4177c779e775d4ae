import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LoadBalancer, type GetHostResult } from '../src/agent/load-balancer.js';
import { ipToNumber, toWireIp } from '../src/protocol/ip.js';
import { RetCode, retCodeName } from '../src/protocol/retcode.js';
import type { HostInfo } from '../src/protocol/messages.js';

// Weights (issue 15): smooth weighted round robin over idle hosts; with every weight 1 the
// sequence is the plain rotation of DESIGN §5 (test/agent-load-balancer.test.ts keeps that one).

const IP = ['10.0.0.1', '10.0.0.2', '192.168.1.177', '10.0.0.4'].map(ipToNumber);
const NAMES = ['A', 'B', 'C', 'D'] as const;
type Name = (typeof NAMES)[number];
const idx = (n: Name) => NAMES.indexOf(n);

const host = (n: Name, weight?: number): HostInfo => ({
  ip: toWireIp(IP[idx(n)] as number),
  port: 8001 + idx(n),
  ...(weight !== undefined ? { weight } : {}),
});
const nameOf = (h: { port: number }): string => NAMES[h.port - 8001] ?? '?';
const pickName = (r: GetHostResult): string =>
  r.host === undefined ? retCodeName(r.retcode) : `${nameOf(r.host)}${r.probe ? '*' : ''}`;

const T0 = 1_000_000;
const picks = (lb: LoadBalancer, n: number): string[] =>
  Array.from({ length: n }, () => pickName(lb.getHost(T0)));

function overload(lb: LoadBalancer, n: Name): void {
  const h = host(n);
  for (let i = 0; i < 10; i++) lb.report(h.ip, h.port, RetCode.SYSTEM_ERROR, undefined, T0);
  expect(lb.host(h.ip, h.port)?.state).toBe('overload');
}

describe('LoadBalancer weights', () => {
  it('weights 1:3 split 10,000 picks 1:3 (within 1 %)', () => {
    const lb = new LoadBalancer(1, 2);
    lb.updateRoute([host('A', 1), host('B', 3)], T0);
    const count = new Map<string, number>();
    for (const p of picks(lb, 10_000)) count.set(p, (count.get(p) ?? 0) + 1);
    const a = count.get('A') ?? 0;
    const b = count.get('B') ?? 0;
    expect(a + b).toBe(10_000);
    expect(Math.abs(a / 10_000 - 0.25)).toBeLessThan(0.01);
    // Smooth weighted round robin is exact over every full cycle of 4.
    expect([a, b]).toEqual([2500, 7500]);
  });

  it('spreads a heavy host out instead of bursting it (nginx sequence for 5:1:1)', () => {
    const lb = new LoadBalancer(1, 2);
    lb.updateRoute([host('A', 5), host('B', 1), host('C', 1)], T0);
    // Probe slots do nothing here: no host is overloaded.
    expect(picks(lb, 14)).toEqual(['A', 'A', 'B', 'A', 'C', 'A', 'A', 'A', 'A', 'B', 'A', 'C', 'A', 'A']);
  });

  it('with every weight 1 (explicit or absent) the sequence is the plain rotation', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 4 }),
        fc.array(fc.constantFrom('pick', 'fail', 'succ', 'update'), { maxLength: 120 }),
        (names, ops) => {
          const unique = [...new Set(names)];
          const plain = new LoadBalancer(1, 2);
          const ones = new LoadBalancer(1, 2);
          plain.updateRoute(
            unique.map((n) => host(n)),
            T0,
          );
          ones.updateRoute(
            unique.map((n, i) => host(n, i % 2 === 0 ? 1 : 0)),
            T0,
          );
          expect(ones.unweighted).toBe(true);
          let i = 0;
          for (const op of ops) {
            const target = host(unique[i++ % unique.length] as Name);
            if (op === 'pick') expect(pickName(ones.getHost(T0))).toBe(pickName(plain.getHost(T0)));
            else if (op === 'update') {
              plain.updateRoute(
                [...unique].reverse().map((n) => host(n)),
                T0,
              );
              ones.updateRoute(
                [...unique].reverse().map((n) => host(n, 1)),
                T0,
              );
            } else {
              const rc = op === 'succ' ? RetCode.SUCC : RetCode.SYSTEM_ERROR;
              plain.report(target.ip, target.port, rc, undefined, T0);
              ones.report(target.ip, target.port, rc, undefined, T0);
            }
          }
          expect(ones.queues()).toEqual(plain.queues());
        },
      ),
      { numRuns: 300 },
    );
  });

  it('skips overloaded hosts; probes still go to the overload queue every probe_num-th call', () => {
    const lb = new LoadBalancer(1, 2);
    lb.updateRoute([host('A', 1), host('B', 3), host('C', 2)], T0);
    overload(lb, 'B');
    const seq = picks(lb, 20);
    expect(seq.filter((p) => p === 'B*')).toHaveLength(2);
    expect(seq[9]).toBe('B*');
    expect(seq[19]).toBe('B*');
    const served = seq.filter((p) => !p.endsWith('*'));
    // A:C = 1:2 among the 18 other calls.
    expect(served.filter((p) => p === 'A')).toHaveLength(6);
    expect(served.filter((p) => p === 'C')).toHaveLength(12);
    // All weighted hosts overloaded: OVERLOAD, as without weights.
    overload(lb, 'A');
    overload(lb, 'C');
    expect(picks(lb, 3).every((p) => p === 'OVERLOAD' || p.endsWith('*'))).toBe(true);
  });

  it('a weight change on a kept host is applied and reported; back to all 1 restores the rotation', () => {
    const lb = new LoadBalancer(1, 2);
    lb.updateRoute([host('A'), host('B'), host('C')], T0);
    expect(picks(lb, 3)).toEqual(['A', 'B', 'C']);
    const r = lb.updateRoute([host('A'), host('B', 4), host('C')], T0);
    expect(r).toMatchObject({ added: 0, removed: 0, kept: 3, reweighted: 1 });
    expect(lb.dirty).toBe(true);
    expect(lb.unweighted).toBe(false);
    expect(lb.hosts().map((h) => h.weight ?? 1)).toEqual([1, 4, 1]);
    expect(lb.host(host('B').ip, host('B').port)?.weight).toBe(4);
    const six = picks(lb, 6);
    expect(six.filter((p) => p === 'B')).toHaveLength(4);
    const back = lb.updateRoute([host('A'), host('B'), host('C')], T0);
    expect(back.reweighted).toBe(1);
    expect(lb.unweighted).toBe(true);
    // The rotation continues from the queue as it stands (weighted picks did not rotate it).
    expect(picks(lb, 3)).toEqual(['A', 'B', 'C']);
    // Removing the only weighted host also restores the rotation.
    lb.updateRoute([host('A'), host('B', 2)], T0);
    lb.updateRoute([host('A')], T0);
    expect(lb.unweighted).toBe(true);
  });
});
