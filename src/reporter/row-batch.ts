import type { RowColumns, RowQueue } from './row-queue.js';

/**
 * Rows of one statement, by column (typed arrays: cheap to build, and cheap to clone to the SQLite
 * writer thread). `time` is ServerCallStatus.ts for status rows and
 * lars_call_history.minute for history rows.
 */
export interface BatchRows {
  readonly count: number;
  readonly modid: Int32Array;
  readonly cmdid: Int32Array;
  readonly ip: Uint32Array;
  readonly port: Int32Array;
  readonly caller: Uint32Array;
  readonly succ: Uint32Array;
  readonly err: Uint32Array;
  readonly time: Uint32Array;
  readonly overload: Uint8Array;
  /** The agent's cumulative counters (issue 16); -1 when not sent. */
  readonly totalSucc: Float64Array;
  readonly totalErr: Float64Array;
}

/** What one writer sends to the database in one transaction. */
export interface RowBatch {
  /** Sequence number of the first queued row read, and how many were read (before de-duplication). */
  readonly firstSeq: number;
  readonly taken: number;
  /** One row per (modid, cmdid, ip, port, caller): the latest values read. Sorted by that key. */
  readonly status: BatchRows;
  /** One row per (modid, cmdid, ip, port, caller, minute): the latest values of that minute. Sorted by that key. */
  readonly history: BatchRows;
}

/**
 * Reads up to `maxRows` of the oldest pending rows of `queue` (the caller removes them) and folds them
 * into one status batch and one history batch, keeping only the latest values of each key: the rows
 * are in arrival order, so "latest" is simply the last one read. Rows are sorted by primary key so
 * concurrent writers take InnoDB/PostgreSQL row locks in one order (no lock-order deadlocks between
 * them) and each statement walks the index forward.
 */
export function takeBatch(queue: RowQueue, maxRows: number): RowBatch {
  const taken = Math.min(queue.length, maxRows);
  const c = queue.columns;
  const statusAt = new Map<string, number>();
  const historyAt = new Map<string, number>();
  const statusSlots: number[] = [];
  const historySlots: number[] = [];
  for (let i = 0; i < taken; i++) {
    const s = queue.slot(i);
    const key = `${c.modid[s]},${c.cmdid[s]},${c.ip[s]},${c.port[s]},${c.caller[s]}`;
    const si = statusAt.get(key);
    if (si === undefined) {
      statusAt.set(key, statusSlots.length);
      statusSlots.push(s);
    } else {
      statusSlots[si] = s;
    }
    const hkey = `${key},${c.minute[s]}`;
    const hi = historyAt.get(hkey);
    if (hi === undefined) {
      historyAt.set(hkey, historySlots.length);
      historySlots.push(s);
    } else {
      historySlots[hi] = s;
    }
  }
  statusSlots.sort((a, b) => compareKey(c, a, b));
  historySlots.sort((a, b) => compareKey(c, a, b) || c.minute[a]! - c.minute[b]!);
  return {
    firstSeq: queue.headSeq,
    taken,
    status: gather(c, statusSlots, c.ts),
    history: gather(c, historySlots, c.minute),
  };
}

function compareKey(c: RowColumns, a: number, b: number): number {
  return (
    c.modid[a]! - c.modid[b]! ||
    c.cmdid[a]! - c.cmdid[b]! ||
    c.ip[a]! - c.ip[b]! ||
    c.port[a]! - c.port[b]! ||
    c.caller[a]! - c.caller[b]!
  );
}

function gather(c: RowColumns, slots: readonly number[], time: Uint32Array): BatchRows {
  const n = slots.length;
  const out: BatchRows = {
    count: n,
    modid: new Int32Array(n),
    cmdid: new Int32Array(n),
    ip: new Uint32Array(n),
    port: new Int32Array(n),
    caller: new Uint32Array(n),
    succ: new Uint32Array(n),
    err: new Uint32Array(n),
    time: new Uint32Array(n),
    overload: new Uint8Array(n),
    totalSucc: new Float64Array(n),
    totalErr: new Float64Array(n),
  };
  for (let i = 0; i < n; i++) {
    const s = slots[i]!;
    out.modid[i] = c.modid[s]!;
    out.cmdid[i] = c.cmdid[s]!;
    out.ip[i] = c.ip[s]!;
    out.port[i] = c.port[s]!;
    out.caller[i] = c.caller[s]!;
    out.succ[i] = c.succ[s]!;
    out.err[i] = c.err[s]!;
    out.time[i] = time[s]!;
    out.overload[i] = c.overload[s]!;
    out.totalSucc[i] = c.totalSucc[s]!;
    out.totalErr[i] = c.totalErr[s]!;
  }
  return out;
}
