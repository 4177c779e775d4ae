import { silentLogger, type Logger } from '../log/silent.js';
import { tracer } from '../log/trace.js';
import type { LeaseBatch, Lease } from '../protocol/index.js';
import {
  DEFAULT_LEASE_TTL_S,
  leaseKeyString,
  MAX_LEASE_TTL_S,
  MAX_WEIGHT,
  MIN_LEASE_TTL_S,
  type ExpiringLease,
  type LeaseAgent,
  type LeaseExpireResult,
  type LeaseKey,
  type LeaseSpec,
  type LeaseWrite,
  type LeaseWriteResult,
} from '../store/lease-types.js';
import { LeaseGuard } from './lease-guard.js';

/** The store operations the keeper uses (src/store's Store satisfies it). */
export interface LeaseStore {
  renewLeases(batch: LeaseWrite): Promise<LeaseWriteResult>;
  expiringLeases(nowMs: number, maxTtlMs: number, limit?: number): Promise<ExpiringLease[]>;
  expireLeases(leases: readonly ExpiringLease[]): Promise<LeaseExpireResult>;
  leaseAgents(): Promise<LeaseAgent[]>;
}

export interface LeaseKeeperOptions {
  store: LeaseStore;
  /** This dns instance (written as each renewal's `renewed_by`). */
  dnsId: string;
  /** Routes changed in the database: poll now and tell the other instances. */
  onChanged: () => void;
  /** Milliseconds between expiry sweeps. Default 250. */
  sweepMs?: number;
  graceMs?: number;
  brakeMaxMs?: number;
  /** Leases waiting to be written, over all agents; more are dropped and counted. Default 1,000,000. */
  maxPendingLeases?: number;
  /** Wall clock in ms (leases compare renewals written by every instance). */
  now?: () => number;
  logger?: Logger;
}

export const DEFAULT_LEASE_SWEEP_MS = 250;
const RETRY_AFTER_FAILURE_MS = 500;
const EXPIRE_LIMIT = 1_000;

interface Pending {
  renew: Map<string, LeaseSpec>;
  remove: Map<string, LeaseKey>;
}

/**
 * The route service's side of self-registration (issue 15). Agents send their registrations as
 * LeaseBatch frames; the keeper merges what waits per agent (a newer renewal of a lease replaces
 * the older one, removals accumulate), writes one agent's batch at a time, and sweeps for expired
 * leases under the LeaseGuard's protection rules. Any write that changed routes triggers
 * onChanged (an immediate poll here and in the other instances), so a registration reaches agents
 * in well under a poll interval.
 */
export class LeaseKeeper {
  private readonly opts: LeaseKeeperOptions;
  private readonly log: Logger;
  private readonly trace = tracer('dns');
  private readonly now: () => number;
  private readonly guard: LeaseGuard;
  private readonly pending = new Map<string, Pending>();
  private pendingLeases = 0;
  private writing: Promise<void> | undefined;
  private sweeping = false;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failing = false;
  /** Failed database accesses in a row (writes and sweeps); see noteFailure. */
  private failuresInRow = 0;
  private closed = false;
  readonly stats = {
    batches: 0,
    renewed: 0,
    added: 0,
    removed: 0,
    expired: 0,
    held: 0,
    badLeases: 0,
    dropped: 0,
    writeFailures: 0,
    sweepFailures: 0,
  };

