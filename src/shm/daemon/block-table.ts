import type { PoolLayout } from '../pool-layout.js';

/**
 * Reference counts and use generations of every block, and a free list per size class. The daemon
 * is the only writer (DESIGN §10 authority): nothing of this lives in shared memory, so a crashed
 * client cannot corrupt it. Free lists are LIFO stacks (a block just freed is warm in the cache).
 */
export class BlockTable {
  /** Total references (holdings of every connection + entries in batches). 0 = free. */
  readonly refs: Uint32Array;
  /** Use generation: bumped by every allocation; a handle with another value is stale. */
  readonly gens: Uint32Array;
  /** Length asked for by the allocation (≤ class size). */
  readonly lens: Uint32Array;
  private readonly stacks: Int32Array[];
  private readonly tops: number[];

  constructor(readonly layout: PoolLayout) {
    this.refs = new Uint32Array(layout.blocks);
    this.gens = new Uint32Array(layout.blocks);
    this.lens = new Uint32Array(layout.blocks);
    this.stacks = layout.classes.map((c) => {
      const s = new Int32Array(c.count);
      // Lowest block on top: allocation starts at the beginning of each region.
      for (let i = 0; i < c.count; i++) s[i] = c.firstBlock + c.count - 1 - i;
      return s;
    });
    this.tops = layout.classes.map((c) => c.count);
  }

  freeCount(cls: number): number {
    return this.tops[cls] ?? 0;
  }

  /** Takes a free block of class `cls` with one reference; -1 when the class is exhausted. */
  take(cls: number, len: number): number {
    const top = this.tops[cls]!;
    if (top === 0) return -1;
    const block = this.stacks[cls]![top - 1]!;
    this.tops[cls] = top - 1;
    this.gens[block] = (this.gens[block]! + 1) >>> 0 || 1;
    this.refs[block] = 1;
    this.lens[block] = len;
    return block;
  }

  addRef(block: number): void {
    this.refs[block] = this.refs[block]! + 1;
  }

  /** Drops one reference; returns true when that freed the block. */
  dropRef(block: number, cls: number): boolean {
    const r = this.refs[block]!;
    if (r === 0) return false;
    this.refs[block] = r - 1;
    if (r > 1) return false;
    this.lens[block] = 0;
    this.stacks[cls]![this.tops[cls]!] = block;
    this.tops[cls] = this.tops[cls]! + 1;
    return true;
  }
}
