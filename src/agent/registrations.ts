import { DEFAULT_MAX_REGISTRATIONS } from '../config/schema.js';
import { MAX_BODY_LEN } from '../protocol/frame.js';
import { encodeMessage, type Lease, type LeaseBatch, type RegisterRequest } from '../protocol/messages.js';
import { MsgId } from '../protocol/msg-id.js';
import { RetCode } from '../protocol/retcode.js';
import {
  DEFAULT_LEASE_TTL_S,
  MAX_LEASE_TTL_S,
  MAX_WEIGHT,
  MIN_LEASE_TTL_S,
} from '../protocol/lease-limits.js';

/**
 * The agent's registry of local instances (issue 15). Pure: no I/O, no timers; the clock and the
 * process checks are injected. The agent service feeds it RegisterRequests, sweeps it, and sends
 * what batches() returns to dns.
 *
 * - A registration lives while its process renews it (the SDK re-sends every ttl/3); one that is
 *   not renewed within its ttl lapses.
 * - When the registering process can be seen (same pid namespace, same start time: not a reused
 *   pid), checkProcesses() notices its death at once: a crash is gone in ~250 ms, not a ttl.
 * - A change (new registration, new weight or ttl, removal) goes out at once in a batch of just
 *   the changes; every interval a full batch renews all of them.
 * - Every removal is carried to dns in the next REMOVAL_REPEATS batches (a frame lost with a
 *   dropped link must not leave the host in the route until the lease's ttl).
 */

/** Batches in a row that carry a removal. */
export const REMOVAL_REPEATS = 3;
/** Leases per LeaseBatch frame: at most ~46 bytes each, so 1,000 fit well within one frame. */
export const LEASES_PER_FRAME = 1_000;

export interface RegistryOptions {
  /** The agent's own IPv4 (unsigned): the ip of registrations that leave it 0. */
  callerIp: number;
  maxRegistrations?: number;
  /** Monotonic ms. */
  now: () => number;
  /** The agent can watch this process (it sees it with this start time in its own pid namespace). */
  canWatch?: (pid: number, start: number, ns: number) => boolean;
  /** The watched process still runs. */
  alive?: (pid: number, start: number) => boolean;
}

interface Entry {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
  weight: number;
  ttlMs: number;
  lastSeenMs: number;
  /** Watched process (pid, start), or 0. */
  pid: number;
  start: number;
}

export interface RegisterOutcome {
  retcode: number;
  reason: string;
  /** Wire form (int32 ip). */
  host: { ip: number; port: number; weight?: number } | undefined;
  ttl_s: number;
  watched: boolean;
  /** A new registration, or its weight/ttl changed: dns should hear of it at once. */
  changed: boolean;
}

export type RemovalReason = 'deregistered' | 'lapsed' | 'exited';

const keyOf = (modid: number, cmdid: number, ip: number, port: number) => `${modid}:${cmdid}:${ip}:${port}`;

export class LocalRegistry {
  private readonly entries = new Map<string, Entry>();
  /** Removed registrations still to tell dns about: key -> batches left. */
  private readonly removals = new Map<string, { lease: Lease; left: number }>();
  /** Registrations new or changed since the last batch (what a change batch carries). */
  private readonly dirty = new Set<string>();
  private readonly opts: RegistryOptions;
  readonly stats = { registered: 0, renewed: 0, refused: 0, deregistered: 0, lapsed: 0, exited: 0 };

  constructor(options: RegistryOptions) {
    this.opts = options;
  }

  get size(): number {
    return this.entries.size;
  }

