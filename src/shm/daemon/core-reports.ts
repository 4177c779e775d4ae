import { classOfBlock, type ClassLayout } from '../pool-layout.js';
import { MAX_BODY_LEN } from '../../protocol/frame.js';
import { formatSize } from '../size-classes.js';
import type { ClassStat, HolderEntry, HoldersReport, ShmStat } from '../reports.js';
import type { ShmPeer } from './peer.js';
import { encodeJsonReply } from '../wire-codec.js';
import type { ShmCore } from './shm-core.js';

/**
 * Reports about the daemon's state (STAT, HOLDERS, the NO_MEMORY message), built on demand (CLI,
 * metrics scrape, error replies), never on the hot path.
 */

/** Most processes a HOLDERS reply lists (largest first): keeps the reply inside one frame. */
export const MAX_HOLDERS_LISTED = 200;

/**
 * Who holds what, per process and class: the answer pool users lack elsewhere (iceoryx "running out
 * of chunks" with no way to tell who holds them). Walks every holding: called on demand (CLI,
 * metrics scrape, error messages), never on the hot path.
 */
export function holdersReport(core: ShmCore): HoldersReport {
  const { layout } = core;
  const holders: HolderEntry[] = [];
  for (const proc of core.procs.values()) {
    const perClass = new Array<number>(layout.classes.length).fill(0);
    let blocks = 0;
    let bytes = 0;
    for (const peer of proc.peers) {
      blocks += peer.held.size;
      bytes += peer.heldBytes;
      for (const block of peer.held.keys()) perClass[classOfBlock(layout, block)!.index]! += 1;
    }
    holders.push({
      pid: proc.pid,
      name: proc.name,
      connections: proc.peers.size,
      blocks,
      bytes,
      classes: layout.classes
        .map((c) => ({ size: c.size, blocks: perClass[c.index]! }))
        .filter((c) => c.blocks > 0),
      sent: { batches: proc.sentBatches, bytes: proc.sentBytes },
    });
  }
  holders.sort((a, b) => b.bytes + b.sent.bytes - (a.bytes + a.sent.bytes) || a.pid - b.pid);
  const inBatches = { batches: 0, blocks: 0, bytes: 0 };
  for (const b of core.batches.all()) {
    inBatches.batches += 1;
    inBatches.blocks += b.blocks.length;
    inBatches.bytes += b.bytes;
  }
  return { generation: core.options.generation, holders: holders.slice(0, MAX_HOLDERS_LISTED), inBatches };
}

/** "top holders: pid 12 (node) 40 blocks, pid 34 (x) 3 blocks; 2 blocks in 1 unreceived batch". */
export function topHoldersText(core: ShmCore, cls: ClassLayout, n = 3): string {
  const counts: { pid: number; name: string; blocks: number }[] = [];
  for (const proc of core.procs.values()) {
    let blocks = 0;
    for (const peer of proc.peers)
      for (const block of peer.held.keys()) if (classOfBlock(core.layout, block) === cls) blocks += 1;
    if (blocks > 0) counts.push({ pid: proc.pid, name: proc.name, blocks });
  }
  counts.sort((a, b) => b.blocks - a.blocks || a.pid - b.pid);
  let inBatches = 0;
  let batches = 0;
  for (const b of core.batches.all()) {
    const k = b.blocks.filter((block) => classOfBlock(core.layout, block) === cls).length;
    if (k > 0) {
      inBatches += k;
      batches += 1;
    }
  }
  const top = counts
    .slice(0, n)
    .map((c) => `pid ${c.pid} (${c.name}) ${c.blocks} block${c.blocks === 1 ? '' : 's'}`);
  const parts = [top.length > 0 ? `top holders: ${top.join(', ')}` : 'no process holds any'];
  if (inBatches > 0)
    parts.push(
      `${inBatches} block${inBatches === 1 ? '' : 's'} in ${batches} unreceived batch${batches === 1 ? '' : 'es'}`,
    );
  return parts.join('; ');
}

/**
 * The HOLDERS reply, largest holders first, cut to fit one frame (`truncated` then says so): a
 * reply must never be too large to send.
 */
export function holdersReply(reqid: number, report: HoldersReport): Buffer {
  let r = report;
  let reply = encodeJsonReply(reqid, r);
  while (reply.length > MAX_BODY_LEN && r.holders.length > 0) {
    r = { ...r, holders: r.holders.slice(0, Math.floor(r.holders.length / 2)), truncated: true };
    reply = encodeJsonReply(reqid, r);
  }
  return reply;
}

/** The NO_MEMORY message: the class, how full it is, who holds most of it (iceoryx users' missing answer). */
export function noMemoryText(core: ShmCore, cls: ClassLayout, count: number): string {
  const free = core.blocks.freeCount(cls.index);
  return (
    `no ${count === 1 ? 'free block' : `${count} free blocks`} in class ${formatSize(cls.size)} ` +
    `(${cls.count} blocks, ${free} free); ${topHoldersText(core, cls)}`
  );
}

/** STAT: the pool per class, and what the calling connection holds. */
export function statReport(core: ShmCore, peer: ShmPeer): Omit<ShmStat, 'mode'> {
  const classes: ClassStat[] = core.layout.classes.map((c) => {
    const free = core.blocks.freeCount(c.index);
    return { size: c.size, total: c.count, free, used: c.count - free };
  });
  const o = core.options;
  return {
    daemonMode: o.mode,
    generation: o.generation,
    pool: { name: o.poolName, size: core.layout.size },
    classes,
    held: { blocks: peer.held.size, bytes: peer.heldBytes },
    batches: { inflight: core.batches.size, expired: core.counters.batchesExpired },
    connections: core.connections,
    processes: core.procs.size,
  };
}
