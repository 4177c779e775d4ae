import { FastPathError } from '../errors.js';
import { loadNative, nativeStatus, type NativeAddon } from '../native/index.js';
import { agentPortIndex } from '../protocol/agent-port.js';
import { ipToWire, isValidIpv4, numberToIp } from '../protocol/ip.js';
import { RetCode } from '../protocol/retcode.js';
import {
  atomicsWork,
  committedWord,
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
  fastPathSegmentName,
  findSlot,
  H_BIND_IP,
  H_HEARTBEAT,
  H_HOSTS_PER_ROUTE,
  H_INDEX_OFFSET,
  H_INDEX_SLOTS,
  H_MAGIC,
  H_PORT,
  H_PROBE_NUM,
  H_RING_ENTRIES,
  H_RING_HEAD,
  H_RING_OFFSET,
  H_RING_TAIL,
  H_ROUTE_SLOTS,
  H_ROUTES_OFFSET,
  H_STATE,
  H_TOTAL_WORDS,
  H_VERSION,
  HEADER_WORDS,
  HEARTBEAT_STALE_MS,
  heartbeatAge,
  layout,
  pickIndex,
  POS_MASK,
  RING_ENTRY_WORDS,
  S_CMDID,
  S_IDLE,
  S_MODID,
  S_OVERLOAD,
  S_PHASE,
  S_REQ,
  S_SEQ,
  S_STATE,
  SegmentState,
  SLOT_HEADER_WORDS,
  SlotState,
  slotWords,
  type SlotPlace,
} from '../protocol/shm-table.js';

/** `auto`: use the fast path when the agent offers it, else UDP. `require`: fail without it. `off`: UDP only. */
export type FastPathMode = 'auto' | 'off' | 'require';

export const FAST_PATH_MODES: readonly FastPathMode[] = ['auto', 'off', 'require'];

/**
 * Why a call went over UDP. Route level (the segment is fine): `route-missing` (not in the table:
 * unknown yet, weighted, too big), `rewriting` (the agent was rewriting the slot), `ring-full`,
 * `ring-busy` (too much contention on the tail), `skipped` (this writer stalled and the agent moved
 * on). Segment level: `no-segment`, `closed`, `stale`, `version`, `atomics`, `addon`, `remote-agent`.
 */
export type FallbackReason =
  | 'route-missing'
  | 'rewriting'
  | 'ring-full'
  | 'ring-busy'
  | 'skipped'
  | 'no-segment'
  | 'closed'
  | 'stale'
  | 'version'
  | 'atomics'
  | 'addon'
  | 'remote-agent';

export interface FastPathStats {
  /** getHost/tryGetHost answered from shared memory. */
  getHost: number;
  /** Reports written into a ring. */
  reports: number;
  /** Calls that went over UDP, by reason. */
  fallbacks: Partial<Record<FallbackReason, number>>;
}

export interface FastAnswer {
  retcode: number;
  host?: { ip: string; port: number };
}

/** A segment that could not be mapped is tried again after this long. */
const RETRY_MS = 1_000;
/** Calls between two heartbeat checks on the hot path (a clock read costs ~150 ns here). */
const BEAT_CHECK_EVERY = 4096;
/** Reservation attempts on a contended ring tail before the report goes over UDP. */
const MAX_RESERVE_TRIES = 64;
const IP_CACHE_MAX = 4096;

class SegmentError extends Error {
  constructor(
    readonly reason: FallbackReason,
    message: string,
  ) {
    super(message);
  }
}

/**
 * One mapped fast-path segment, read (and its counters and ring written) with the rules of
 * src/protocol/shm-table.ts. `miss` says why the last call returned nothing.
 */
class SegmentView implements SlotPlace {
  readonly mapping: ArrayBuffer;
  miss: FallbackReason = 'route-missing';
  private readonly w: Int32Array;
  private readonly probeNum: number;
  private readonly hostsPerRoute: number;
  readonly indexOffset: number;
  readonly indexMask: number;
  readonly routesOffset: number;
  readonly slotLen: number;
  private readonly ringOff: number;
  private readonly ringEntries: number;
  private readonly ringMask: number;
  /** A lower bound of the ring head (it only grows): read again only when the ring looks full. */
  private head: number;
  /** The tail this process expects next (a guess: compare-exchange corrects it). */
  private tail: number;
  private ops = 0;
  /** Per slot: dotted ips of the slot's hosts at one sequence number. */
  private readonly ips: Array<{ seq: number; list: Array<string | undefined> } | undefined> = [];

