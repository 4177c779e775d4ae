import { readdirSync } from 'node:fs';
import type { NativeAddon } from '../native/index.js';
import {
  atomicsWork,
  committedWord,
  consumedBy,
  E_CHECK,
  E_CMDID,
  E_IP,
  E_MODID,
  E_PORT,
  E_RETCODE,
  E_TIMECOST,
  entryCheck,
  FAST_PATH_MAGIC,
  FAST_PATH_VERSION,
  H_BIND_IP,
  H_HEARTBEAT,
  H_HOSTS_PER_ROUTE,
  H_INCARNATION,
  H_MAGIC,
  H_PID,
  H_PORT,
  H_PROBE_NUM,
  H_RING_ENTRIES,
  H_RING_HEAD,
  H_INDEX_OFFSET,
  H_INDEX_SLOTS,
  H_RING_OFFSET,
  H_RING_TAIL,
  H_ROUTE_SLOTS,
  H_ROUTES_OFFSET,
  H_STATE,
  H_TOTAL_WORDS,
  H_VERSION,
  heartbeatNow,
  layout,
  POS_MASK,
  RING_ENTRY_WORDS,
  routeHash,
  S_CMDID,
  S_IDLE,
  S_MODID,
  S_OVERLOAD,
  S_PHASE,
  S_REQ,
  S_SEQ,
  S_STATE,
  SegmentState,
  skippedWord,
  SLOT_HEADER_WORDS,
  IndexWord,
  SlotState,
  slotWords,
  type TableGeometry,
} from '../protocol/shm-table.js';

// `[agent] fast_path_*` defaults (docs/config.md).
export const DEFAULT_FAST_PATH_ROUTES = 4096; // routes per agent port
export const DEFAULT_FAST_PATH_HOSTS = 64; // hosts per route
export const DEFAULT_FAST_PATH_RING = 65_536; // ring entries per agent port

/** A ring position reserved but not committed for this long is skipped (its writer died or stalls). */
export const STUCK_ENTRY_MS = 50;
/** Entries applied per drain at most, so one drain never holds the event loop for long. */
const MAX_DRAIN = 16_384;

/** A host in wire form: int32 ip and port. */
export interface TableHost {
  readonly ip: number;
  readonly port: number;
}

export interface SegmentOptions extends TableGeometry {
  readonly name: string;
  readonly port: number;
  readonly probeNum: number;
  /** Wire form of the address the agent binds (0 when it is not one IPv4 address). */
  readonly bindIp: number;
}

/**
 * One published route: where it lives and how many hosts its queues had when last written. The
 * queues themselves are read back from the slot (only the agent writes a slot's hosts), so the agent
 * keeps no copy of 10,000 routes' hosts (issue 17's footprint).
 */
interface Published {
  slot: number;
  /** Its word in the route index. */
  pos: number;
  modid: number;
  cmdid: number;
  idleLen: number;
  overloadLen: number;
  phase: number;
}

/** A route's queues, head first. */
interface Queues {
  idle: readonly TableHost[];
  overload: readonly TableHost[];
}

export interface DrainCounts {
  applied: number;
  /** Committed entries whose check word did not match (fields overwritten by a writer of another round). */
  torn: number;
  /** Positions never committed within STUCK_ENTRY_MS (a writer died mid-write or stalled). */
  skipped: number;
}

/** Calls (and probes among them) clients made on a route since the agent last wrote its slot. */
export interface Consumed {
  calls: number;
  probes: number;
}

/** Why a route is not in the table. */
export type UnpublishedReason = 'table-full' | 'too-many-hosts';

export type ResultSink = (
  modid: number,
  cmdid: number,
  ip: number,
  port: number,
  retcode: number,
  timecostMs: number | undefined,
) => void;

const hostKey = (h: TableHost): number => (h.ip >>> 0) * 65536 + h.port;

/**
 * The agent's side of one fast-path segment (issue 18, layout in src/protocol/shm-table.ts): creates
 * it (0600, replacing and closing a segment a former agent left under the same name), rewrites a
 * route's slot under its seqlock when the balancer changes, drains the result ring, beats the
 * heartbeat, and at close marks the segment closed (every slot odd: clients go back to UDP) and
 * unlinks it if the name is still its own.
 */
