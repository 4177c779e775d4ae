/**
 * Layout of the agent's fast-path segment (issue 18): a POSIX shared-memory segment per agent port in
 * which the agent publishes each route's hosts and balancer decisions, and into which local clients
 * record call results. Wire-free and I/O-free: word offsets, the pick rule and the ring's commit
 * encoding, shared by the agent (src/agent/fast-path-segment.ts) and the SDK (src/api/fast-path.ts).
 *
 * Everything is an Int32 word of an Int32Array over the mapping. Words written by several processes
 * (route request counters, the ring tail, ring commit words) are only touched with Atomics
 * read-modify-write operations; words the agent alone writes are published with a seqlock per route
 * slot (odd while the agent rewrites it), so a reader that sees the same even sequence before and
 * after its reads saw a consistent slot. test/fast-path-processes.test.ts pins these properties across
 * real processes.
 *
 * Header (HEADER_WORDS words; hot words on cache lines of their own):
 *   magic, version, agent pid, agent port, probe_num, route slots, hosts per route, ring entries,
 *   offsets, incarnation (random, tells a re-created segment from the one a client mapped), bind ip,
 *   index slots.
 *   heartbeat: wall-clock ms & 0x7fffffff, stored by the agent at every drain (a dead agent's segment
 *   goes stale); ring tail (producers); ring head + segment state (agent).
 *
 * Route index (indexSlots words, a power of two, at least twice the route slots): open addressing on
 * routeHash(modid, cmdid) with linear probing; a word is 0 (empty: the route is not in the table),
 * -1 (tombstone: a route was removed, probe on) or slot + 1. Route slots are handed out densely
 * (a freed slot first), so the memory a table touches grows with the routes it holds, not with its
 * capacity (issue 17's footprint), and a slot never moves while its route stays.
 *
 * Route slot (SLOT_HEADER_WORDS + 2 x hostsPerRoute words):
 *   seq (seqlock), req (calls since the agent last rewrote the slot: Atomics.add by every client),
 *   state (empty / live), modid, cmdid, phase (calls before the rewrite, mod probe_num),
 *   idle count k, overload count m, then k idle hosts (queue order, next pick first) and m overloaded
 *   hosts, each (wire ip, port).
 *
 * Ring (RING_ENTRY_WORDS words per entry): commit word, modid, cmdid, wire ip, port, retcode,
 * timecost ms, check. Producers reserve a position t (30-bit wrapping counter) by compare-exchange
 * on the tail, write the fields and check, then compare-exchange the commit word from the value they
 * saw to committed(t). The agent consumes positions in order; a position not committed for a while
 * (its writer died or stalls) is marked skipped(t) by compare-exchange, so a late writer learns that
 * its entry was not taken (and reports over UDP instead); the check word catches an entry whose
 * fields a very late writer overwrote after the position came round again.
 */

export const FAST_PATH_MAGIC = 0x4c465031; // 'LFP1'
export const FAST_PATH_VERSION = 2;

// Header words.
export const H_MAGIC = 0;
export const H_VERSION = 1;
export const H_PID = 2;
export const H_PORT = 3;
export const H_PROBE_NUM = 4;
export const H_ROUTE_SLOTS = 5;
export const H_HOSTS_PER_ROUTE = 6;
export const H_RING_ENTRIES = 7;
export const H_ROUTES_OFFSET = 8;
export const H_RING_OFFSET = 9;
export const H_TOTAL_WORDS = 10;
export const H_INCARNATION = 11;
export const H_BIND_IP = 12;
export const H_INDEX_SLOTS = 13;
export const H_INDEX_OFFSET = 14;
/** Own cache line: stored by the agent at every drain. */
export const H_HEARTBEAT = 16;
/** Own cache line: the producers' reservation counter. */
export const H_RING_TAIL = 32;
/** Own cache line, written by the agent only: next position it consumes, and the segment state. */
export const H_RING_HEAD = 48;
export const H_STATE = 49;
/** Own cache line: scratch word of the start-up Atomics check. */
export const H_SELFTEST = 64;
export const HEADER_WORDS = 128;

export const SegmentState = {
  /** Being initialised by the agent: not usable yet. */
  Init: 0,
  Live: 1,
  /** The agent closed it or a newer agent replaced it: map the name again. */
  Closed: 2,
} as const;

