import type { Config } from '../config/schema.js';
import { resolveLoadBalanceConfig, LOAD_BALANCE_INI_KEYS, type LoadBalanceConfig } from './lb-config.js';

/** The validated `[loadbalance]` section as the balancer's camelCase config. */
export function toLoadBalanceConfig(section: Config['loadbalance']): LoadBalanceConfig {
  const out: Record<string, number> = {};
  for (const [ini, field] of Object.entries(LOAD_BALANCE_INI_KEYS)) {
    out[field] = (section as Record<string, number>)[ini] as number;
  }
  return resolveLoadBalanceConfig(out as unknown as Partial<LoadBalanceConfig>);
}