export class FastPathSegment {
  readonly name: string;
  private readonly addon: NativeAddon;
  private mapping: ArrayBuffer | undefined;
  private readonly w: Int32Array;
  private readonly g: TableGeometry;
  private readonly probeNum: number;
  private readonly routesOff: number;
  private readonly indexOff: number;
  private readonly indexSlots: number;
  /** Slots given back by removed routes (used first, so touched memory stays small). */
  private readonly freed: number[] = [];
  /** Slots from here on were never used. */
  private fresh = 0;
  private readonly ringOff: number;
  private readonly slotLen: number;
  private readonly incarnation: number;
  private readonly byKey = new Map<string, Published>();
  private tombstones = 0;
  private stuckPos = -1;
  private stuckSince = 0;
  /** Set by create(): whether a former agent's segment was found under the name and closed. */
  replacedFormer = false;

  private constructor(addon: NativeAddon, mapping: ArrayBuffer, opts: SegmentOptions) {
    this.addon = addon;
    this.name = opts.name;
    this.mapping = mapping;
    this.w = new Int32Array(mapping);
    this.g = {
      routeSlots: opts.routeSlots,
      hostsPerRoute: opts.hostsPerRoute,
      ringEntries: opts.ringEntries,
    };
    this.probeNum = opts.probeNum;
    const l = layout(this.g);
    this.routesOff = l.routesOffset;
    this.indexOff = l.indexOffset;
    this.indexSlots = l.indexSlots;
    this.ringOff = l.ringOffset;
    this.slotLen = slotWords(opts.hostsPerRoute);
    // Tells a re-created segment from this one; need not be secret (and node:crypto costs ~2 MB RSS).
    this.incarnation = 1 + Math.floor(Math.random() * 0x7ffffffe);
    const w = this.w;
    w[H_VERSION] = FAST_PATH_VERSION;
    w[H_PID] = process.pid;
    w[H_PORT] = opts.port;
    w[H_PROBE_NUM] = opts.probeNum;
    w[H_ROUTE_SLOTS] = opts.routeSlots;
    w[H_HOSTS_PER_ROUTE] = opts.hostsPerRoute;
    w[H_RING_ENTRIES] = opts.ringEntries;
    w[H_ROUTES_OFFSET] = l.routesOffset;
    w[H_INDEX_SLOTS] = l.indexSlots;
    w[H_INDEX_OFFSET] = l.indexOffset;
    w[H_RING_OFFSET] = l.ringOffset;
    w[H_TOTAL_WORDS] = l.totalWords;
    w[H_INCARNATION] = this.incarnation;
    w[H_BIND_IP] = opts.bindIp | 0;
    Atomics.store(w, H_HEARTBEAT, heartbeatNow(Date.now()));
    // The magic last: a client checks it (and the state) before anything else.
    Atomics.store(w, H_MAGIC, FAST_PATH_MAGIC);
    Atomics.store(w, H_STATE, SegmentState.Live);
  }

  /**
   * Creates the segment, replacing one a former agent of this port left (that one is marked closed
   * first, so its clients map the new one). Throws the addon's error (code = errno name) when the
   * segment cannot be created, or an Error with code 'EATOMICS' when the start-up check of Atomics
   * on the mapping fails.
   */
  static create(addon: NativeAddon, opts: SegmentOptions): FastPathSegment {
    const bytes = layout(opts).totalWords * 4;
    let mapping: ArrayBuffer;
    let replaced = false;
    try {
      mapping = addon.map(opts.name, bytes, true);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
      closeFormer(addon, opts.name);
      addon.unlink(opts.name);
      replaced = true;
      mapping = addon.map(opts.name, bytes, true);
    }
    try {
      const second = addon.map(opts.name, 0, false);
      const ok = atomicsWork(new Int32Array(mapping), new Int32Array(second));
      addon.unmap(second);
      if (!ok)
        throw Object.assign(new Error('Atomics on the mapped segment do not behave'), { code: 'EATOMICS' });
    } catch (err) {
      addon.unmap(mapping);
      addon.unlink(opts.name);
      throw err;
    }
    const seg = new FastPathSegment(addon, mapping, opts);
    seg.replacedFormer = replaced;
    return seg;
  }

  get routes(): number {
    return this.byKey.size;
  }

  get bytes(): number {
    return this.w.byteLength;
  }

  isPublished(modid: number, cmdid: number): boolean {
    return this.byKey.has(`${modid}:${cmdid}`);
  }

