import { ErrorCode, ShmError } from '../../errors.js';
import type { ShmHandle } from '../handle.js';
import type { TransferTarget } from '../wire-codec.js';
import type { Batch } from './batch-book.js';
import { checkHeld, unhold } from './holdings.js';
import type { ShmPeer } from './peer.js';
import type { ShmCore } from './shm-core.js';

/**
 * What a relay (the bus, issue 14) needs beyond SEND: it hands a buffer from the process that
 * published it to every receiving process without that process taking part. TRANSFER moves one
 * reference held by process `fromPid` (found by kernel pid, like every holding) into one batch per
 * addressee, adding references for a fan-out (one block, N batches); with no addressee it releases
 * the reference (a message nobody receives). An addressee whose process is gone gets batch id 0. `keep`: the holder keeps its reference and every
 * addressee gets a new one. The batches belong to the relay's connection (notices go to it, CANCEL
 * ends them) and count against `fromPid`'s batch limit; only the moved reference counts against its
 * byte quota (the others add no memory).
 *
 * Any connection of the daemon's uid may relay: the socket admits that uid only, which already may
 * RECLAIM any process (DESIGN §10's trust boundary is the uid).
 */
export function transfer(
  core: ShmCore,
  relay: ShmPeer,
  fromPid: number,
  handle: ShmHandle,
  to: readonly TransferTarget[],
  keep: boolean,
  ttlMs: number,
): number[] {
  core.requireVerified(relay);
  const ttl = core.ttlOf(ttlMs);
  const proc = core.procs.get(fromPid);
  let holder: ShmPeer | undefined;
  for (const p of proc?.peers ?? []) if (p.held.has(handle.block)) holder = p;
  if (!proc || !holder) {
    throw new ShmError(
      ErrorCode.SHM_NOT_HELD,
      `block ${handle.block} is not held by pid ${fromPid}${proc ? '' : ' (it has no connection to lars shm)'}`,
    );
  }
  const [block, cls] = checkHeld(holder, [handle], core.layout, core.blocks, core.options.generation)[0]!;
  for (const t of to)
    if (!Number.isInteger(t.pid) || t.pid <= 0) core.invalid(`addressee pid ${t.pid} is not a pid`);
  // An addressee that died in the meantime gets no batch (id 0); the others still get theirs.
  const live = to.filter((t) => core.options.processExists(t.pid));
  const max = core.options.maxBatchesPerProc;
  if (proc.sentBatches + live.length > max) {
    throw new ShmError(
      ErrorCode.SHM_QUOTA,
      `pid ${fromPid} has ${proc.sentBatches} batches in flight; ${live.length} more would pass the limit of ${max} ([shm] max_batches_per_proc)`,
    );
  }
  if (!keep) unhold(holder, block, cls);
  if (live.length === 0) {
    if (!keep) core.blocks.dropRef(block, cls.index);
    return to.map(() => 0);
  }
  for (let i = keep ? 0 : 1; i < live.length; i++) core.blocks.addRef(block);
  const ids = new Map<TransferTarget, number>();
  live.forEach((t, i) => {
    const batch: Batch = {
      id: core.batches.nextId(),
      from: relay,
      fromPid,
      to: t.pid,
      blocks: [block],
      handles: [handle],
      bytes: cls.size,
      charged: !keep && i === 0 ? cls.size : 0,
      tag: t.tag,
      timer: undefined,
    };
    core.openBatch(batch, ttl, proc);
    ids.set(t, batch.id);
  });
  return to.map((t) => ids.get(t) ?? 0);
}

/** Ends unreceived batches the relay made: those with `tag` (when not 0) and those listed. */
export function cancel(core: ShmCore, relay: ShmPeer, tag: number, batchIds: readonly number[]): number {
  core.requireVerified(relay);
  const ids = new Set(batchIds);
  const doomed: Batch[] = [];
  for (const b of core.batches.all())
    if (b.from === relay && ((tag !== 0 && b.tag === tag) || ids.has(b.id))) doomed.push(b);
  for (const b of doomed) core.endBatch(b, 'cancelled');
  return doomed.length;
}
