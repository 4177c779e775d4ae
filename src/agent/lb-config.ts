import { ConfigError } from '../errors.js';

/**
 * Tuning of the agent's per-route load balancer (DESIGN §5, INI section `[loadbalance]`).
 * Field names are camelCase; `LOAD_BALANCE_INI_KEYS` maps the original INI key names onto them.
 * Durations are in seconds, as in the INI file (the balancer converts them to milliseconds once).
 */
export interface LoadBalanceConfig {
  /** Every `probeNum`-th getHost of a route gives an overloaded host a trial call. */
  readonly probeNum: number;
  /** Virtual successes an idle host starts with; damps the error rate of small samples. */
  readonly initSuccCnt: number;
  /** Virtual errors an overloaded host starts with. */
  readonly initErrCnt: number;
  /** An idle host is overloaded when, after a failure, verr / (vsucc + verr) > errRate. */
  readonly errRate: number;
  /** An overloaded host is idle again when, after a success, vsucc / (vsucc + verr) > succRate. */
  readonly succRate: number;
  /** An idle host is overloaded after this many consecutive failures. */
  readonly continErrLimit: number;
  /** An overloaded host is idle again after this many consecutive successes. */
  readonly continSuccLimit: number;
  /** At the end of an idle window, real rerr / (rsucc + rerr) >= this overloads the host. */
  readonly windowErrRate: number;
  /** Length of an idle host's statistics window, seconds. */
  readonly idleTimeoutS: number;
  /** An overloaded host returns to idle after this long, seconds. */
  readonly overloadTimeoutS: number;
  /** A route is pulled from dns again when its last update is older than this, seconds. */
  readonly updateTimeoutS: number;
}

export const DEFAULT_PROBE_NUM = 10; // requests
export const DEFAULT_INIT_SUCC_CNT = 180; // virtual successes
export const DEFAULT_INIT_ERR_CNT = 5; // virtual errors
export const DEFAULT_ERR_RATE = 0.1; // ratio
export const DEFAULT_SUCC_RATE = 0.92; // ratio
export const DEFAULT_CONTIN_ERR_LIMIT = 10; // consecutive failures
export const DEFAULT_CONTIN_SUCC_LIMIT = 10; // consecutive successes
export const DEFAULT_WINDOW_ERR_RATE = 0.7; // ratio
export const DEFAULT_IDLE_TIMEOUT_S = 15; // seconds
export const DEFAULT_OVERLOAD_TIMEOUT_S = 15; // seconds
export const DEFAULT_UPDATE_TIMEOUT_S = 15; // seconds

export const DEFAULT_LOAD_BALANCE_CONFIG: LoadBalanceConfig = Object.freeze({
  probeNum: DEFAULT_PROBE_NUM,
  initSuccCnt: DEFAULT_INIT_SUCC_CNT,
  initErrCnt: DEFAULT_INIT_ERR_CNT,
  errRate: DEFAULT_ERR_RATE,
  succRate: DEFAULT_SUCC_RATE,
  continErrLimit: DEFAULT_CONTIN_ERR_LIMIT,
  continSuccLimit: DEFAULT_CONTIN_SUCC_LIMIT,
  windowErrRate: DEFAULT_WINDOW_ERR_RATE,
  idleTimeoutS: DEFAULT_IDLE_TIMEOUT_S,
  overloadTimeoutS: DEFAULT_OVERLOAD_TIMEOUT_S,
  updateTimeoutS: DEFAULT_UPDATE_TIMEOUT_S,
});

/** INI section holding these keys. */
export const LOAD_BALANCE_INI_SECTION = 'loadbalance';

