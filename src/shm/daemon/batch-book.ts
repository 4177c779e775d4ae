import { ErrorCode, ShmError } from '../../errors.js';
import type { ShmHandle } from '../handle.js';
import type { BatchEndReason } from '../wire-ids.js';
import type { ShmPeer } from './peer.js';

/** References in flight from one process to another (seed R9 pre-send), released at its ttl. */
export interface Batch {
  readonly id: number;
  /** The sending connection (undefined once it closed: nobody to notify then). */
  from: ShmPeer | undefined;
  readonly fromPid: number;
  readonly to: number;
  /** One entry per reference (a block may appear more than once). */
  readonly blocks: number[];
  readonly handles: ShmHandle[];
  readonly bytes: number;
  /** Bytes counted against the sender's quota (a fan-out's extra references move no memory: 0). */
  readonly charged: number;
  /** Set by a relay's TRANSFER so that it can CANCEL what it made for one receiver (0 = none). */
  readonly tag: number;
  timer: NodeJS.Timeout | undefined;
}

/** Ended batches remembered so a late recv gets EXPIRED instead of UNKNOWN_BATCH. */
export const ENDED_BATCHES_REMEMBERED = 4096;

/** Batches by id and by addressee; ids count up from 1 for the daemon's lifetime (u32, skipping 0). */
export class BatchBook {
  private readonly byId = new Map<number, Batch>();
  private readonly byAddressee = new Map<number, Set<Batch>>();
  private readonly ended = new Map<number, BatchEndReason>();
  private lastId = 0;

  get size(): number {
    return this.byId.size;
  }

  nextId(): number {
    do this.lastId = (this.lastId + 1) >>> 0;
    while (this.lastId === 0 || this.byId.has(this.lastId));
    return this.lastId;
  }

  add(b: Batch): void {
    this.byId.set(b.id, b);
    let set = this.byAddressee.get(b.to);
    if (!set) this.byAddressee.set(b.to, (set = new Set()));
    set.add(b);
  }

  get(id: number): Batch | undefined {
    return this.byId.get(id);
  }

  /** Why a batch that is no longer here ended, if it ended recently. */
  endReason(id: number): BatchEndReason | undefined {
    return this.ended.get(id);
  }

  /** The error for a recv of a batch that is not (or no longer) here. */
  missing(id: number): ShmError {
    const ended = this.ended.get(id);
    if (!ended)
      return new ShmError(ErrorCode.SHM_UNKNOWN_BATCH, `no batch ${id} (never sent, or already received)`);
    const why =
      ended === 'ttl'
        ? 'its ttl ran out'
        : ended === 'addressee-gone'
          ? 'its addressee disconnected'
          : 'its addressee was reclaimed';
    return new ShmError(ErrorCode.SHM_EXPIRED, `batch ${id} was released before it was received: ${why}`);
  }

  addressedTo(pid: number): Batch[] {
    return [...(this.byAddressee.get(pid) ?? [])];
  }

  all(): IterableIterator<Batch> {
    return this.byId.values();
  }

  /** Removes a batch; `reason` when it ended without a recv. */
  remove(b: Batch, reason?: BatchEndReason): void {
    if (b.timer) clearTimeout(b.timer);
    b.timer = undefined;
    this.byId.delete(b.id);
    const set = this.byAddressee.get(b.to);
    set?.delete(b);
    if (set?.size === 0) this.byAddressee.delete(b.to);
    if (reason) {
      this.ended.set(b.id, reason);
      if (this.ended.size > ENDED_BATCHES_REMEMBERED) this.ended.delete(this.ended.keys().next().value!);
    }
  }

  clear(): void {
    for (const b of this.byId.values()) if (b.timer) clearTimeout(b.timer);
    this.byId.clear();
    this.byAddressee.clear();
  }
}
