import { tracer } from '../../log/trace.js';
import { Proc, ProcState, type OfflineReason, type PeerCreds } from './proc.js';
import type { BusConn } from './bus-conn.js';

const trace = tracer('bus');

export interface ProcTableOptions {
  offlineMs: number;
  killMs: number;
  /** The bus's monotonic clock in ms (injected: tests drive it). */
  now: () => number;
  /** Every state change, for logs and metrics. */
  onState?: (proc: Proc, from: ProcState, to: ProcState, why: string) => void;
  /** A proc leaves the table (killme or replaced): the owner releases what it held. */
  onRemove: (proc: Proc, why: 'killme' | 'replaced') => void;
}

export type RegisterResult =
  { ok: true; proc: Proc; replaced: Proc | undefined } | { ok: false; holder: Proc };

/**
 * The registry of procs and their states (seed B2-B10, DESIGN §9), on the bus's clock only (never
 * the client's):
 *
 *     normal  --no frame for offlineMs / unregister / socket closed-->  offline
 *     offline --frame received (still connected, registered)-------->  normal
 *     normal|offline --no frame for killMs (3 x offline)------------->  killme -> removed at the sweep
 *
 * A name held by a connected normal proc is refused unless the newcomer takes over; a name held by
 * an offline proc is replaced at once (the old session goes to killme and is removed).
 */
export class ProcTable {
  private readonly byName = new Map<string, Proc>();
  private readonly byNum = new Map<number, Proc>();
  private nextNum = 1;

  constructor(private readonly opts: ProcTableOptions) {}

  get size(): number {
    return this.byName.size;
  }

  get(name: string): Proc | undefined {
    return this.byName.get(name);
  }

  byNumber(num: number): Proc | undefined {
    return this.byNum.get(num);
  }

  all(): IterableIterator<Proc> {
    return this.byName.values();
  }

  counts(): Record<ProcState, number> {
    const c = { normal: 0, offline: 0, killme: 0 };
    for (const p of this.byName.values()) c[p.state] += 1;
    return c;
  }

  register(
    name: string,
    conn: BusConn,
    creds: PeerCreds | undefined,
    info: { publicInfo: string; privateInfo: string; takeover: boolean },
  ): RegisterResult {
    const holder = this.byName.get(name);
    if (holder && holder.state === ProcState.NORMAL && holder.connected && !info.takeover)
      return { ok: false, holder };
    if (holder) this.remove(holder, 'replaced');
    const num = this.nextNum;
    this.nextNum = this.nextNum >= 0xfffffffe ? 1 : this.nextNum + 1;
    const proc = new Proc(name, num, creds, info.publicInfo, info.privateInfo, conn, this.opts.now());
    this.byName.set(name, proc);
    this.byNum.set(num, proc);
    trace?.(`proc ${name}#${num} registered${holder ? ' (replaced an old session)' : ''}`);
    return { ok: true, proc, replaced: holder };
  }

  /** A frame arrived from a connected, registered proc: it is alive. */
  revive(proc: Proc, nowMs: number): void {
    proc.lastHeardMs = nowMs;
    if (proc.state !== ProcState.NORMAL && proc.conn !== undefined) this.set(proc, ProcState.NORMAL, 'frame');
  }

  /** The proc's socket closed (exact, load-proof death signal) or it unregistered. */
  detach(proc: Proc, reason: OfflineReason): void {
    proc.conn = undefined;
    proc.offlineReason = reason;
    if (proc.state === ProcState.NORMAL) this.set(proc, ProcState.OFFLINE, reason);
  }

  /** Recomputes every state from the time since the last frame; removes killme procs. */
  sweep(nowMs = this.opts.now()): void {
    const { offlineMs, killMs } = this.opts;
    for (const proc of [...this.byName.values()]) {
      const silent = nowMs - proc.lastHeardMs;
      if (silent >= killMs) {
        this.set(proc, ProcState.KILLME, `silent ${Math.round(silent)} ms`);
        this.remove(proc, 'killme');
      } else if (silent >= offlineMs && proc.state === ProcState.NORMAL) {
        proc.offlineReason = 'silent';
        this.set(proc, ProcState.OFFLINE, `silent ${Math.round(silent)} ms`);
      }
    }
  }

  private remove(proc: Proc, why: 'killme' | 'replaced'): void {
    if (this.byName.get(proc.name) === proc) this.byName.delete(proc.name);
    this.byNum.delete(proc.num);
    if (why === 'replaced' && proc.state !== ProcState.KILLME) this.set(proc, ProcState.KILLME, 'replaced');
    this.opts.onRemove(proc, why);
  }

  private set(proc: Proc, to: ProcState, why: string): void {
    const from = proc.state;
    if (from === to) return;
    proc.state = to;
    trace?.(`proc ${proc.name}#${proc.num}: ${from} -> ${to} (${why})`);
    this.opts.onState?.(proc, from, to, why);
  }
}
