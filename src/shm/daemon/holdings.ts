import { ErrorCode, ShmError } from '../../errors.js';
import type { ShmHandle } from '../handle.js';
import { classOfBlock, MAX_ALIGN, type ClassLayout, type PoolLayout } from '../pool-layout.js';
import { formatSize } from '../size-classes.js';
import { MAX_ALLOC_COUNT } from '../wire-codec.js';
import type { BlockTable } from './block-table.js';
import type { ShmPeer } from './peer.js';

/**
 * What one connection holds (block -> references, the seed's `lmemRef`) and the rules about it.
 * Used only by ShmCore, which owns every BlockTable change.
 */

function invalid(message: string): never {
  throw new ShmError(ErrorCode.SHM_INVALID_ARGUMENT, message);
}

/** The smallest class that fits size and alignment (no spill into larger classes: deterministic). */
export function pickClass(layout: PoolLayout, size: number, align: number, count: number): ClassLayout {
  if (!Number.isInteger(count) || count < 1 || count > MAX_ALLOC_COUNT)
    invalid(`count ${count} must be 1..${MAX_ALLOC_COUNT}`);
  if (align !== 0 && (align > MAX_ALIGN || (align & (align - 1)) !== 0)) {
    invalid(`align ${align} must be a power of two up to ${MAX_ALIGN}`);
  }
  const largest = layout.classes[layout.classes.length - 1]!;
  if (size < 1 || size > largest.size)
    invalid(`size ${size} must be 1..${largest.size} (largest class ${formatSize(largest.size)})`);
  const cls = layout.classes.find((c) => c.size >= size && c.align >= align);
  return cls ?? invalid(`no class holds ${size} bytes aligned to ${align}`);
}

/**
 * Validates handles against what `peer` holds (duplicates need as many references) and returns
 * [block, class] per handle. Nothing is changed, so a failure leaves every holding as it was.
 */
export function checkHeld(
  peer: ShmPeer,
  handles: readonly ShmHandle[],
  layout: PoolLayout,
  blocks: BlockTable,
  generation: number,
): [number, ClassLayout][] {
  const out: [number, ClassLayout][] = [];
  const need = new Map<number, number>();
  for (const h of handles) {
    if (h.pool !== generation) {
      throw new ShmError(
        ErrorCode.SHM_STALE,
        `handle of pool generation ${h.pool}; the daemon runs generation ${generation} (it restarted)`,
      );
    }
    const cls =
      classOfBlock(layout, h.block) ?? invalid(`no block ${h.block} in this pool (${layout.blocks} blocks)`);
    if (blocks.gens[h.block] !== h.gen) {
      throw new ShmError(
        ErrorCode.SHM_STALE,
        `block ${h.block} was released and allocated again since this handle was issued`,
      );
    }
    const n = (need.get(h.block) ?? 0) + 1;
    need.set(h.block, n);
    if (n > (peer.held.get(h.block) ?? 0)) {
      const free = blocks.refs[h.block] === 0;
      throw new ShmError(
        ErrorCode.SHM_NOT_HELD,
        `block ${h.block} is not held by this connection${free ? ' (it is free: double free?)' : n > 1 ? ` ${n} times` : ''}`,
      );
    }
    out.push([h.block, cls]);
  }
  return out;
}

/** One more reference held by `peer` (the block's refcount is the caller's business). */
export function hold(peer: ShmPeer, block: number, cls: ClassLayout): void {
  const n = peer.held.get(block) ?? 0;
  if (n === 0) peer.heldBytes += cls.size;
  peer.held.set(block, n + 1);
}

export function unhold(peer: ShmPeer, block: number, cls: ClassLayout): void {
  const n = peer.held.get(block)!;
  if (n === 1) {
    peer.held.delete(block);
    peer.heldBytes -= cls.size;
  } else peer.held.set(block, n - 1);
}

/** Drops every reference `peer` holds; returns the bytes of the blocks that became free. */
export function dropAll(peer: ShmPeer, layout: PoolLayout, blocks: BlockTable): number {
  let freed = 0;
  for (const [block, n] of peer.held) {
    const cls = classOfBlock(layout, block)!;
    for (let i = 0; i < n; i++) if (blocks.dropRef(block, cls.index)) freed += cls.size;
  }
  peer.held.clear();
  peer.heldBytes = 0;
  return freed;
}
