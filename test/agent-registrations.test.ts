import { describe, expect, it } from 'vitest';
import { LocalRegistry, LEASES_PER_FRAME, REMOVAL_REPEATS } from '../src/agent/registrations.js';
import {
  encodeMessage,
  ipToNumber,
  ipToWire,
  MAX_BODY_LEN,
  MsgId,
  RetCode,
  type RegisterRequest,
} from '../src/protocol/index.js';

// The agent's local registry (issue 15): pure, on a fake clock and fake process checks.

const AGENT_IP = ipToNumber('10.9.0.1');

function setup(extra: { max?: number; dead?: Set<number> } = {}) {
  const clock = { t: 1_000 };
  const reg = new LocalRegistry({
    callerIp: AGENT_IP,
    now: () => clock.t,
    ...(extra.max !== undefined ? { maxRegistrations: extra.max } : {}),
    canWatch: (pid, start, ns) => ns === 77 && start === pid * 10,
    alive: (pid) => !(extra.dead?.has(pid) ?? false),
  });
  return { reg, clock };
}

const req = (port: number, extra: Partial<RegisterRequest> = {}, weight?: number): RegisterRequest => ({
  seq: 1,
  modid: 3,
  cmdid: 4,
  host: { ip: 0, port, ...(weight !== undefined ? { weight } : {}) },
  ttl_s: 0,
  pid: 0,
  pid_start: 0,
  pid_ns: 0,
  ...extra,
});

