import { ErrorCode, ShmError } from '../../errors.js';
import type { ShmHandle } from '../handle.js';
import { classOfBlock, MAX_ALIGN, type ClassLayout, type PoolLayout } from '../pool-layout.js';
import type { ClassStat, HoldersReport, ReclaimResult, ShmMode, ShmStat } from '../reports.js';
import { formatSize } from '../size-classes.js';
import { MAX_ALLOC_COUNT } from '../wire-codec.js';
import type { BatchEndReason, ReclaimReasonName } from '../wire-ids.js';
import { BatchBook, type Batch } from './batch-book.js';
import { BlockTable } from './block-table.js';
import { holdersReport, topHoldersText } from './holders.js';
import { ShmPeer, type PeerSink, type ProcRecord } from './peer.js';

export interface ShmCoreOptions {
  layout: PoolLayout;
  generation: number;
  poolName: string;
  mode: ShmMode;
  /** Most bytes one process may hold plus have in unreceived batches. */
  quotaBytes: number;
  maxBatchesPerProc: number;
  defaultTtlMs: number;
  maxTtlMs: number;
  /** Whether a process exists (send refuses a pid that does not). */
  processExists: (pid: number) => boolean;
  /** A process's name for holders and errors. */
  processName: (pid: number) => string;
}

export interface ShmCounters {
  allocs: number;
  allocFailed: Record<'no_memory' | 'quota' | 'invalid', number>;
  batchesSent: number;
  batchesReceived: number;
  batchesExpired: number;
  batchesDropped: number;
  reclaimedBytes: Record<ReclaimReasonName, number>;
}

/** Called after a connection's holdings were released on close or reclaim (logs, bench timing). */
export type ReleaseListener = (e: {
  pid: number;
  reason: ReclaimReasonName;
  blocks: number;
  bytes: number;
}) => void;

/**
 * The daemon's state and every operation on it (DESIGN §10), with no I/O: refcounts, per-connection
 * holdings, batches with ttl, quotas, reclaim. Each operation validates everything before it
 * changes anything, and fails with a ShmError whose code the protocol layer turns into a reply.
 * Single-threaded by construction (one event loop): seed R12's global lock without a lock.
 */
export class ShmCore {
  readonly blocks: BlockTable;
  readonly counters: ShmCounters = {
    allocs: 0,
    allocFailed: { no_memory: 0, quota: 0, invalid: 0 },
    batchesSent: 0,
    batchesReceived: 0,
    batchesExpired: 0,
    batchesDropped: 0,
    reclaimedBytes: { disconnect: 0, killme: 0, manual: 0, expired: 0 },
  };
  readonly procs = new Map<number, ProcRecord>();
  readonly batches = new BatchBook();
  onRelease: ReleaseListener | undefined;
  private readonly peers = new Set<ShmPeer>();

  constructor(readonly options: ShmCoreOptions) {
    this.blocks = new BlockTable(options.layout);
  }

  get layout(): PoolLayout {
    return this.options.layout;
  }

  get connections(): number {
    return this.peers.size;
  }

  attach(id: number, sink: PeerSink): ShmPeer {
    const peer = new ShmPeer(id, sink);
    this.peers.add(peer);
    return peer;
  }

  /** Binds a connection to its (kernel-given or proven) pid. */
  verify(peer: ShmPeer, pid: number): void {
    if (peer.verified) return;
    peer.pid = pid;
    let proc = this.procs.get(pid);
    if (!proc) {
      proc = { pid, name: this.options.processName(pid), peers: new Set(), sentBatches: 0, sentBytes: 0 };
      this.procs.set(pid, proc);
    }
    proc.peers.add(peer);
  }

  /** A connection closed: everything it holds is released at once (seed R13), and batches to its process when it was the last. */
  detach(peer: ShmPeer): void {
    if (!this.peers.delete(peer)) return;
    if (!peer.reclaimed) this.releaseAll(peer, 'disconnect');
    for (const b of this.batches.all()) if (b.from === peer) b.from = undefined;
    const proc = peer.verified ? this.procs.get(peer.pid) : undefined;
    if (!proc) return;
    proc.peers.delete(peer);
    if (proc.peers.size === 0) {
      for (const b of this.batches.addressedTo(proc.pid)) this.endBatch(b, 'addressee-gone');
      this.dropIdleProc(proc);
    }
  }

