import { ClosedError, ErrorCode, ShmError } from '../errors.js';
import type { ShmHandle } from './handle.js';
import type { PoolSegment } from './pool-segment.js';
import type { ScratchPool } from './scratch-pool.js';

/** What a buffer needs from the client that owns it. */
export interface BufferOwner {
  /** File mode: process memory for bytes() (a whole block's worth), and its return. */
  readonly scratch: ScratchPool;
  /** Sends FREE for this buffer's reference. */
  freeBuffer(buf: ShmBuffer): Promise<void>;
  /** Forgets the buffer (no longer held). */
  forget(buf: ShmBuffer): void;
}

type BufferState = 'held' | 'released' | 'sent' | 'stale' | 'closed';

/**
 * One reference to one block of the pool, held by this client (`alloc`, `recv`, `addref` each give
 * a new one). `bytes()` is a zero-copy `Buffer` view of the block in addon mode; in file mode it is
 * a copy read from /dev/shm on first use (into reused process memory), written back by `send()` (or
 * `flush()`).
 *
 * After `release()`, after it was sent, after the daemon restarted (stale) or the client closed,
 * `bytes()` throws. A view obtained before must not be used after that: in addon mode it still
 * shows the block, which another process may own by then; in file mode its memory is reused for
 * another buffer. Addon views become empty when the client unmaps the pool (close, reconnect).
 */
export class ShmBuffer {
  private state: BufferState = 'held';
  private cache: Buffer | undefined;
  private scratchBuf: Buffer | undefined;
  private releasing: Promise<void> | undefined;

  /** @internal Created by ShmClient. */
  constructor(
    private readonly owner: BufferOwner,
    readonly handle: ShmHandle,
    private readonly segment: PoolSegment,
    private readonly offset: number,
    /** Size of the block's class (file mode: the scratch buffer size). */
    private readonly capacity: number,
    /** File mode: a fresh allocation need not be read (its content is unspecified anyway). */
    private readonly fresh: boolean,
  ) {}

  /** Length asked for at allocation (the block may be larger). */
  get size(): number {
    return this.handle.len;
  }

  /** True while this client holds the reference. */
  get held(): boolean {
    return this.state === 'held';
  }

  /** The block's bytes (see the class comment for the mode differences). */
  bytes(): Buffer {
    this.check();
    if (this.segment.mode === 'addon') return this.segment.read(this.offset, this.handle.len);
    this.cache ??= this.fresh
      ? Buffer.allocUnsafe(this.handle.len)
      : this.segment.read(this.offset, this.handle.len);
    return this.cache;
  }

  /** File mode: writes what bytes() returned back to the pool (send() does this itself). No-op in addon mode. */
  flush(): void {
    this.check();
    if (this.cache) this.segment.write(this.offset, this.cache);
  }

  /**
   * Gives the reference back (the daemon frees the block when it was the last). Idempotent: later
   * calls return the first call's promise. A stale or closed buffer has nothing left to free.
   */
  release(): Promise<void> {
    if (this.releasing) return this.releasing;
    if (this.state !== 'held') {
      this.releasing = Promise.resolve();
      return this.releasing;
    }
    this.state = 'released';
    this.drop();
    this.owner.forget(this);
    this.releasing = this.owner.freeBuffer(this);
    return this.releasing;
  }

  /** @internal The reference moved into a batch (send). */
  markSent(): void {
    if (this.state !== 'held') return;
    this.state = 'sent';
    this.drop();
    this.owner.forget(this);
  }

  /** @internal The connection that held it is gone (daemon restart): the daemon released it. */
  markStale(): void {
    if (this.state === 'held') this.state = 'stale';
    this.drop();
  }

  /** @internal The client closed. */
  markClosed(): void {
    if (this.state === 'held') this.state = 'closed';
    this.drop();
  }

  private drop(): void {
    if (this.scratchBuf) this.owner.scratch.give(this.scratchBuf);
    this.scratchBuf = undefined;
    this.cache = undefined;
  }

  /** @internal Throws unless held. */
  check(): void {
    switch (this.state) {
      case 'held':
        return;
      case 'released':
        throw new ShmError(ErrorCode.SHM_NOT_HELD, `buffer ${this.handle.block} was released`);
      case 'sent':
        throw new ShmError(
          ErrorCode.SHM_NOT_HELD,
          `buffer ${this.handle.block} was sent: its reference moved to the batch`,
        );
      case 'stale':
        throw new ShmError(
          ErrorCode.SHM_STALE,
          `buffer ${this.handle.block} belongs to an earlier connection to lars shm (it restarted or the connection was lost)`,
        );
      case 'closed':
        throw new ClosedError('the shm client is closed');
    }
  }
}