  heartbeat(nowMs: number): void {
    Atomics.store(this.w, H_HEARTBEAT, heartbeatNow(nowMs));
  }

  /**
   * Writes a route's queues (head first, as the balancer holds them). The rotation continues where
   * the clients left it: the queues as last written, turned by the calls made since, keep their
   * order; hosts that left a queue leave it, hosts that joined go to its tail, as in the balancer.
   * Returns the calls and probes clients made since the last rewrite, and the reason when the route
   * could not be published (it is then left out: clients use UDP for it).
   */
  publish(
    modid: number,
    cmdid: number,
    idle: readonly TableHost[],
    overload: readonly TableHost[],
  ): Consumed & { refused?: UnpublishedReason } {
    if (this.replaced) return { calls: 0, probes: 0 };
    if (idle.length + overload.length > this.g.hostsPerRoute) {
      return { ...this.unpublish(modid, cmdid), refused: 'too-many-hosts' };
    }
    const key = `${modid}:${cmdid}`;
    let p = this.byKey.get(key);
    if (p === undefined) {
      if (this.byKey.size >= this.g.routeSlots) return { calls: 0, probes: 0, refused: 'table-full' };
      const slot = this.freed.pop() ?? this.fresh++;
      p = { slot, pos: this.freePos(modid, cmdid), modid, cmdid, idleLen: 0, overloadLen: 0, phase: 0 };
      this.byKey.set(key, p);
      const out = this.write(p, this.written(p), { idle, overload });
      // Found by clients only once the slot is whole.
      Atomics.store(this.w, this.indexOff + p.pos, p.slot + 1);
      return out;
    }
    return this.write(p, this.written(p), { idle, overload });
  }

  /**
   * Rewrites p's slot under its seqlock: `last` (the queues as last written) turned by the calls
   * made since, with `now`'s membership merged in.
   */
  private write(p: Published, last: Queues, now: Queues): Consumed {
    const b = this.routesOff + p.slot * this.slotLen;
    const w = this.w;
    Atomics.store(w, b + S_SEQ, (Atomics.load(w, b + S_SEQ) + 1) | 0);
    const calls = Atomics.exchange(w, b + S_REQ, 0);
    const t = turned(last, calls, p.phase, this.probeNum);
    const idle = merge(t.idle, now.idle);
    const overload = merge(t.overload, now.overload);
    p.idleLen = idle.length;
    p.overloadLen = overload.length;
    p.phase = (p.phase + calls) % this.probeNum;
    w[b + S_STATE] = SlotState.Live;
    w[b + S_MODID] = p.modid;
    w[b + S_CMDID] = p.cmdid;
    w[b + S_PHASE] = p.phase;
    w[b + S_IDLE] = idle.length;
    w[b + S_OVERLOAD] = overload.length;
    let at = b + SLOT_HEADER_WORDS;
    for (const h of idle) {
      w[at++] = h.ip | 0;
      w[at++] = h.port;
    }
    for (const h of overload) {
      w[at++] = h.ip | 0;
      w[at++] = h.port;
    }
    Atomics.store(w, b + S_SEQ, (Atomics.load(w, b + S_SEQ) + 1) | 0);
    return { calls, probes: t.probes };
  }

  /** p's queues as the agent last wrote them in its slot. */
  private written(p: Published): Queues {
    const w = this.w;
    let at = this.routesOff + p.slot * this.slotLen + SLOT_HEADER_WORDS;
    const read = (n: number): TableHost[] => {
      const out: TableHost[] = [];
      for (let i = 0; i < n; i++, at += 2) out.push({ ip: w[at] as number, port: w[at + 1] as number });
      return out;
    };
    const idle = read(p.idleLen);
    return { idle, overload: read(p.overloadLen) };
  }

