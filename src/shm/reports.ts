/**
 * The JSON documents the daemon returns for HELLO, STAT, HOLDERS and RECLAIM (and `lars shm stat
 * --json` / `holders --json` print). Shared by the daemon and the client; types only.
 */

export type ShmMode = 'addon' | 'file';

export interface PoolClassInfo {
  size: number;
  count: number;
  offset: number;
  firstBlock: number;
  align: number;
}

export interface HelloInfo {
  version: number;
  daemonPid: number;
  /** How the daemon created the pool segment (the client maps it in its own mode). */
  mode: ShmMode;
  pool: { name: string; size: number; generation: number; classes: PoolClassInfo[] };
  limits: {
    quotaBytes: number;
    maxBatchesPerProc: number;
    defaultTtlMs: number;
    maxTtlMs: number;
    maxAllocCount: number;
  };
  /** Whether the daemon knows the caller's pid (kernel credentials, or a file-mode proof). */
  verified: boolean;
  /** The caller's pid as the daemon knows it (0 when not verified). */
  pid: number;
  /** File-mode identity proof: open this file and send PROVE (see docs/shm.md). */
  proofPath?: string;
}

export interface ClassStat {
  size: number;
  total: number;
  free: number;
  used: number;
}

export interface ShmStat {
  /** How this client maps the pool (set by the client; the daemon reports its own as daemonMode). */
  mode: ShmMode;
  daemonMode: ShmMode;
  generation: number;
  pool: { name: string; size: number };
  classes: ClassStat[];
  /** What the calling connection holds. */
  held: { blocks: number; bytes: number };
  batches: { inflight: number; expired: number };
  connections: number;
  processes: number;
}

export interface HolderEntry {
  pid: number;
  /** Process name from /proc/PID/comm when the daemon saw it connect. */
  name: string;
  connections: number;
  blocks: number;
  bytes: number;
  classes: { size: number; blocks: number }[];
  /** Batches it sent that nobody has received yet (they count against its quota). */
  sent: { batches: number; bytes: number };
}

export interface HoldersReport {
  generation: number;
  holders: HolderEntry[];
  /** Blocks referenced by batches in flight. */
  inBatches: { batches: number; blocks: number; bytes: number };
  /** Set when the list was cut to fit one reply (the largest holders are kept). */
  truncated?: boolean;
}

export interface ReclaimResult {
  pid: number;
  connections: number;
  blocks: number;
  bytes: number;
  /** Batches addressed to the pid that were released. */
  batches: number;
}