/** Original INI key name -> config field. The config module parses INI and converts with this. */
export const LOAD_BALANCE_INI_KEYS = Object.freeze({
  probe_num: 'probeNum',
  init_succ_cnt: 'initSuccCnt',
  init_err_cnt: 'initErrCnt',
  err_rate: 'errRate',
  succ_rate: 'succRate',
  contin_err_limit: 'continErrLimit',
  contin_succ_limit: 'continSuccLimit',
  window_err_rate: 'windowErrRate',
  idle_timeout: 'idleTimeoutS',
  overload_timeout: 'overloadTimeoutS',
  update_timeout: 'updateTimeoutS',
} as const satisfies Record<string, keyof LoadBalanceConfig>);

export type LoadBalanceIniKey = keyof typeof LOAD_BALANCE_INI_KEYS;

const FIELD_TO_INI_KEY = Object.fromEntries(
  Object.entries(LOAD_BALANCE_INI_KEYS).map(([ini, field]) => [field, ini]),
) as Record<keyof LoadBalanceConfig, LoadBalanceIniKey>;

/** The INI key name of a config field (for messages that name the field the user wrote). */
export function iniKeyOf(field: keyof LoadBalanceConfig): LoadBalanceIniKey {
  return FIELD_TO_INI_KEY[field];
}

type Rule = 'int>=1' | 'int>=0' | 'rate' | 'rate>0' | 'seconds>0';

const RULES: Readonly<Record<keyof LoadBalanceConfig, Rule>> = {
  probeNum: 'int>=1',
  initSuccCnt: 'int>=0',
  initErrCnt: 'int>=0',
  errRate: 'rate',
  succRate: 'rate',
  continErrLimit: 'int>=1',
  continSuccLimit: 'int>=1',
  // 0 would overload every idle host that saw a single call in a window.
  windowErrRate: 'rate>0',
  idleTimeoutS: 'seconds>0',
  overloadTimeoutS: 'seconds>0',
  updateTimeoutS: 'seconds>0',
};

function violates(rule: Rule, v: number): string | undefined {
  switch (rule) {
    case 'int>=1':
      return Number.isInteger(v) && v >= 1 ? undefined : 'an integer >= 1';
    case 'int>=0':
      return Number.isInteger(v) && v >= 0 ? undefined : 'an integer >= 0';
    case 'rate':
      return Number.isFinite(v) && v >= 0 && v <= 1 ? undefined : 'a number from 0 to 1';
    case 'rate>0':
      return Number.isFinite(v) && v > 0 && v <= 1 ? undefined : 'a number greater than 0 and at most 1';
    case 'seconds>0':
      return Number.isFinite(v) && v > 0 ? undefined : 'a number of seconds greater than 0';
  }
}

/**
 * Merges `overrides` over the defaults, validates every field and returns a frozen config.
 * Throws ConfigError naming the INI key (section `[loadbalance]`) and, when given, the file.
 */
export function resolveLoadBalanceConfig(
  overrides: Partial<LoadBalanceConfig> = {},
  file?: string,
): LoadBalanceConfig {
  const merged: Record<string, unknown> = { ...DEFAULT_LOAD_BALANCE_CONFIG };
  for (const [field, value] of Object.entries(overrides)) {
    if (!Object.prototype.hasOwnProperty.call(RULES, field)) {
      throw new ConfigError(`unknown load-balance setting ${JSON.stringify(field)}`, {
        file,
        section: LOAD_BALANCE_INI_SECTION,
        key: field,
      });
    }
    if (value !== undefined) merged[field] = value;
  }
  for (const field of Object.keys(RULES) as (keyof LoadBalanceConfig)[]) {
    const value = merged[field];
    const expected = violates(RULES[field], typeof value === 'number' ? value : NaN);
    if (expected !== undefined) {
      const key = iniKeyOf(field);
      const where = file === undefined ? '' : `${file}: `;
      throw new ConfigError(
        `${where}[${LOAD_BALANCE_INI_SECTION}] ${key} = ${JSON.stringify(value)}: expected ${expected}`,
        { file, section: LOAD_BALANCE_INI_SECTION, key },
      );
    }
  }
  return Object.freeze(merged as unknown as LoadBalanceConfig);
}