  /** Validates the header; throws SegmentError. */
  constructor(mapping: ArrayBuffer, port: number) {
    this.mapping = mapping;
    const w = new Int32Array(mapping, 0, Math.floor(mapping.byteLength / 4));
    this.w = w;
    if (w.length < HEADER_WORDS || Atomics.load(w, H_MAGIC) !== FAST_PATH_MAGIC)
      throw new SegmentError('no-segment', 'the segment is not (yet) a fast-path table');
    if (w[H_VERSION] !== FAST_PATH_VERSION)
      throw new SegmentError(
        'version',
        `layout version ${w[H_VERSION]}, this client reads ${FAST_PATH_VERSION}`,
      );
    if (Atomics.load(w, H_STATE) !== SegmentState.Live)
      throw new SegmentError('closed', 'the agent closed this segment');
    const g = {
      routeSlots: w[H_ROUTE_SLOTS] as number,
      hostsPerRoute: w[H_HOSTS_PER_ROUTE] as number,
      ringEntries: w[H_RING_ENTRIES] as number,
    };
    const l = layout(g);
    const pow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;
    if (
      !(g.routeSlots > 0) ||
      !pow2(g.ringEntries) ||
      !(g.hostsPerRoute > 0) ||
      !((w[H_PROBE_NUM] as number) >= 1) ||
      w[H_INDEX_SLOTS] !== l.indexSlots ||
      w[H_INDEX_OFFSET] !== l.indexOffset ||
      w[H_ROUTES_OFFSET] !== l.routesOffset ||
      w[H_RING_OFFSET] !== l.ringOffset ||
      w[H_TOTAL_WORDS] !== l.totalWords ||
      l.totalWords > w.length ||
      w[H_PORT] !== port
    )
      throw new SegmentError('version', 'the segment header is inconsistent');
    this.probeNum = w[H_PROBE_NUM] as number;
    this.hostsPerRoute = g.hostsPerRoute;
    this.indexOffset = l.indexOffset;
    this.indexMask = l.indexSlots - 1;
    this.routesOffset = l.routesOffset;
    this.slotLen = slotWords(g.hostsPerRoute);
    this.ringOff = l.ringOffset;
    this.ringEntries = g.ringEntries;
    this.ringMask = g.ringEntries - 1;
    this.head = Atomics.load(w, H_RING_HEAD);
    this.tail = Atomics.load(w, H_RING_TAIL);
    if (this.beatStale()) throw new SegmentError('stale', 'the agent stopped beating');
  }

  get bindIp(): number {
    return this.w[H_BIND_IP] as number;
  }

  get words(): Int32Array {
    return this.w;
  }

  beatStale(): boolean {
    return heartbeatAge(Atomics.load(this.w, H_HEARTBEAT), Date.now()) > HEARTBEAT_STALE_MS;
  }

  closedNow(): boolean {
    return Atomics.load(this.w, H_STATE) !== SegmentState.Live;
  }

  /**
   * False when the segment must be let go (closed, or its agent stopped beating): see `miss`. Also
   * refreshes the cached ring head, so that it never lags by anything near the 2^30 wrap.
   */
  healthy(): boolean {
    this.head = Atomics.load(this.w, H_RING_HEAD);
    if (this.closedNow()) {
      this.miss = 'closed';
      return false;
    }
    if (this.beatStale()) {
      this.miss = 'stale';
      return false;
    }
    return true;
  }

  /** Heartbeat check every BEAT_CHECK_EVERY calls. */
  due(): boolean {
    this.ops += 1;
    return (this.ops & (BEAT_CHECK_EVERY - 1)) === 0;
  }

