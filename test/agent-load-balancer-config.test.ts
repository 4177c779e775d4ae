import { describe, expect, it } from 'vitest';
import {
  DEFAULT_LOAD_BALANCE_CONFIG,
  LOAD_BALANCE_INI_KEYS,
  iniKeyOf,
  resolveLoadBalanceConfig,
  type LoadBalanceConfig,
} from '../src/agent/lb-config.js';
import { ConfigError, ErrorCode } from '../src/errors.js';

describe('load-balance config', () => {
  it('has the documented defaults (DESIGN §5), frozen', () => {
    expect(DEFAULT_LOAD_BALANCE_CONFIG).toEqual({
      probeNum: 10,
      initSuccCnt: 180,
      initErrCnt: 5,
      errRate: 0.1,
      succRate: 0.92,
      continErrLimit: 10,
      continSuccLimit: 10,
      windowErrRate: 0.7,
      idleTimeoutS: 15,
      overloadTimeoutS: 15,
      updateTimeoutS: 15,
    });
    expect(Object.isFrozen(DEFAULT_LOAD_BALANCE_CONFIG)).toBe(true);
  });

  it('maps every original INI key to exactly one field, both ways', () => {
    expect(Object.keys(LOAD_BALANCE_INI_KEYS).sort()).toEqual(
      [
        'probe_num',
        'init_succ_cnt',
        'init_err_cnt',
        'err_rate',
        'succ_rate',
        'contin_err_limit',
        'contin_succ_limit',
        'window_err_rate',
        'idle_timeout',
        'overload_timeout',
        'update_timeout',
      ].sort(),
    );
    expect(Object.values(LOAD_BALANCE_INI_KEYS).sort()).toEqual(
      Object.keys(DEFAULT_LOAD_BALANCE_CONFIG).sort(),
    );
    for (const [ini, field] of Object.entries(LOAD_BALANCE_INI_KEYS)) expect(iniKeyOf(field)).toBe(ini);
  });

  it('merges overrides over the defaults and freezes the result', () => {
    const c = resolveLoadBalanceConfig({ probeNum: 3, idleTimeoutS: 0.5 });
    expect(c).toMatchObject({ probeNum: 3, idleTimeoutS: 0.5, initSuccCnt: 180 });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it.each<[Partial<LoadBalanceConfig>, string]>([
    [{ probeNum: 0 }, 'probe_num'],
    [{ probeNum: 2.5 }, 'probe_num'],
    [{ initSuccCnt: -1 }, 'init_succ_cnt'],
    [{ errRate: 1.5 }, 'err_rate'],
    [{ succRate: Number.NaN }, 'succ_rate'],
    [{ continErrLimit: 0 }, 'contin_err_limit'],
    [{ windowErrRate: 0 }, 'window_err_rate'],
    [{ idleTimeoutS: 0 }, 'idle_timeout'],
    [{ overloadTimeoutS: Number.POSITIVE_INFINITY }, 'overload_timeout'],
    [{ updateTimeoutS: '15' as unknown as number }, 'update_timeout'],
  ])('rejects %o naming the INI key %s', (overrides, key) => {
    let err: unknown;
    try {
      resolveLoadBalanceConfig(overrides, '/etc/lars/agent.ini');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({
      code: ErrorCode.CONFIG,
      section: 'loadbalance',
      key,
      file: '/etc/lars/agent.ini',
    });
    expect((err as Error).message).toContain(`[loadbalance] ${key}`);
  });

  it('rejects unknown fields', () => {
    expect(() => resolveLoadBalanceConfig({ probe_num: 3 } as unknown as Partial<LoadBalanceConfig>)).toThrow(
      ConfigError,
    );
  });
});
