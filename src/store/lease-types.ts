/**
 * Shapes and limits of self-registration leases and host weights (issue 15), shared by the store,
 * dns, the agent, the SDK, the CLI and the console. No I/O here: the SDK may import it.
 */

/** Default seconds a registration lives without a renewal. */
export const DEFAULT_LEASE_TTL_S = 10;
export const MIN_LEASE_TTL_S = 1;
export const MAX_LEASE_TTL_S = 3600;
/** Largest weight a host may carry (smooth weighted round robin costs O(hosts), not O(weight)). */
export const MAX_WEIGHT = 10_000;

/** (modid, cmdid, ip, port): a lease's key, the same as its RouteData row's. `ip` is unsigned. */
export interface LeaseKey {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
}

export interface LeaseSpec extends LeaseKey {
  /** 1..MAX_WEIGHT. */
  weight: number;
  ttlMs: number;
}

/** One batch of one agent, as dns writes it. */
export interface LeaseWrite {
  /** Owner agent name. */
  agent: string;
  /** Every live registration of the agent. */
  renew: readonly LeaseSpec[];
  /** Registrations the agent removed; only leases it owns are deleted. */
  remove: readonly LeaseKey[];
  /** Wall-clock ms of the renewal (the dns that received it). */
  nowMs: number;
  /** Id of that dns instance. */
  dnsId: string;
}

export interface LeaseWriteResult {
  /** Leases whose renewal was a plain timestamp update. */
  renewed: number;
  /** Leases created. */
  added: number;
  /** Leases deleted by the batch's removals. */
  removed: number;
  /** Leases whose weight or ttl changed. */
  updated: number;
  /** Routes whose hosts or weights changed (RouteChange rows written): pushed to agents. */
  routes: Array<{ modid: number; cmdid: number }>;
  /** The new RouteVersion when the batch changed anything beyond timestamps. */
  version: number | undefined;
}

/** A lease past its expiry, as read before the conditional delete. */
export interface ExpiringLease extends LeaseKey {
  agent: string;
  weight: number;
  ttlMs: number;
  renewedAt: number;
  createdRow: boolean;
}

export interface LeaseExpireResult {
  /** The leases actually deleted (a lease renewed since it was read is kept). */
  expired: ExpiringLease[];
  routes: Array<{ modid: number; cmdid: number }>;
  version: number | undefined;
}

/** Freshest renewal of each agent's leases: an agent renews all of them in every batch. */
export interface LeaseAgent {
  agent: string;
  leases: number;
  lastRenewedAt: number;
}

export interface LeaseRow extends LeaseKey {
  weight: number;
  ttlMs: number;
  agent: string;
  createdRow: boolean;
  registeredAt: number;
  renewedAt: number;
  expiresAt: number;
  renewedBy: string;
}

/** A host whose weight is not 1, for the route snapshot. */
export interface WeightRow extends LeaseKey {
  weight: number;
}

/** How a RouteData row came to be, for the CLI and the console. */
export interface HostMeta {
  /** `registered`: a lease inserted the row (it leaves with the lease); `manual`: an operator did. */
  origin: 'manual' | 'registered';
  /** Effective weight: the manual one if set, else the lease's, else 1. */
  weight: number;
  /** Set when an operator gave the row a weight. */
  manualWeight: number | undefined;
  /** Set while an instance is registered on the row. */
  lease: { agent: string; expiresAt: number; renewedAt: number; ttlMs: number; weight: number } | undefined;
}

export function leaseKeyString(k: LeaseKey): string {
  return `${k.modid}:${k.cmdid}:${k.ip}:${k.port}`;
}