  /** The balancer's pick for one call, or undefined (see `miss`). */
  pick(modid: number, cmdid: number): FastAnswer | undefined {
    const w = this.w;
    const b = findSlot(w, this, modid, cmdid);
    if (b < 0) {
      this.miss = 'route-missing';
      return undefined;
    }
    // Every read of the slot is an atomic load: on x86-64 that is a plain load, and on weakly
    // ordered CPUs (arm64) it keeps the slot reads inside the seqlock window (a plain load could be
    // completed after the closing read of S_SEQ and accept a half-written slot).
    const s1 = Atomics.load(w, b + S_SEQ);
    if ((s1 & 1) !== 0) {
      this.miss = this.closedNow() ? 'closed' : 'rewriting';
      return undefined;
    }
    const n = Atomics.add(w, b + S_REQ, 1) + 1;
    if (
      Atomics.load(w, b + S_STATE) !== SlotState.Live ||
      Atomics.load(w, b + S_MODID) !== modid ||
      Atomics.load(w, b + S_CMDID) !== cmdid
    ) {
      this.miss = 'rewriting';
      return undefined;
    }
    const k = Atomics.load(w, b + S_IDLE);
    const m = Atomics.load(w, b + S_OVERLOAD);
    const idx =
      n > 0 && k + m <= this.hostsPerRoute
        ? pickIndex(n, Atomics.load(w, b + S_PHASE), k, m, this.probeNum)
        : -2;
    let ip = 0;
    let port = 0;
    if (idx >= 0) {
      const at = b + SLOT_HEADER_WORDS + 2 * idx;
      ip = Atomics.load(w, at);
      port = Atomics.load(w, at + 1);
    }
    if (Atomics.load(w, b + S_SEQ) !== s1 || idx === -2) {
      this.miss = 'rewriting';
      return undefined;
    }
    if (idx < 0) return { retcode: RetCode.OVERLOAD };
    const slot = (b - this.routesOffset) / this.slotLen;
    let cache = this.ips[slot];
    if (cache === undefined || cache.seq !== s1) {
      cache = { seq: s1, list: [] };
      this.ips[slot] = cache;
    }
    let dotted = cache.list[idx];
    if (dotted === undefined) {
      dotted = numberToIp(ip);
      cache.list[idx] = dotted;
    }
    return { retcode: RetCode.SUCC, host: { ip: dotted, port } };
  }

