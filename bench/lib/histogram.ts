/**
 * A log-linear latency histogram (HdrHistogram-style): values below 128 are exact, above that each
 * power-of-two range is split into 64 buckets, so any recorded value is known within 1/64 (< 1.6%).
 * Fixed memory (about 2,500 counters), O(1) record, and mergeable across processes: `counts` is a
 * plain array that survives IPC.
 *
 * Units are whatever the caller records; the echo bench records nanoseconds.
 */
const SUB_BITS = 6;
const SUB = 1 << SUB_BITS; // 64 linear buckets per power of two
const LINEAR = SUB * 2; // values [0, 128) are counted exactly
const MAX_EXP = 40; // up to 2^41 (about 36 minutes in ns): larger values are clamped
const SIZE = LINEAR + (MAX_EXP - SUB_BITS) * SUB;

export class Histogram {
  readonly counts: number[];
  total = 0;
  max = 0;
  min = Number.POSITIVE_INFINITY;

  constructor(counts?: readonly number[]) {
    this.counts = counts ? [...counts] : new Array<number>(SIZE).fill(0);
    if (counts) {
      for (let i = 0; i < counts.length; i++) {
        const c = counts[i]!;
        if (c === 0) continue;
        this.total += c;
        this.min = Math.min(this.min, lowerBound(i));
        this.max = Math.max(this.max, upperBound(i));
      }
    }
  }

  record(value: number): void {
    const v = value < 0 ? 0 : Math.round(value);
    this.counts[indexOf(v)]! += 1;
    this.total += 1;
    if (v > this.max) this.max = v;
    if (v < this.min) this.min = v;
  }

  /** Adds another histogram's counts (exact max/min are kept when both sides have them). */
  merge(other: Histogram): void {
    for (let i = 0; i < SIZE; i++) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
    this.max = Math.max(this.max, other.max);
    this.min = Math.min(this.min, other.min);
  }

  /** The value at percentile p (0-100): the middle of the bucket holding it, capped by max. */
  percentile(p: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < SIZE; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, (lowerBound(i) + upperBound(i)) / 2);
    }
    return this.max;
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
    this.max = 0;
    this.min = Number.POSITIVE_INFINITY;
  }
}

function indexOf(v: number): number {
  if (v < LINEAR) return v;
  let exp = Math.floor(Math.log2(v));
  if (exp > MAX_EXP) return SIZE - 1;
  let sub = Math.floor(v / 2 ** (exp - SUB_BITS));
  if (sub < SUB) {
    // log2 rounded up just below a power of two.
    exp -= 1;
    sub = Math.floor(v / 2 ** (exp - SUB_BITS));
  }
  return LINEAR + (exp - SUB_BITS - 1) * SUB + (sub - SUB);
}

function lowerBound(i: number): number {
  if (i < LINEAR) return i;
  const exp = Math.floor((i - LINEAR) / SUB) + SUB_BITS + 1;
  const sub = ((i - LINEAR) % SUB) + SUB;
  return sub * 2 ** (exp - SUB_BITS);
}

function upperBound(i: number): number {
  if (i < LINEAR) return i;
  const exp = Math.floor((i - LINEAR) / SUB) + SUB_BITS + 1;
  return lowerBound(i) + 2 ** (exp - SUB_BITS) - 1;
}

/** What each measuring client process reports: its count, time and latency histogram (ns). */
export interface ClientRun {
  count: number;
  elapsedMs: number;
  counts: number[];
  max?: number;
}

/**
 * Sums the clients' rates and merges their histograms: total req/s, and p50/p99/max in µs over
 * every request measured by any client.
 */
export function combineRuns(runs: readonly ClientRun[]): {
  rate: number;
  p50: number;
  p99: number;
  max: number;
} {
  const hist = new Histogram();
  let rate = 0;
  let max = 0;
  for (const r of runs) {
    hist.merge(new Histogram(r.counts));
    rate += (r.count / r.elapsedMs) * 1000;
    max = Math.max(max, r.max ?? 0);
  }
  return { rate, p50: hist.percentile(50) / 1000, p99: hist.percentile(99) / 1000, max: max / 1000 };
}
