import type { LeaseBatch } from '../protocol/index.js';
import { silentLogger, type Logger } from '../log/silent.js';
import type { LocalRegistry } from './registrations.js';

export interface RegistrationLinkOptions {
  registry: LocalRegistry;
  /** The agent's name: the owner of its leases at dns (may be set later, before start()). */
  agentName?: string;
  /** The dns link is up (batches are only built when they can leave at once). */
  connected: () => boolean;
  /** Sends one frame to dns. */
  send: (batch: LeaseBatch) => void;
  /** Monotonic ms. */
  now: () => number;
  /** Housekeeping period: lapsed registrations, dead processes, due renewals. Default 250 ms. */
  checkEveryMs?: number;
  /** A change waits this long for others to join its batch. Default 5 ms. */
  coalesceMs?: number;
  logger?: Logger;
}

export const DEFAULT_REGISTRATION_CHECK_MS = 250;
export const DEFAULT_REGISTRATION_COALESCE_MS = 5;

/**
 * Carries the agent's local registrations to dns over the existing dns link (issue 15): one
 * LeaseBatch per interval (a third of the shortest ttl) with every registration; the changes (new,
 * changed, removed) at once, coalesced over a few ms; everything again right after the link
 * (re)connects. While the link is down nothing is built, so nothing stale piles up in its queue.
 */
export class RegistrationLink {
  private readonly opts: RegistrationLinkOptions;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private lastSentMs = Number.NEGATIVE_INFINITY;
  private closed = false;
  agentName: string;
  readonly stats = { batches: 0, frames: 0 };

  constructor(options: RegistrationLinkOptions) {
    this.opts = options;
    this.log = options.logger ?? silentLogger;
    this.agentName = options.agentName ?? 'agent';
  }

  start(): void {
    this.timer = setInterval(() => this.check(), this.opts.checkEveryMs ?? DEFAULT_REGISTRATION_CHECK_MS);
    this.timer.unref();
  }

  /** A registration was added, changed or removed: dns hears of it within a few ms. */
  changed(): void {
    if (this.soon || this.closed) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.flush(false);
    }, this.opts.coalesceMs ?? DEFAULT_REGISTRATION_COALESCE_MS);
    this.soon.unref();
  }

  /** The dns link (re)connected: everything goes out again now. */
  reconnected(): void {
    this.flush(true);
  }

  /** Stops the timers. Registrations are not withdrawn: their processes re-register with the next agent. */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.soon) clearTimeout(this.soon);
    this.timer = this.soon = undefined;
  }

  private check(): void {
    const reg = this.opts.registry;
    const gone = reg.sweep() + reg.checkProcesses();
    const ttl = reg.minTtlMs;
    const due = ttl !== undefined && this.opts.now() - this.lastSentMs >= ttl / 3;
    if (due || gone > 0 || reg.pendingRemovals > 0) this.flush(due);
  }

  /** Sends a full batch (every registration) or a change batch (what changed since the last one). */
  private flush(full: boolean): void {
    if (this.closed || !this.opts.connected()) return;
    const batches = this.opts.registry.batches(this.agentName, full);
    if (batches.length === 0) return;
    try {
      for (const b of batches) this.opts.send(b);
    } catch (err) {
      // The link closed under us: the next connect sends everything again.
      this.log.warn({ err }, 'could not send registrations to dns');
      return;
    }
    if (full) this.lastSentMs = this.opts.now();
    this.stats.batches++;
    this.stats.frames += batches.length;
  }
}