  /** Takes a route out of the table (clients then use UDP for it). Returns the calls made since its last rewrite. */
  unpublish(modid: number, cmdid: number): Consumed {
    const key = `${modid}:${cmdid}`;
    const p = this.byKey.get(key);
    if (p === undefined || this.replaced) return { calls: 0, probes: 0 };
    this.byKey.delete(key);
    const b = this.routesOff + p.slot * this.slotLen;
    const w = this.w;
    Atomics.store(w, b + S_SEQ, (Atomics.load(w, b + S_SEQ) + 1) | 0);
    const calls = Atomics.exchange(w, b + S_REQ, 0);
    w[b + S_STATE] = SlotState.Empty;
    Atomics.store(w, b + S_SEQ, (Atomics.load(w, b + S_SEQ) + 1) | 0);
    Atomics.store(w, this.indexOff + p.pos, IndexWord.Tombstone);
    this.tombstones += 1;
    this.freed.push(p.slot);
    const { probes } = consumedBy(calls, p.phase, p.idleLen, p.overloadLen, this.probeNum);
    return { calls, probes };
  }

  /** Calls made on a published route since its last rewrite (without resetting them). */
  pendingCalls(modid: number, cmdid: number): number {
    const p = this.byKey.get(`${modid}:${cmdid}`);
    return p === undefined ? 0 : Atomics.load(this.w, this.routesOff + p.slot * this.slotLen + S_REQ);
  }

  /** Every published route (for the periodic scan of request counters). */
  *published(): IterableIterator<{ modid: number; cmdid: number }> {
    for (const p of this.byKey.values()) yield { modid: p.modid, cmdid: p.cmdid };
  }

  /**
   * Applies the committed results in ring order through `sink`, skipping (and counting) torn
   * entries and positions left uncommitted for STUCK_ENTRY_MS.
   */
  drain(sink: ResultSink, nowMs: number): DrainCounts {
    const w = this.w;
    const out: DrainCounts = { applied: 0, torn: 0, skipped: 0 };
    const mask = this.g.ringEntries - 1;
    let h = w[H_RING_HEAD] as number;
    const t = Atomics.load(w, H_RING_TAIL);
    let n = 0;
    while (h !== t && n < MAX_DRAIN) {
      const e = this.ringOff + (h & mask) * RING_ENTRY_WORDS;
      const c = Atomics.load(w, e);
      if (c === committedWord(h)) {
        const modid = w[e + E_MODID] as number;
        const cmdid = w[e + E_CMDID] as number;
        const ip = w[e + E_IP] as number;
        const port = w[e + E_PORT] as number;
        const retcode = w[e + E_RETCODE] as number;
        const timecost = w[e + E_TIMECOST] as number;
        if (w[e + E_CHECK] === entryCheck(h, modid, cmdid, ip, port, retcode, timecost)) {
          sink(modid, cmdid, ip, port, retcode, timecost > 0 ? timecost : undefined);
          out.applied += 1;
        } else out.torn += 1;
      } else {
        if (this.stuckPos !== h) {
          this.stuckPos = h;
          this.stuckSince = nowMs;
          break;
        }
        if (nowMs - this.stuckSince < STUCK_ENTRY_MS) break;
        // Committed in the meantime: read it again.
        if (Atomics.compareExchange(w, e, c, skippedWord(h)) !== c) continue;
        out.skipped += 1;
      }
      h = (h + 1) & POS_MASK;
      n += 1;
    }
    Atomics.store(w, H_RING_HEAD, h);
    return out;
  }

  /**
   * Marks the segment closed (every slot odd, so clients go back to UDP and map the name again),
   * unlinks the name if it is still this segment's, and unmaps it. Idempotent.
   */
  close(): void {
    if (this.mapping === undefined) return;
    markClosed(this.w);
    try {
      const current = this.addon.map(this.name, 0, false);
      const mine = new Int32Array(current)[H_INCARNATION] === this.incarnation;
      this.addon.unmap(current);
      if (mine) this.addon.unlink(this.name);
    } catch {
      // Already gone (unlinked by hand, or replaced and removed): nothing to unlink.
    }
    this.addon.unmap(this.mapping);
    this.mapping = undefined;
  }

  get closed(): boolean {
    return this.mapping === undefined;
  }

  /**
   * Another agent took this segment's name and marked it closed (every slot odd): writing a slot
   * now would make it even again and let a client still mapped here read a half-written slot.
   */
  private get replaced(): boolean {
    return Atomics.load(this.w, H_STATE) !== SegmentState.Live;
  }

  /** An index word on the route's probe chain that is empty or a tombstone. */
  private freePos(modid: number, cmdid: number): number {
    if (this.tombstones > this.indexSlots / 4) this.rebuildIndex();
    const mask = this.indexSlots - 1;
    let i = routeHash(modid, cmdid) & mask;
    // At most half the words are live (indexSlotsFor), and tombstones are bounded: one is free.
    for (;;) {
      const e = this.w[this.indexOff + i];
      if (e === IndexWord.Empty) return i;
      if (e === IndexWord.Tombstone) {
        this.tombstones -= 1;
        return i;
      }
      i = (i + 1) & mask;
    }
  }

