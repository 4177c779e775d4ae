/**
 * Limits of self-registration (issue 15), part of the contract between SDK, agent and dns: a
 * RegisterRequest or Lease outside them is refused.
 */

/** Default seconds a registration lives without a renewal (ttl_s 0 on the wire). */
export const DEFAULT_LEASE_TTL_S = 10;
export const MIN_LEASE_TTL_S = 1;
export const MAX_LEASE_TTL_S = 3600;
/** Largest weight a host may carry (smooth weighted round robin costs O(hosts), not O(weight)). */
export const MAX_WEIGHT = 10_000;
