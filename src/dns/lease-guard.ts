import type { ExpiringLease, LeaseAgent } from '../store/lease-types.js';

/**
 * When a dns instance may expire leases (issue 15, "protection"). Pure: times are wall-clock
 * milliseconds handed in by the caller; no clock or timer of its own.
 *
 * 1. Leases survive a restart: expiry is measured against the stored last renewal, and an instance
 *    that just started expires no lease whose ttl is longer than its uptime minus the grace: its
 *    agents may not have reconnected and renewed yet.
 * 2. An instance whose database was unreachable expires nothing while it is, and after it is back
 *    it expires no lease whose ttl is longer than the time since, minus the grace: renewals sent to
 *    it meanwhile were lost. (maxTtlMs() folds both into one bound on the ttl of what may expire.)
 * 3. Brake: an agent renews all its leases in every batch, so a lease whose agent renewed others
 *    recently was dropped by that agent (its process ended): expired at once. Leases of agents that
 *    went silent altogether could be dead hosts or a registry-side problem (agents cut off from
 *    dns). When at least BRAKE_MIN_AGENTS agents and more than half of all agents holding leases
 *    are silent at once, the registry is the likelier culprit: their leases are held, for at most
 *    brakeMaxMs, instead of pushing emptied routes to every agent.
 */

/** Covers an agent reconnecting after a dns restart (its backoff reaches 10 s + 20 % jitter). */
export const DEFAULT_LEASE_GRACE_MS = 5_000;
export const DEFAULT_LEASE_BRAKE_MAX_MS = 60_000;
export const BRAKE_MIN_AGENTS = 2;

export interface LeaseGuardOptions {
  /** When this instance started (wall-clock ms). */
  startedAtMs: number;
  graceMs?: number;
  brakeMaxMs?: number;
}

export interface GuardDecision {
  expire: ExpiringLease[];
  /** Leases held by the brake. */
  held: ExpiringLease[];
  /** The brake engaged on this decision (first time in an episode). */
  braking: boolean;
}

export class LeaseGuard {
  private readonly graceMs: number;
  private readonly brakeMaxMs: number;
  /** Since when renewals could reach this instance's database without interruption. */
  private receptiveSinceMs: number;
  private dbDown = false;
  private brakeSinceMs: number | undefined;

  constructor(options: LeaseGuardOptions) {
    this.graceMs = options.graceMs ?? DEFAULT_LEASE_GRACE_MS;
    this.brakeMaxMs = options.brakeMaxMs ?? DEFAULT_LEASE_BRAKE_MAX_MS;
    this.receptiveSinceMs = options.startedAtMs;
  }

  /** A database access failed: nothing expires until it works again, and for a ttl after. */
  dbFailed(): void {
    this.dbDown = true;
  }

  dbOk(nowMs: number): void {
    if (!this.dbDown) return;
    this.dbDown = false;
    this.receptiveSinceMs = nowMs;
  }

  get databaseDown(): boolean {
    return this.dbDown;
  }

  get braking(): boolean {
    return this.brakeSinceMs !== undefined;
  }

  /** The longest ttl of a lease this instance may expire now; negative: none. */
  maxTtlMs(nowMs: number): number {
    if (this.dbDown) return -1;
    return nowMs - this.receptiveSinceMs - this.graceMs;
  }

  /** Splits expired candidates into those to expire now and those the brake holds. */
  decide(candidates: readonly ExpiringLease[], agents: readonly LeaseAgent[], nowMs: number): GuardDecision {
    const last = new Map(agents.map((a) => [a.agent, a.lastRenewedAt]));
    const expire: ExpiringLease[] = [];
    const orphans: ExpiringLease[] = [];
    const silent = new Set<string>();
    for (const c of candidates) {
      const agentLast = last.get(c.agent) ?? c.renewedAt;
      if (nowMs - agentLast < c.ttlMs) expire.push(c);
      else {
        orphans.push(c);
        silent.add(c.agent);
      }
    }
    const suspicious = silent.size >= BRAKE_MIN_AGENTS && silent.size * 2 > Math.max(agents.length, 1);
    if (!suspicious) {
      this.brakeSinceMs = undefined;
      return { expire: [...expire, ...orphans], held: [], braking: false };
    }
    const first = this.brakeSinceMs === undefined;
    this.brakeSinceMs ??= nowMs;
    if (nowMs - this.brakeSinceMs >= this.brakeMaxMs) {
      // Silent for the whole brake period: the hosts are gone after all.
      return { expire: [...expire, ...orphans], held: [], braking: false };
    }
    return { expire, held: orphans, braking: first };
  }
}
