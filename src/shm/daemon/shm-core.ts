import { ErrorCode, ShmError } from '../../errors.js';
import type { ShmHandle } from '../handle.js';
import { classOfBlock, type ClassLayout, type PoolLayout } from '../pool-layout.js';
import type { HoldersReport, ReclaimResult, ShmMode, ShmStat } from '../reports.js';
import { formatSize } from '../size-classes.js';
import type { BatchEndReason, ReclaimReasonName } from '../wire-ids.js';
import { BatchBook, type Batch } from './batch-book.js';
import { BlockTable } from './block-table.js';
import { holdersReport, noMemoryText, statReport } from './core-reports.js';
import { checkHeld, dropAll, hold, pickClass, unhold } from './holdings.js';
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
    let cls: ClassLayout;
    try {
      cls = pickClass(this.layout, size, align, count);
    } catch (err) {
      this.counters.allocFailed.invalid += 1;
      throw err;
    }
    if (this.blocks.freeCount(cls.index) < count) {
      this.counters.allocFailed.no_memory += 1;
      throw new ShmError(ErrorCode.SHM_NO_MEMORY, noMemoryText(this, cls, count));
    }
    this.checkQuota(peer.pid, count * cls.size, 'allocating');
    const handles: ShmHandle[] = [];
    for (let i = 0; i < count; i++) {
      const block = this.blocks.take(cls.index, size);
      hold(peer, block, cls);
      handles.push({ pool: this.options.generation, block, gen: this.blocks.gens[block]!, len: size });
    }
    this.counters.allocs += count;
    return handles;
  }

  free(peer: ShmPeer, handles: readonly ShmHandle[]): void {
    this.requireVerified(peer);
    for (const [block, cls] of checkHeld(peer, handles, this.layout, this.blocks, this.options.generation)) {
      unhold(peer, block, cls);
      this.blocks.dropRef(block, cls.index);
    }
  }

  addref(peer: ShmPeer, handles: readonly ShmHandle[]): void {
    this.requireVerified(peer);
    for (const [block, cls] of checkHeld(peer, handles, this.layout, this.blocks, this.options.generation)) {
      hold(peer, block, cls);
      this.blocks.addRef(block);
    }
  }

  /** Moves references of `handles` from the caller into a new batch for process `to`. */
  send(peer: ShmPeer, to: number, ttlMs: number, handles: readonly ShmHandle[]): number {
    this.requireVerified(peer);
    const { maxBatchesPerProc } = this.options;
    const ttl = this.ttlOf(ttlMs);
    if (!Number.isInteger(to) || to <= 0) this.invalid(`addressee pid ${to} is not a pid`);
    if (!this.options.processExists(to)) this.invalid(`no process with pid ${to}`);
    const proc = this.procs.get(peer.pid)!;
    if (proc.sentBatches >= maxBatchesPerProc) {
      throw new ShmError(
        ErrorCode.SHM_QUOTA,
        `pid ${peer.pid} has ${proc.sentBatches} batches in flight, the limit is ${maxBatchesPerProc} ([shm] max_batches_per_proc)`,
      );
    }
    const moved = checkHeld(peer, handles, this.layout, this.blocks, this.options.generation);
    let bytes = 0;
    for (const [block, cls] of moved) {
      unhold(peer, block, cls);
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
      charged: bytes,
      tag: 0,
      timer: undefined,
    };
    this.openBatch(batch, ttl, proc);
    return batch.id;
  }

  /** @internal Starts a batch's ttl and counts it against its sender `proc`. */
  openBatch(batch: Batch, ttlMs: number, proc: ProcRecord): void {
    batch.timer = setTimeout(() => this.endBatch(batch, 'ttl'), ttlMs);
    batch.timer.unref();
    this.batches.add(batch);
    proc.sentBatches += 1;
    proc.sentBytes += batch.charged;
    this.counters.batchesSent += 1;
  }

  /** @internal The ttl a sender asked for (0 = the default), checked against the limit. */
  ttlOf(ttlMs: number): number {
    const ttl = ttlMs === 0 ? this.options.defaultTtlMs : ttlMs;
    if (ttl > this.options.maxTtlMs)
      this.invalid(`ttl ${ttl} ms is over the limit of ${this.options.maxTtlMs} ms`);
    return ttl;
  }

  /** The addressee takes the references of a batch (seed R10, with every check a reply). */
  recv(peer: ShmPeer, batchId: number): { fromPid: number; handles: ShmHandle[] } {
    this.requireVerified(peer);
    const batch = this.batches.get(batchId);
    if (!batch) throw this.batches.missing(batchId);
    if (batch.to !== peer.pid) {
      throw new ShmError(
        ErrorCode.SHM_NOT_ADDRESSEE,
        `batch ${batchId} is addressed to pid ${batch.to}, not to pid ${peer.pid}`,
      );
    }
    this.checkQuota(peer.pid, this.newBytes(peer.pid, batch), 'receiving');
    for (const block of batch.blocks) hold(peer, block, classOfBlock(this.layout, block)!);
    this.batches.remove(batch);
    this.batchDone(batch);
    this.counters.batchesReceived += 1;
    return { fromPid: batch.fromPid, handles: batch.handles };
  }

  stat(peer: ShmPeer): Omit<ShmStat, 'mode'> {
    return statReport(this, peer);
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

  /** @internal */
  requireVerified(peer: ShmPeer): void {
    if (!peer.verified) {
      throw new ShmError(
        ErrorCode.SHM_NOT_VERIFIED,
        'the daemon does not know this process yet: send HELLO (and PROVE in file mode) first',
      );
    }
  }

  /** @internal */
  invalid(message: string): never {
    throw new ShmError(ErrorCode.SHM_INVALID_ARGUMENT, message);
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
   * Bytes receiving `batch` adds to what process `pid` holds: blocks it holds already (a fan-out to
   * two of its connections) add nothing, and a batch it sent itself only moves bytes it is charged.
   */
  private newBytes(pid: number, batch: Batch): number {
    const proc = this.procs.get(pid)!;
    let more = batch.fromPid === pid ? -batch.charged : 0;
    for (const block of batch.blocks) {
      let held = false;
      for (const p of proc.peers) if (p.held.has(block)) held = true;
      if (!held) more += classOfBlock(this.layout, block)!.size;
    }
    return Math.max(0, more);
  }

  private releaseAll(peer: ShmPeer, reason: ReclaimReasonName): void {
    const blocks = peer.held.size;
    const heldBytes = peer.heldBytes;
    this.counters.reclaimedBytes[reason] += dropAll(peer, this.layout, this.blocks);
    if (peer.verified && (blocks > 0 || reason !== 'disconnect')) {
      this.onRelease?.({ pid: peer.pid, reason, blocks, bytes: heldBytes });
    }
  }

  /** @internal Ends a batch without a recv: references dropped, sender told. */
  endBatch(b: Batch, why: BatchEndReason, reason: ReclaimReasonName = 'expired'): void {
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
    // A relay's own CANCEL needs no notice.
    if (why !== 'cancelled')
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
    sender.sentBytes -= b.charged;
    this.dropIdleProc(sender);
  }

  private dropIdleProc(proc: ProcRecord): void {
    if (proc.peers.size === 0 && proc.sentBatches === 0) this.procs.delete(proc.pid);
  }
}