  get watched(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.pid !== 0) n++;
    return n;
  }

  /** Shortest ttl among the registrations (undefined when there are none). */
  get minTtlMs(): number | undefined {
    let min: number | undefined;
    for (const e of this.entries.values()) if (min === undefined || e.ttlMs < min) min = e.ttlMs;
    return min;
  }

  /** Removals not yet carried to dns as often as they should be. */
  get pendingRemovals(): number {
    return this.removals.size;
  }

  register(req: RegisterRequest): RegisterOutcome {
    const refuse = (reason: string): RegisterOutcome => {
      this.stats.refused++;
      return {
        retcode: RetCode.SYSTEM_ERROR,
        reason,
        host: undefined,
        ttl_s: 0,
        watched: false,
        changed: false,
      };
    };
    const h = req.host;
    if (!h || !Number.isInteger(h.port) || h.port < 1 || h.port > 65535)
      return refuse('port must be 1-65535');
    const ttlS = req.ttl_s || DEFAULT_LEASE_TTL_S;
    if (ttlS < MIN_LEASE_TTL_S || ttlS > MAX_LEASE_TTL_S)
      return refuse(`ttl must be ${MIN_LEASE_TTL_S}-${MAX_LEASE_TTL_S} s, got ${ttlS}`);
    const weight = h.weight || 1;
    if (weight > MAX_WEIGHT) return refuse(`weight must be 1-${MAX_WEIGHT}, got ${weight}`);
    const ip = h.ip === 0 ? this.opts.callerIp >>> 0 : h.ip >>> 0;
    if (ip === 0) return refuse('no ip given and the agent does not know its own');
    const key = keyOf(req.modid, req.cmdid, ip, h.port);
    const now = this.opts.now();
    let e = this.entries.get(key);
    let changed = false;
    if (!e) {
      if (this.entries.size >= (this.opts.maxRegistrations ?? DEFAULT_MAX_REGISTRATIONS))
        return refuse(`this agent already holds ${this.entries.size} registrations (its limit)`);
      e = {
        modid: req.modid,
        cmdid: req.cmdid,
        ip,
        port: h.port,
        weight,
        ttlMs: ttlS * 1000,
        lastSeenMs: now,
        pid: 0,
        start: 0,
      };
      this.entries.set(key, e);
      this.removals.delete(key);
      this.dirty.add(key);
      this.stats.registered++;
      changed = true;
    } else {
      changed = e.weight !== weight || e.ttlMs !== ttlS * 1000;
      if (changed) this.dirty.add(key);
      e.weight = weight;
      e.ttlMs = ttlS * 1000;
      e.lastSeenMs = now;
      this.stats.renewed++;
    }
    // A renewal from the process already watched needs no new look at /proc.
    const same = e.pid !== 0 && e.pid === req.pid && e.start === req.pid_start;
    const watch =
      same ||
      (req.pid > 0 &&
        req.pid_start > 0 &&
        (this.opts.canWatch?.(req.pid, req.pid_start, req.pid_ns) ?? false));
    e.pid = watch ? req.pid : 0;
    e.start = watch ? req.pid_start : 0;
    return {
      retcode: RetCode.SUCC,
      reason: '',
      host: { ip: ip | 0, port: h.port, ...(weight !== 1 ? { weight } : {}) },
      ttl_s: ttlS,
      watched: watch,
      changed,
    };
  }

  /** Removes a registration; false when there was none (deregistering twice is not an error). */
  deregister(req: RegisterRequest): boolean {
    const h = req.host;
    if (!h) return false;
    const ip = h.ip === 0 ? this.opts.callerIp >>> 0 : h.ip >>> 0;
    return this.remove(keyOf(req.modid, req.cmdid, ip, h.port), 'deregistered');
  }

  /** Drops registrations not renewed within their ttl; returns how many. */
  sweep(): number {
    const now = this.opts.now();
    let n = 0;
    for (const [key, e] of this.entries) if (now - e.lastSeenMs > e.ttlMs && this.remove(key, 'lapsed')) n++;
    return n;
  }

  /** Drops registrations whose watched process has ended; returns how many. */
  checkProcesses(): number {
    const alive = this.opts.alive;
    if (!alive) return 0;
    const verdict = new Map<number, boolean>();
    let n = 0;
    for (const [key, e] of this.entries) {
      if (e.pid === 0) continue;
      let ok = verdict.get(e.pid);
      if (ok === undefined) {
        ok = alive(e.pid, e.start);
        verdict.set(e.pid, ok);
      }
      if (!ok && this.remove(key, 'exited')) n++;
    }
    return n;
  }

  /**
   * LeaseBatch frames carrying the registrations and the pending removals (each frame within the
   * frame limit): every registration when `full` (the interval's renewal, after a reconnect), only
   * those new or changed since the last batch otherwise (a burst of registrations costs dns one
   * lease each, not the whole registry each time). Call when the batch is actually sent: it counts
   * the removals down.
   */
  batches(agent: string, full = true): LeaseBatch[] {
    const renew: Lease[] = [];
    if (full) for (const e of this.entries.values()) renew.push(toLease(e));
    else
      for (const key of this.dirty) {
        const e = this.entries.get(key);
        if (e) renew.push(toLease(e));
      }
    this.dirty.clear();
    let remove = [...this.removals.values()].map((r) => r.lease);
    for (const [key, r] of this.removals) if (--r.left <= 0) this.removals.delete(key);
    const out: LeaseBatch[] = [];
    for (let i = 0; i < renew.length; i += LEASES_PER_FRAME)
      out.push({ agent, renew: renew.slice(i, i + LEASES_PER_FRAME), remove: [] });
    const tail = out.at(-1);
    if (tail && remove.length > 0) {
      const room = LEASES_PER_FRAME - tail.renew.length;
      tail.remove = remove.slice(0, room);
      remove = remove.slice(room);
    }
    for (let i = 0; i < remove.length; i += LEASES_PER_FRAME)
      out.push({ agent, renew: [], remove: remove.slice(i, i + LEASES_PER_FRAME) });
    return out.flatMap(fit);
  }

  private remove(key: string, reason: RemovalReason): boolean {
    const e = this.entries.get(key);
    if (!e) return false;
    this.entries.delete(key);
    this.dirty.delete(key);
    this.removals.set(key, { lease: toLease(e), left: REMOVAL_REPEATS });
    this.stats[reason]++;
    return true;
  }
}

function toLease(e: Entry): Lease {
  return {
    modid: e.modid,
    cmdid: e.cmdid,
    host: { ip: e.ip | 0, port: e.port, ...(e.weight !== 1 ? { weight: e.weight } : {}) },
    ttl_s: e.ttlMs / 1000,
  };
}

/** Splits a batch until each part encodes within one frame (defensive: 1,000 leases always fit). */
function fit(b: LeaseBatch): LeaseBatch[] {
  if (encodeMessage(MsgId.LeaseBatch, b).length <= MAX_BODY_LEN) return [b];
  const half = (list: Lease[]) => [
    list.slice(0, Math.ceil(list.length / 2)),
    list.slice(Math.ceil(list.length / 2)),
  ];
  const [r1, r2] = half(b.renew);
  const [m1, m2] = half(b.remove);
  return [
    ...fit({ agent: b.agent, renew: r1 ?? [], remove: m1 ?? [] }),
    ...fit({ agent: b.agent, renew: r2 ?? [], remove: m2 ?? [] }),
  ];
}
