/**
 * Shapes of self-registration leases and host weights (issue 15) as the store, dns, the CLI and
 * the console handle them. (The limits live in protocol/lease-limits.ts, shared with the SDK.)
 */

export {
  DEFAULT_LEASE_TTL_S,
  MIN_LEASE_TTL_S,
  MAX_LEASE_TTL_S,
  MAX_WEIGHT,
} from '../protocol/lease-limits.js';

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