// Route slot words.
export const S_SEQ = 0;
export const S_REQ = 1;
export const S_STATE = 2;
export const S_MODID = 3;
export const S_CMDID = 4;
export const S_PHASE = 5;
export const S_IDLE = 6;
export const S_OVERLOAD = 7;
export const SLOT_HEADER_WORDS = 16;

export const SlotState = { Empty: 0, Live: 1 } as const;

/** Route index words other than slot + 1. */
export const IndexWord = { Empty: 0, Tombstone: -1 } as const;

// Ring entry words.
export const E_COMMIT = 0;
export const E_MODID = 1;
export const E_CMDID = 2;
export const E_IP = 3;
export const E_PORT = 4;
export const E_RETCODE = 5;
export const E_TIMECOST = 6;
export const E_CHECK = 7;
export const RING_ENTRY_WORDS = 8;

/** Ring positions wrap at 2^30 so that a commit word can carry a position and two state bits. */
export const POS_MASK = 0x3fffffff;
const COMMITTED = 0x40000000;
const SKIPPED = 0x80000000;

export function committedWord(pos: number): number {
  return pos | COMMITTED | 0;
}

export function skippedWord(pos: number): number {
  return pos | SKIPPED | 0;
}

/** Request counters are rebased by the agent well before they could wrap. */
export const REQ_REBASE_AT = 1 << 29;

/** A segment's heartbeat older than this means its agent is gone (or stuck): use UDP. */
export const HEARTBEAT_STALE_MS = 2_000;

export function heartbeatNow(nowMs: number): number {
  return (nowMs % 0x80000000) | 0;
}

/** Milliseconds since `beat` (both heartbeatNow values), correct across the 2^31 wrap. */
export function heartbeatAge(beat: number, nowMs: number): number {
  return (heartbeatNow(nowMs) - beat) & 0x7fffffff;
}

export interface TableGeometry {
  /** Route slots: the routes the table can hold. */
  readonly routeSlots: number;
  readonly hostsPerRoute: number;
  /** Ring entries: a power of two. */
  readonly ringEntries: number;
}

export function slotWords(hostsPerRoute: number): number {
  // Whole 64-byte lines per slot, so one slot's counter never shares a line with its neighbour's.
  return Math.ceil((SLOT_HEADER_WORDS + 2 * hostsPerRoute) / 16) * 16;
}

/** Index words for `routeSlots` routes: at most half of them live, so a miss ends soon. */
export function indexSlotsFor(routeSlots: number): number {
  return nextPowerOfTwo(2 * routeSlots);
}

export interface TableLayout {
  readonly indexOffset: number;
  readonly indexSlots: number;
  readonly routesOffset: number;
  readonly ringOffset: number;
  readonly totalWords: number;
}

export function layout(g: TableGeometry): TableLayout {
  const indexOffset = HEADER_WORDS;
  const indexSlots = indexSlotsFor(g.routeSlots);
  const routesOffset = indexOffset + Math.ceil(indexSlots / 16) * 16;
  const ringOffset = routesOffset + g.routeSlots * slotWords(g.hostsPerRoute);
  const totalWords = ringOffset + g.ringEntries * RING_ENTRY_WORDS;
  return { indexOffset, indexSlots, routesOffset, ringOffset, totalWords };
}

/** Where a table's route slots are: what findSlot needs. */
export interface SlotPlace {
  readonly indexOffset: number;
  /** indexSlots - 1. */
  readonly indexMask: number;
  readonly routesOffset: number;
  /** slotWords(hostsPerRoute). */
  readonly slotLen: number;
}

/**
 * Word offset of the slot the index gives route (modid, cmdid), or -1 when the index does not hold
 * it. A reader then checks the slot's state, modid and cmdid under its seqlock: a slot can be handed
 * to another route between the two reads.
 */
export function findSlot(w: Int32Array, t: SlotPlace, modid: number, cmdid: number): number {
  const mask = t.indexMask;
  let i = routeHash(modid, cmdid) & mask;
  for (let n = 0; n <= mask; n++, i = (i + 1) & mask) {
    const e = w[t.indexOffset + i] as number;
    if (e === IndexWord.Empty) return -1;
    if (e > 0) {
      const at = t.routesOffset + (e - 1) * t.slotLen;
      if (w[at + S_MODID] === modid && w[at + S_CMDID] === cmdid) return at;
    }
  }
  return -1;
}