  alloc(peer: ShmPeer, size: number, align: number, count: number): ShmHandle[] {
    this.requireVerified(peer);
    const cls = this.classFor(size, align, count);
    if (this.blocks.freeCount(cls.index) < count) {
      this.counters.allocFailed.no_memory += 1;
      throw new ShmError(ErrorCode.SHM_NO_MEMORY, this.noMemoryText(cls, count));
    }
    this.checkQuota(peer.pid, count * cls.size, 'allocating');
    const handles: ShmHandle[] = [];
    for (let i = 0; i < count; i++) {
      const block = this.blocks.take(cls.index, size);
      this.hold(peer, block, cls);
      handles.push({ pool: this.options.generation, block, gen: this.blocks.gens[block]!, len: size });
    }
    this.counters.allocs += count;
    return handles;
  }

  free(peer: ShmPeer, handles: readonly ShmHandle[]): void {
    this.requireVerified(peer);
    for (const [block, cls] of this.checkHeld(peer, handles)) {
      this.unhold(peer, block, cls);
      this.blocks.dropRef(block, cls.index);
    }
  }

  addref(peer: ShmPeer, handles: readonly ShmHandle[]): void {
    this.requireVerified(peer);
    for (const [block, cls] of this.checkHeld(peer, handles)) {
      this.hold(peer, block, cls);
      this.blocks.addRef(block);
    }
  }

  /** Moves references of `handles` from the caller into a new batch for process `to`. */
  send(peer: ShmPeer, to: number, ttlMs: number, handles: readonly ShmHandle[]): number {
    this.requireVerified(peer);
    const { defaultTtlMs, maxTtlMs, maxBatchesPerProc } = this.options;
    const ttl = ttlMs === 0 ? defaultTtlMs : ttlMs;
    if (ttl > maxTtlMs) this.invalid(`ttl ${ttl} ms is over the limit of ${maxTtlMs} ms`);
    if (!Number.isInteger(to) || to <= 0) this.invalid(`addressee pid ${to} is not a pid`);
    if (!this.options.processExists(to)) this.invalid(`no process with pid ${to}`);
    const proc = this.procs.get(peer.pid)!;
    if (proc.sentBatches >= maxBatchesPerProc) {
      throw new ShmError(
        ErrorCode.SHM_QUOTA,
        `pid ${peer.pid} has ${proc.sentBatches} batches in flight, the limit is ${maxBatchesPerProc} ([shm] max_batches_per_proc)`,
      );
    }
    const moved = this.checkHeld(peer, handles);
    let bytes = 0;
    for (const [block, cls] of moved) {
      this.unhold(peer, block, cls);
      bytes += cls.size;
    }
    const batch: Batch = {
      id: this.batches.nextId(),
      from: peer,
      fromPid: peer.pid,
      to,
      blocks: moved.map(([block]) => block),
      handles: [...handles],
      bytes,
      timer: undefined,
    };
    batch.timer = setTimeout(() => this.endBatch(batch, 'ttl'), ttl);
    batch.timer.unref();
    this.batches.add(batch);
    proc.sentBatches += 1;
    proc.sentBytes += bytes;
    this.counters.batchesSent += 1;
    return batch.id;
  }

  /** The addressee takes the references of a batch (seed R10, with every check a reply). */
  recv(peer: ShmPeer, batchId: number): { fromPid: number; handles: ShmHandle[] } {
    this.requireVerified(peer);
    const batch = this.batches.get(batchId);
    if (!batch) {
      const ended = this.batches.endReason(batchId);
      if (ended) {
        const why =
          ended === 'ttl'
            ? 'its ttl ran out'
            : ended === 'addressee-gone'
              ? 'its addressee disconnected'
              : 'its addressee was reclaimed';
        throw new ShmError(
          ErrorCode.SHM_EXPIRED,
          `batch ${batchId} was released before it was received: ${why}`,
        );
      }
      throw new ShmError(
        ErrorCode.SHM_UNKNOWN_BATCH,
        `no batch ${batchId} (never sent, or already received)`,
      );
    }
    if (batch.to !== peer.pid) {
      throw new ShmError(
        ErrorCode.SHM_NOT_ADDRESSEE,
        `batch ${batchId} is addressed to pid ${batch.to}, not to pid ${peer.pid}`,
      );
    }
    this.checkQuota(peer.pid, batch.bytes, 'receiving');
    for (const block of batch.blocks) this.hold(peer, block, classOfBlock(this.layout, block)!);
    this.batches.remove(batch);
    this.batchDone(batch);
    this.counters.batchesReceived += 1;
    return { fromPid: batch.fromPid, handles: batch.handles };
  }