  /**
   * Appends one call result to the ring; false (see `miss`) when it must go over UDP. Only for a
   * route in this table: the agent thread that drains the ring owns exactly those routes (a result
   * for another one goes over UDP, which the agent forwards to the route's owner).
   */
  push(modid: number, cmdid: number, ip: number, port: number, retcode: number, timecost: number): boolean {
    const w = this.w;
    if (w[H_STATE] !== SegmentState.Live) {
      this.miss = 'closed';
      return false;
    }
    const b = findSlot(w, this, modid, cmdid);
    if (b < 0 || w[b + S_STATE] !== SlotState.Live) {
      this.miss = 'route-missing';
      return false;
    }
    // Compare-exchange with the tail we expect (the one after our last entry); on a miss it returns
    // the real tail, the next try's guess. One atomic operation when this process writes alone.
    let t = this.tail;
    for (let tries = 0; ; tries++) {
      if (((t - this.head) & POS_MASK) >= this.ringEntries) {
        // Looks full, or the guessed tail is behind the cached head: read both for real.
        this.head = Atomics.load(w, H_RING_HEAD);
        t = Atomics.load(w, H_RING_TAIL);
        if (((t - this.head) & POS_MASK) >= this.ringEntries) {
          this.miss = 'ring-full';
          return false;
        }
      }
      const seen = Atomics.compareExchange(w, H_RING_TAIL, t, (t + 1) & POS_MASK);
      if (seen === t) break;
      t = seen;
      if (tries >= MAX_RESERVE_TRIES) {
        this.miss = 'ring-busy';
        return false;
      }
    }
    this.tail = (t + 1) & POS_MASK;
    const e = this.ringOff + (t & this.ringMask) * RING_ENTRY_WORDS;
    // After the compare-exchange (a full barrier): a plain read sees the word as it is now or newer.
    const old = w[e] as number;
    // The word must be the previous lap's (or never written). Anything else means this process
    // stalled so long that the agent skipped this position and the ring came round again: writing
    // now would hide a newer writer's entry, so the result goes over UDP instead.
    if (old !== 0 && (old & POS_MASK) !== ((t - this.ringEntries) & POS_MASK)) {
      this.miss = 'skipped';
      return false;
    }
    w[e + E_MODID] = modid;
    w[e + E_CMDID] = cmdid;
    w[e + E_IP] = ip;
    w[e + E_PORT] = port;
    w[e + E_RETCODE] = retcode;
    w[e + E_TIMECOST] = timecost;
    w[e + E_CHECK] = entryCheck(t, modid, cmdid, ip, port, retcode, timecost);
    // Fails only when the agent gave up on this position meanwhile (this process stalled for 50 ms).
    if (Atomics.compareExchange(w, e, old, committedWord(t)) !== old) {
      this.miss = 'skipped';
      return false;
    }
    return true;
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The SDK side of the agent's shared-memory fast path (issue 18). Maps the segment of the agent port
 * a route's requests go to, answers getHost from the route's slot (the balancer's own rule, cursors
 * advanced atomically so that every local process together gets one balancer's sequence) and
 * appends report results to the segment's ring. Whenever anything is in doubt it answers undefined /
 * false and the caller uses UDP at once; in `require` mode a segment that cannot be used throws
 * FastPathError instead.
 */
export class FastPath {
  readonly mode: FastPathMode;
  readonly stats: FastPathStats = { getHost: 0, reports: 0, fallbacks: {} };
  private readonly ports: readonly number[];
  private readonly host: string;
  private readonly addon: NativeAddon | undefined;
  private readonly views: Array<SegmentView | undefined>;
  private readonly retryAt: number[];
  private readonly why: Array<{ reason: FallbackReason; message: string } | undefined>;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly ipWire = new Map<string, number>();
  private disabled: { reason: FallbackReason; message: string } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: { host: string; ports: readonly number[]; mode: FastPathMode }) {
    this.mode = options.mode;
    this.ports = options.ports;
    this.host = options.host;
    this.views = options.ports.map(() => undefined);
    this.retryAt = options.ports.map(() => 0);
    this.why = options.ports.map(() => undefined);
    this.addon = loadNative();
    if (!this.addon)
      this.disabled = { reason: 'addon', message: `native addon unavailable: ${nativeStatus().reason}` };
    if (this.mode === 'require') {
      if (this.disabled)
        throw new FastPathError(this.disabled.reason, `fast path required: ${this.disabled.message}`);
      for (let i = 0; i < this.ports.length; i++) this.attachOrThrow(i);
    }
    // Notices a closed segment or a dead agent even while this client makes few calls.
    this.timer = setInterval(() => this.checkSegments(), RETRY_MS);
    this.timer.unref();
  }

  /** The fast path's answer for one getHost, or undefined: use UDP. */
  tryGetHost(modid: number, cmdid: number): FastAnswer | undefined {
    const v = this.viewFor(modid, cmdid);
    if (v === undefined) return undefined;
    const a = v.pick(modid, cmdid);
    if (a !== undefined) {
      this.stats.getHost += 1;
      return a;
    }
    return this.missed(v, modid, cmdid);
  }

  /** Writes one call result into the ring; false: send it over UDP. `ip` dotted. */
  report(
    modid: number,
    cmdid: number,
    ip: string,
    port: number,
    retcode: number,
    timecostMs: number | undefined,
  ): boolean {
    const v = this.viewFor(modid, cmdid);
    if (v === undefined) return false;
    let wire = this.ipWire.get(ip);
    if (wire === undefined) {
      wire = ipToWire(ip); // throws InvalidArgumentError like the UDP path
      if (this.ipWire.size >= IP_CACHE_MAX) this.ipWire.clear();
      this.ipWire.set(ip, wire);
    }
    const tc =
      timecostMs === undefined || !(timecostMs > 0) ? 0 : Math.min(0x7fffffff, Math.round(timecostMs));
    if (v.push(modid, cmdid, wire, port | 0, retcode | 0, tc)) {
      this.stats.reports += 1;
      return true;
    }
    this.missed(v, modid, cmdid);
    return false;
  }

  /** Whether a segment is mapped for each port, and why not. */
  status(): {
    mode: FastPathMode;
    ports: Array<{ port: number; mapped: boolean; reason?: FallbackReason; message?: string }>;
  } {
    return {
      mode: this.mode,
      ports: this.ports.map((port, i) => {
        const w = this.disabled ?? this.why[i];
        return this.views[i] ? { port, mapped: true } : { port, mapped: false, ...(w ?? {}) };
      }),
    };
  }

  /** Unmaps every segment. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (let i = 0; i < this.views.length; i++) this.detach(i, 'closed', 'client closed');
  }

  private count(reason: FallbackReason): void {
    this.stats.fallbacks[reason] = (this.stats.fallbacks[reason] ?? 0) + 1;
  }

  /** A call could not be served from `v`: count why; let go of the segment if it is closed. */
  private missed(v: SegmentView, modid: number, cmdid: number): undefined {
    const reason = v.miss;
    this.count(reason);
    if (reason === 'closed' || reason === 'stale') {
      const i = agentPortIndex(modid, cmdid, this.ports.length);
      this.detach(
        i,
        reason,
        reason === 'closed' ? 'the agent closed its segment' : 'the agent stopped beating',
      );
      // The agent may have been replaced already: map the name again on the next call.
      this.retryAt[i] = 0;
    }
    return undefined;
  }

  private viewFor(modid: number, cmdid: number): SegmentView | undefined {
    if (this.closed) return undefined;
    const i = agentPortIndex(modid, cmdid, this.ports.length);
    const v = this.views[i];
    if (v !== undefined) {
      if (!v.due() || v.healthy()) return v;
      this.detach(i, v.miss, 'segment closed or agent gone');
      this.retryAt[i] = 0;
    }
    if (this.disabled) {
      this.count(this.disabled.reason);
      return undefined;
    }
    if (this.mode === 'require') return this.attachOrThrow(i);
    if (Date.now() < (this.retryAt[i] as number)) {
      this.count(this.why[i]?.reason ?? 'no-segment');
      return undefined;
    }
    const got = this.attach(i);
    if (got === undefined) this.count((this.disabled ?? this.why[i])?.reason ?? 'no-segment');
    return got;
  }

  private attachOrThrow(i: number): SegmentView {
    const v = this.views[i] ?? this.attach(i);
    if (v) return v;
    const w = this.disabled ?? this.why[i] ?? { reason: 'no-segment' as const, message: 'no segment' };
    throw new FastPathError(w.reason, `fast path required for agent port ${this.ports[i]}: ${w.message}`);
  }

  /** Maps and checks the segment of port i; undefined (reason in `why[i]`) when it cannot be used. */
  private attach(i: number): SegmentView | undefined {
    const addon = this.addon;
    if (!addon) return undefined;
    const port = this.ports[i] as number;
    const name = fastPathSegmentName(this.uid, port);
    let mapping: ArrayBuffer;
    try {
      mapping = addon.map(name, 0, false);
    } catch (err) {
      return this.failed(
        i,
        'no-segment',
        `${name}: ${(err as { code?: string }).code ?? (err as Error).message}`,
      );
    }
    try {
      const v = new SegmentView(mapping, port);
      if (!isLoopback(this.host) && !(isValidIpv4(this.host) && ipToWire(this.host) === v.bindIp)) {
        addon.unmap(mapping);
        // Permanent: this client talks to an agent elsewhere.
        this.disabled = {
          reason: 'remote-agent',
          message: `agent ${this.host} is not this host's loopback or bind address`,
        };
        return undefined;
      }
      const second = addon.map(name, 0, false);
      const ok = atomicsWork(v.words, new Int32Array(second));
      addon.unmap(second);
      if (!ok) {
        addon.unmap(mapping);
        this.disabled = {
          reason: 'atomics',
          message: 'Atomics on the mapped segment failed the start-up check',
        };
        return undefined;
      }
      this.views[i] = v;
      this.why[i] = undefined;
      return v;
    } catch (err) {
      addon.unmap(mapping);
      if (err instanceof SegmentError) return this.failed(i, err.reason, `${name}: ${err.message}`);
      return this.failed(i, 'no-segment', `${name}: ${(err as Error).message}`);
    }
  }

  private failed(i: number, reason: FallbackReason, message: string): undefined {
    this.why[i] = { reason, message };
    this.retryAt[i] = Date.now() + RETRY_MS;
    return undefined;
  }

  private detach(i: number, reason: FallbackReason, message: string): void {
    const v = this.views[i];
    if (v === undefined) return;
    this.views[i] = undefined;
    this.why[i] = { reason, message };
    this.addon?.unmap(v.mapping);
  }

  private checkSegments(): void {
    for (let i = 0; i < this.views.length; i++) {
      const v = this.views[i];
      if (v !== undefined && !v.healthy()) {
        this.detach(
          i,
          v.miss,
          v.miss === 'closed' ? 'the agent closed its segment' : 'the agent stopped beating',
        );
        this.retryAt[i] = 0;
      }
    }
  }
}