export function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** The segment of the agent serving `port` for user `uid`. */
export function fastPathSegmentName(uid: number, port: number): string {
  return `${fastPathSegmentPrefix(uid)}${port}`;
}

/** What the names of user `uid`'s segments start with. */
export function fastPathSegmentPrefix(uid: number): string {
  return `/lars-fastpath-${uid}-`;
}

/** Home index word of a route (then linear probing). */
export function routeHash(modid: number, cmdid: number): number {
  let h = Math.imul(modid ^ 0x5bd1e995, 0x9e3779b1) ^ cmdid;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Check word of a ring entry: catches fields overwritten by a writer of another round. */
export function entryCheck(
  pos: number,
  modid: number,
  cmdid: number,
  ip: number,
  port: number,
  retcode: number,
  timecost: number,
): number {
  let h = Math.imul(pos ^ 0x811c9dc5, 0x01000193);
  h = Math.imul(h ^ modid, 0x01000193);
  h = Math.imul(h ^ cmdid, 0x01000193);
  h = Math.imul(h ^ ip, 0x01000193);
  h = Math.imul(h ^ port, 0x01000193);
  h = Math.imul(h ^ retcode, 0x01000193);
  h = Math.imul(h ^ timecost, 0x01000193);
  return h ^ (h >>> 15);
}

/** Probe slots among calls 1..n since the slot's rewrite (the calls with (phase + n) % P === 0). */
export function probeSlotsUpTo(phase: number, n: number, probeNum: number): number {
  return Math.floor((phase + n) / probeNum) - Math.floor(phase / probeNum);
}

/**
 * The host index (into the slot's host list: idle 0..k-1, then overloaded k..k+m-1) the n-th call
 * (1-based) since the slot's rewrite gets, or -1 for OVERLOAD. The LoadBalancer's rule (DESIGN §5):
 * a call whose running count is a multiple of probe_num takes the next overloaded host when there is
 * one; every other call takes the next idle host in round robin; no idle host: OVERLOAD. Because
 * every input is in the slot and n comes from one atomic counter, all processes together pick the
 * sequence one balancer would.
 */
export function pickIndex(n: number, phase: number, k: number, m: number, probeNum: number): number {
  if (m > 0) {
    const probes = probeSlotsUpTo(phase, n, probeNum);
    if ((phase + n) % probeNum === 0) return k + ((probes - 1) % m);
    return k > 0 ? (n - 1 - probes) % k : -1;
  }
  return k > 0 ? (n - 1) % k : -1;
}

/**
 * How far the queues turned over `calls` calls since the rewrite: the agent re-bases the slot on
 * it, so the next rewrite continues the rotation where the clients left it.
 */
export function consumedBy(
  calls: number,
  phase: number,
  k: number,
  m: number,
  probeNum: number,
): { idleTurns: number; probes: number } {
  const probes = m > 0 ? probeSlotsUpTo(phase, calls, probeNum) : 0;
  return { idleTurns: k > 0 ? calls - probes : 0, probes };
}

/**
 * Start-up check of the Atomics operations the fast path relies on, through two mappings of one
 * segment (different virtual addresses, the same pages, as in two processes): add and
 * compare-exchange return the previous value and their effect is visible through the other mapping.
 * Other processes may run the same check at once, so it only relies on the word increasing.
 */
export function atomicsWork(a: Int32Array, b: Int32Array, word = H_SELFTEST): boolean {
  try {
    for (let i = 0; i < 4; i++) {
      const before = Atomics.add(a, word, 1);
      const seen = Atomics.load(b, word);
      if (((seen - before) | 0) < 1) return false;
      let ok = false;
      for (let tries = 0; tries < 1000 && !ok; tries++) {
        const v = Atomics.load(b, word);
        ok = Atomics.compareExchange(b, word, v, (v + 1) | 0) === v;
      }
      if (!ok) return false;
      if (((Atomics.load(a, word) - before) | 0) < 2) return false;
    }
    return true;
  } catch {
    return false;
  }
}