  /**
   * Clears the index's tombstones by writing it again from the published routes. Slots stay where
   * they are (so each route keeps its rotation); a client looking a route up meanwhile may miss it
   * and use UDP for that call.
   */
  private rebuildIndex(): void {
    const w = this.w;
    w.fill(IndexWord.Empty, this.indexOff, this.indexOff + this.indexSlots);
    this.tombstones = 0;
    for (const p of this.byKey.values()) {
      p.pos = this.freePos(p.modid, p.cmdid);
      Atomics.store(w, this.indexOff + p.pos, p.slot + 1);
    }
  }
}

/** Whether a process exists (a signal 0 probe; EPERM means it exists under another user). */
function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/**
 * Closes and unlinks the fast-path segments of this user whose agent process is gone (killed
 * without closing them: a segment outlives its process), so they do not pile up in /dev/shm when no
 * agent comes back on their port. Returns how many it removed. Segments it cannot read are left.
 */
export function reapOrphanSegments(addon: NativeAddon, prefix: string): number {
  let names: string[];
  try {
    names = readdirSync('/dev/shm').filter((n) => n.startsWith(prefix.slice(1)));
  } catch {
    return 0;
  }
  let removed = 0;
  for (const file of names) {
    try {
      const ab = addon.map(`/${file}`, 0, false);
      const w = new Int32Array(ab, 0, Math.floor(ab.byteLength / 4));
      const orphan = w.length > H_STATE && w[H_MAGIC] === FAST_PATH_MAGIC && !pidExists(w[H_PID] as number);
      if (orphan) markClosed(w);
      addon.unmap(ab);
      if (orphan && addon.unlink(`/${file}`)) removed += 1;
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return removed;
}

/** Marks a mapped segment closed: state, then every even slot sequence made odd for good. */
function markClosed(w: Int32Array): void {
  Atomics.store(w, H_STATE, SegmentState.Closed);
  const slots = w[H_ROUTE_SLOTS] as number;
  const off = w[H_ROUTES_OFFSET] as number;
  const len = slotWords(w[H_HOSTS_PER_ROUTE] as number);
  if (!(slots > 0) || off + slots * len > w.length) return;
  for (let i = 0; i < slots; i++) {
    const at = off + i * len + S_SEQ;
    const seq = Atomics.load(w, at);
    if ((seq & 1) === 0) Atomics.store(w, at, seq + 1);
  }
}

/** A former agent's segment under our name: mark it closed so its clients move to ours. */
function closeFormer(addon: NativeAddon, name: string): void {
  try {
    const old = addon.map(name, 0, false);
    const w = new Int32Array(old);
    if (w.length > H_STATE && w[H_MAGIC] === FAST_PATH_MAGIC) markClosed(w);
    addon.unmap(old);
  } catch {
    // Not mappable: unlinking it is all we can do.
  }
}

/** The queues as last written, turned by `calls` clients made since (from `phase`). */
function turned(last: Queues, calls: number, phase: number, probeNum: number): Queues & { probes: number } {
  const { idleTurns, probes } = consumedBy(calls, phase, last.idle.length, last.overload.length, probeNum);
  return { idle: rotate(last.idle, idleTurns), overload: rotate(last.overload, probes), probes };
}

function rotate(list: readonly TableHost[], turns: number): readonly TableHost[] {
  if (list.length < 2) return list;
  const r = turns % list.length;
  return r === 0 ? list : [...list.slice(r), ...list.slice(0, r)];
}

/** `current` in the balancer's membership: those of `order` still there keep their order, newcomers follow. */
function merge(order: readonly TableHost[], current: readonly TableHost[]): TableHost[] {
  const want = new Map<number, TableHost>();
  for (const h of current) want.set(hostKey(h), h);
  const out: TableHost[] = [];
  for (const h of order) {
    const k = hostKey(h);
    const cur = want.get(k);
    if (cur !== undefined) {
      out.push(cur);
      want.delete(k);
    }
  }
  for (const h of want.values()) out.push(h);
  return out;
}