  stat(peer: ShmPeer): Omit<ShmStat, 'mode'> {
    const classes: ClassStat[] = this.layout.classes.map((c) => {
      const free = this.blocks.freeCount(c.index);
      return { size: c.size, total: c.count, free, used: c.count - free };
    });
    return {
      daemonMode: this.options.mode,
      generation: this.options.generation,
      pool: { name: this.options.poolName, size: this.layout.size },
      classes,
      held: { blocks: peer.held.size, bytes: peer.heldBytes },
      batches: { inflight: this.batches.size, expired: this.counters.batchesExpired },
      connections: this.peers.size,
      processes: this.procs.size,
    };
  }

  holders(): HoldersReport {
    return holdersReport(this);
  }

  /** Releases everything `pid` holds and cuts its connections (bus killme, `lars shm reclaim`). */
  reclaim(pid: number, reason: 'killme' | 'manual'): ReclaimResult {
    if (!Number.isInteger(pid) || pid <= 0) this.invalid(`pid ${pid} is not a pid`);
    const result: ReclaimResult = { pid, connections: 0, blocks: 0, bytes: 0, batches: 0 };
    const proc = this.procs.get(pid);
    for (const peer of proc ? [...proc.peers] : []) {
      result.connections += 1;
      result.blocks += peer.held.size;
      result.bytes += peer.heldBytes;
      this.releaseAll(peer, reason);
      peer.reclaimed = true;
      peer.sink.kill(`reclaimed (${reason})`);
    }
    for (const b of this.batches.addressedTo(pid)) {
      result.batches += 1;
      this.endBatch(b, 'addressee-reclaimed', reason);
    }
    return result;
  }

  close(): void {
    this.batches.clear();
  }

  // --- internals ------------------------------------------------------------------------------

  private requireVerified(peer: ShmPeer): void {
    if (!peer.verified) {
      throw new ShmError(
        ErrorCode.SHM_NOT_VERIFIED,
        'the daemon does not know this process yet: send HELLO (and PROVE in file mode) first',
      );
    }
  }

  private invalid(message: string): never {
    throw new ShmError(ErrorCode.SHM_INVALID_ARGUMENT, message);
  }

  /** The smallest class that fits size and alignment (no spill into larger classes: deterministic). */
  private classFor(size: number, align: number, count: number): ClassLayout {
    const fail = (m: string): never => {
      this.counters.allocFailed.invalid += 1;
      this.invalid(m);
    };
    if (!Number.isInteger(count) || count < 1 || count > MAX_ALLOC_COUNT)
      fail(`count ${count} must be 1..${MAX_ALLOC_COUNT}`);
    if (align !== 0 && (align > MAX_ALIGN || (align & (align - 1)) !== 0)) {
      fail(`align ${align} must be a power of two up to ${MAX_ALIGN}`);
    }
    const classes = this.layout.classes;
    const largest = classes[classes.length - 1]!;
    if (size < 1 || size > largest.size)
      fail(`size ${size} must be 1..${largest.size} (largest class ${formatSize(largest.size)})`);
    const cls = classes.find((c) => c.size >= size && c.align >= align);
    if (!cls) return fail(`no class holds ${size} bytes aligned to ${align}`);
    return cls;
  }

  private checkQuota(pid: number, more: number, doing: string): void {
    const proc = this.procs.get(pid)!;
    let held = 0;
    for (const p of proc.peers) held += p.heldBytes;
    const quota = this.options.quotaBytes;
    if (held + proc.sentBytes + more <= quota) return;
    this.counters.allocFailed.quota += doing === 'allocating' ? 1 : 0;
    throw new ShmError(
      ErrorCode.SHM_QUOTA,
      `pid ${pid} (${proc.name}) holds ${formatSize(held)} and has ${formatSize(proc.sentBytes)} in unreceived batches; ` +
        `${doing} ${formatSize(more)} more would pass its quota of ${formatSize(quota)} ([shm] quota_percent)`,
    );
  }