  constructor(options: LeaseKeeperOptions) {
    this.opts = options;
    this.log = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.guard = new LeaseGuard({
      startedAtMs: this.now(),
      ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}),
      ...(options.brakeMaxMs !== undefined ? { brakeMaxMs: options.brakeMaxMs } : {}),
    });
  }

  start(): void {
    const every = this.opts.sweepMs ?? DEFAULT_LEASE_SWEEP_MS;
    this.timer = setInterval(() => void this.sweep(), every);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.timer = this.retryTimer = undefined;
  }

  /** The route database failed or recovered (route polls report it too). */
  databaseState(ok: boolean): void {
    if (ok) this.guard.dbOk(this.now());
    else this.guard.dbFailed();
  }

  get braking(): boolean {
    return this.guard.braking;
  }

  /** Leases waiting to be written. */
  get backlog(): number {
    return this.pendingLeases;
  }

  /** Takes one LeaseBatch frame (a big batch comes in several). Invalid leases are counted and skipped. */
  accept(batch: LeaseBatch): void {
    if (this.closed) return;
    this.stats.batches++;
    const agent = batch.agent.slice(0, 255) || 'unnamed';
    let p = this.pending.get(agent);
    if (p === undefined) {
      p = { renew: new Map(), remove: new Map() };
      this.pending.set(agent, p);
    }
    const max = this.opts.maxPendingLeases ?? 1_000_000;
    for (const l of batch.renew) {
      const spec = this.toSpec(l);
      if (!spec) continue;
      const key = leaseKeyString(spec);
      p.remove.delete(key);
      if (!p.renew.has(key)) {
        if (this.pendingLeases >= max) {
          this.stats.dropped++;
          continue;
        }
        this.pendingLeases++;
      }
      p.renew.set(key, spec);
    }
    for (const l of batch.remove) {
      const spec = this.toSpec(l);
      if (!spec) continue;
      const key = leaseKeyString(spec);
      if (p.renew.delete(key)) this.pendingLeases--;
      p.remove.set(key, { modid: spec.modid, cmdid: spec.cmdid, ip: spec.ip, port: spec.port });
    }
    this.kick();
  }

  /** Resolves when everything accepted so far has been written (or failed). For tests and close. */
  async flushed(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private toSpec(l: Lease): LeaseSpec | undefined {
    const h = l.host;
    const ttlS = l.ttl_s || DEFAULT_LEASE_TTL_S;
    const weight = h?.weight || 1;
    const port = h?.port ?? 0;
    if (
      !h ||
      port < 1 ||
      port > 65535 ||
      ttlS < MIN_LEASE_TTL_S ||
      ttlS > MAX_LEASE_TTL_S ||
      weight > MAX_WEIGHT
    ) {
      this.stats.badLeases++;
      return undefined;
    }
    return { modid: l.modid, cmdid: l.cmdid, ip: h.ip >>> 0, port, weight, ttlMs: ttlS * 1000 };
  }

  private kick(): void {
    if (this.writing || this.retryTimer || this.closed) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (!this.closed && this.pending.size > 0) {
      const [agent, p] = this.pending.entries().next().value as [string, Pending];
      this.pending.delete(agent);
      this.pendingLeases -= p.renew.size;
      try {
        const res = await this.opts.store.renewLeases({
          agent,
          renew: [...p.renew.values()],
          remove: [...p.remove.values()],
          nowMs: this.now(),
          dnsId: this.opts.dnsId,
        });
        this.wrote(agent, res);
      } catch (err) {
        this.writeFailed(agent, p, err);
        return;
      }
    }
  }

  private wrote(agent: string, res: LeaseWriteResult): void {
    this.stats.renewed += res.renewed;
    this.stats.added += res.added;
    this.stats.removed += res.removed;
    if (this.failing) {
      this.failing = false;
      this.log.info({}, 'lease writes succeed again');
    }
    this.failuresInRow = 0;
    this.guard.dbOk(this.now());
    if (res.added || res.removed || res.updated)
      this.trace?.(`leases of ${agent}: +${res.added} -${res.removed} ~${res.updated} =${res.renewed}`);
    if (res.routes.length > 0) this.opts.onChanged();
  }

  /**
   * Renewals of a failed write are dropped (the agent sends them all again next interval);
   * removals are kept for the next attempt, unless a newer batch renewed the lease meanwhile.
   */
  private writeFailed(agent: string, p: Pending, err: unknown): void {
    this.stats.writeFailures++;
    this.noteFailure();
    if (!this.failing) {
      this.failing = true;
      this.log.error({ err, agent }, 'could not write leases; no lease expires until writes succeed again');
    }
    if (p.remove.size > 0) {
      const q = this.pending.get(agent) ?? { renew: new Map(), remove: new Map() };
      for (const [k, v] of p.remove) if (!q.renew.has(k)) q.remove.set(k, v);
      this.pending.set(agent, q);
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, RETRY_AFTER_FAILURE_MS);
    this.retryTimer.unref();
  }

  /**
   * One failed access (a SQLite lock held a moment too long by another process, say) loses at most
   * one batch, which its agent sends again within ttl/3: only a second failure in a row counts as
   * the database being unreachable for the protection rules.
   */
  private noteFailure(): void {
    if (++this.failuresInRow >= 2) this.guard.dbFailed();
  }

  /** One expiry sweep (no overlap): candidates, the guard's decision, the conditional delete. */
  async sweep(): Promise<void> {
    if (this.sweeping || this.closed) return;
    const now = this.now();
    // While the database is marked down the sweep only probes it (a ttl bound of 0 matches nothing).
    const down = this.guard.databaseDown;
    const maxTtl = down ? 0 : this.guard.maxTtlMs(now);
    if (!down && maxTtl < MIN_LEASE_TTL_S * 1000) return;
    this.sweeping = true;
    try {
      const candidates = await this.opts.store.expiringLeases(now, maxTtl, EXPIRE_LIMIT);
      this.failuresInRow = 0;
      this.guard.dbOk(now);
      if (down || candidates.length === 0) return;
      const agents = await this.opts.store.leaseAgents();
      const d = this.guard.decide(candidates, agents, now);
      if (d.held.length > 0) {
        this.stats.held += d.held.length;
        if (d.braking)
          this.log.warn(
            { silentLeases: d.held.length, agents: agents.length },
            'most agents stopped renewing at once: holding their leases (registry-side problem suspected)',
          );
      }
      if (d.expire.length === 0) return;
      const res = await this.opts.store.expireLeases(d.expire);
      this.stats.expired += res.expired.length;
      if (res.expired.length > 0) {
        this.log.info(
          { expired: res.expired.length, routes: res.routes.length },
          'expired leases not renewed within their ttl',
        );
      }
      if (res.routes.length > 0) this.opts.onChanged();
    } catch (err) {
      this.stats.sweepFailures++;
      this.noteFailure();
      this.log.warn({ err }, 'lease expiry sweep failed');
    } finally {
      this.sweeping = false;
    }
  }
}