describe('LocalRegistry', () => {
  it('registers with defaults (agent ip, ttl 10 s, weight 1) and tells what changed', () => {
    const { reg } = setup();
    const a = reg.register(req(9001));
    expect(a).toEqual({
      retcode: RetCode.SUCC,
      reason: '',
      host: { ip: ipToWire('10.9.0.1'), port: 9001 },
      ttl_s: 10,
      watched: false,
      changed: true,
    });
    expect(reg.register(req(9001)).changed).toBe(false);
    expect(reg.register(req(9001, {}, 2)).changed).toBe(true);
    const other = reg.register(req(9002, { host: { ip: ipToWire('192.168.1.9'), port: 9002 }, ttl_s: 30 }));
    expect(other.host).toEqual({ ip: ipToWire('192.168.1.9'), port: 9002 });
    expect([reg.size, reg.minTtlMs]).toEqual([2, 10_000]);
  });

  it('refuses bad registrations with a reason', () => {
    const { reg } = setup({ max: 1 });
    expect(reg.register(req(0)).reason).toMatch(/port/);
    expect(reg.register(req(1, { ttl_s: 3601 })).reason).toMatch(/ttl/);
    expect(reg.register(req(1, {}, 10_001)).reason).toMatch(/weight/);
    expect(reg.register(req(1)).retcode).toBe(RetCode.SUCC);
    const full = reg.register(req(2));
    expect([full.retcode, full.reason]).toEqual([RetCode.SYSTEM_ERROR, expect.stringMatching(/limit/)]);
    // Renewing an existing one is never refused by the limit.
    expect(reg.register(req(1)).retcode).toBe(RetCode.SUCC);
    expect(reg.stats.refused).toBe(4);
  });

  it('a registration not renewed within its ttl lapses', () => {
    const { reg, clock } = setup();
    reg.register(req(9001, { ttl_s: 3 }));
    reg.register(req(9002, { ttl_s: 10 }));
    clock.t += 3_000;
    expect(reg.sweep()).toBe(0);
    reg.register(req(9002, { ttl_s: 10 }));
    clock.t += 1;
    expect(reg.sweep()).toBe(1);
    expect(reg.size).toBe(1);
    expect(reg.stats.lapsed).toBe(1);
  });

  it('watches a process it can see and drops its registrations when it ends', () => {
    const dead = new Set<number>();
    const { reg } = setup({ dead });
    expect(reg.register(req(9001, { pid: 42, pid_start: 420, pid_ns: 77 })).watched).toBe(true);
    expect(reg.register(req(9002, { pid: 42, pid_start: 420, pid_ns: 77 })).watched).toBe(true);
    // Another namespace, or a reused pid (start time differs): not watched, ttl only.
    expect(reg.register(req(9003, { pid: 43, pid_start: 430, pid_ns: 78 })).watched).toBe(false);
    expect(reg.register(req(9004, { pid: 44, pid_start: 1, pid_ns: 77 })).watched).toBe(false);
    expect(reg.watched).toBe(2);
    expect(reg.checkProcesses()).toBe(0);
    dead.add(42);
    expect(reg.checkProcesses()).toBe(2);
    expect(reg.size).toBe(2);
    expect(reg.stats.exited).toBe(2);
  });

  it('batches carry every registration, and each removal for REMOVAL_REPEATS batches', () => {
    const { reg } = setup();
    reg.register(req(9001));
    reg.register(req(9002, {}, 5));
    expect(reg.deregister(req(9001))).toBe(true);
    expect(reg.deregister(req(9001))).toBe(false);
    const first = reg.batches('agent-x');
    expect(first).toEqual([
      {
        agent: 'agent-x',
        renew: [{ modid: 3, cmdid: 4, host: { ip: ipToWire('10.9.0.1'), port: 9002, weight: 5 }, ttl_s: 10 }],
        remove: [{ modid: 3, cmdid: 4, host: { ip: ipToWire('10.9.0.1'), port: 9001 }, ttl_s: 10 }],
      },
    ]);
    for (let i = 1; i < REMOVAL_REPEATS; i++) expect(reg.batches('agent-x')[0]!.remove).toHaveLength(1);
    expect(reg.batches('agent-x')[0]!.remove).toEqual([]);
    // Registering again cancels a pending removal.
    reg.deregister(req(9002));
    reg.register(req(9002));
    expect(reg.batches('agent-x')[0]!.remove).toEqual([]);
    reg.deregister(req(9002));
    for (let i = 0; i < REMOVAL_REPEATS; i++) reg.batches('agent-x');
    expect(reg.batches('agent-x')).toEqual([]);
  });

  it('a change batch carries only what changed since the last batch; a full one everything', () => {
    const { reg } = setup();
    reg.register(req(9001));
    reg.register(req(9002));
    expect(reg.batches('a', false)[0]!.renew.map((l) => l.host!.port)).toEqual([9001, 9002]);
    expect(reg.batches('a', false)).toEqual([]);
    reg.register(req(9001)); // a plain renewal changes nothing
    reg.register(req(9003));
    reg.register(req(9002, {}, 4));
    expect(reg.batches('a', false)[0]!.renew.map((l) => l.host!.port)).toEqual([9003, 9002]);
    reg.deregister(req(9003));
    expect(reg.batches('a', false)).toEqual([
      { agent: 'a', renew: [], remove: [expect.objectContaining({ modid: 3, cmdid: 4 })] },
    ]);
    expect(reg.batches('a')[0]!.renew.map((l) => l.host!.port)).toEqual([9001, 9002]);
  });

  it('1,000 registrations make one frame; more are split into frames within the limit', () => {
    const { reg } = setup({ max: 100_000 });
    for (let i = 0; i < 1_000; i++)
      reg.register(
        req(1 + i, { modid: -2_000_000_000, host: { ip: ipToWire('250.1.2.3'), port: 60_000 - i } }, 9_999),
      );
    const one = reg.batches('a'.repeat(255));
    expect(one).toHaveLength(1);
    expect(encodeMessage(MsgId.LeaseBatch, one[0]!).length).toBeLessThanOrEqual(MAX_BODY_LEN);
    for (let i = 0; i < 1_500; i++) reg.register(req(1 + i, { cmdid: 99 }));
    reg.deregister(req(1, { cmdid: 99 }));
    const many = reg.batches('a');
    expect(many).toHaveLength(3);
    expect(many.reduce((n, b) => n + b.renew.length, 0)).toBe(2_499);
    expect(many.every((b) => b.renew.length + b.remove.length <= LEASES_PER_FRAME)).toBe(true);
    expect(many.flatMap((b) => b.remove)).toHaveLength(1);
  });
});