  /**
   * Validates handles against what `peer` holds (duplicates need as many references) and returns
   * [block, class] per handle. Nothing is changed, so a failure leaves every holding as it was.
   */
  private checkHeld(peer: ShmPeer, handles: readonly ShmHandle[]): [number, ClassLayout][] {
    const out: [number, ClassLayout][] = [];
    const need = new Map<number, number>();
    for (const h of handles) {
      if (h.pool !== this.options.generation) {
        throw new ShmError(
          ErrorCode.SHM_STALE,
          `handle of pool generation ${h.pool}; the daemon runs generation ${this.options.generation} (it restarted)`,
        );
      }
      const cls = classOfBlock(this.layout, h.block);
      if (!cls) this.invalid(`no block ${h.block} in this pool (${this.layout.blocks} blocks)`);
      if (this.blocks.gens[h.block] !== h.gen) {
        throw new ShmError(
          ErrorCode.SHM_STALE,
          `block ${h.block} was released and allocated again since this handle was issued`,
        );
      }
      const n = (need.get(h.block) ?? 0) + 1;
      need.set(h.block, n);
      if (n > (peer.held.get(h.block) ?? 0)) {
        const free = this.blocks.refs[h.block] === 0;
        throw new ShmError(
          ErrorCode.SHM_NOT_HELD,
          `block ${h.block} is not held by this connection${free ? ' (it is free: double free?)' : n > 1 ? ` ${n} times` : ''}`,
        );
      }
      out.push([h.block, cls]);
    }
    return out;
  }

  private hold(peer: ShmPeer, block: number, cls: ClassLayout): void {
    const n = peer.held.get(block) ?? 0;
    if (n === 0) peer.heldBytes += cls.size;
    peer.held.set(block, n + 1);
  }

  private unhold(peer: ShmPeer, block: number, cls: ClassLayout): void {
    const n = peer.held.get(block)!;
    if (n === 1) {
      peer.held.delete(block);
      peer.heldBytes -= cls.size;
    } else peer.held.set(block, n - 1);
  }

  private releaseAll(peer: ShmPeer, reason: ReclaimReasonName): void {
    let freedBytes = 0;
    const blocks = peer.held.size;
    const heldBytes = peer.heldBytes;
    for (const [block, n] of peer.held) {
      const cls = classOfBlock(this.layout, block)!;
      for (let i = 0; i < n; i++) if (this.blocks.dropRef(block, cls.index)) freedBytes += cls.size;
    }
    peer.held.clear();
    peer.heldBytes = 0;
    this.counters.reclaimedBytes[reason] += freedBytes;
    if (peer.verified && (blocks > 0 || reason !== 'disconnect'))
      this.onRelease?.({ pid: peer.pid, reason, blocks, bytes: heldBytes });
  }

  /** Ends a batch without a recv: references dropped, sender told. */
  private endBatch(b: Batch, why: BatchEndReason, reason: ReclaimReasonName = 'expired'): void {
    if (this.batches.get(b.id) !== b) return;
    this.batches.remove(b, why);
    let freed = 0;
    for (const block of b.blocks) {
      const cls = classOfBlock(this.layout, block)!;
      if (this.blocks.dropRef(block, cls.index)) freed += cls.size;
    }
    this.counters.reclaimedBytes[reason] += freed;
    if (why === 'ttl') this.counters.batchesExpired += 1;
    else this.counters.batchesDropped += 1;
    this.batchDone(b);
    b.from?.sink.notify({
      kind: 'batch-released',
      batchId: b.id,
      to: b.to,
      blocks: b.blocks.length,
      reason: why,
    });
  }

  private batchDone(b: Batch): void {
    const sender = this.procs.get(b.fromPid);
    if (!sender) return;
    sender.sentBatches -= 1;
    sender.sentBytes -= b.bytes;
    this.dropIdleProc(sender);
  }

  private dropIdleProc(proc: ProcRecord): void {
    if (proc.peers.size === 0 && proc.sentBatches === 0) this.procs.delete(proc.pid);
  }

  /** The NO_MEMORY message: the class, how full it is, who holds most of it (iceoryx users' missing answer). */
  private noMemoryText(cls: ClassLayout, count: number): string {
    const free = this.blocks.freeCount(cls.index);
    return (
      `no ${count === 1 ? 'free block' : `${count} free blocks`} in class ${formatSize(cls.size)} ` +
      `(${cls.count} blocks, ${free} free); ${topHoldersText(this, cls)}`
    );
  }
}
