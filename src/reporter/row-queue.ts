import { InvalidArgumentError } from '../errors.js';

/** Rows allocated up front; the storage doubles on demand up to the queue's capacity. */
const INITIAL_ROWS = 1024;

/**
 * The columns of pending rows. Typed arrays: a row costs 37 bytes and no object, so a full queue of
 * 100k rows is under 4 MB and the garbage collector never sees the rows (STYLE §11: bounded).
 * Replaced when the storage grows: read it again after any push.
 */
export interface RowColumns {
  readonly modid: Int32Array;
  readonly cmdid: Int32Array;
  /** Unsigned IPv4 number (DESIGN §2: the wire int32 `>>> 0`). */
  readonly ip: Uint32Array;
  readonly port: Int32Array;
  /** Unsigned IPv4 number of the reporting agent. */
  readonly caller: Uint32Array;
  readonly succ: Uint32Array;
  readonly err: Uint32Array;
  /** The agent's unix seconds (ServerCallStatus.ts). */
  readonly ts: Uint32Array;
  /** Unix seconds of the minute the reporter received the row in (lars_call_history.minute). */
  readonly minute: Uint32Array;
  /** 1 overloaded, 0 idle. */
  readonly overload: Uint8Array;
  /** The agent's calls to the host since it started (issue 16); -1 when not sent (original agents). */
  readonly totalSucc: Float64Array;
  readonly totalErr: Float64Array;
}

function allocate(rows: number): RowColumns {
  return {
    modid: new Int32Array(rows),
    cmdid: new Int32Array(rows),
    ip: new Uint32Array(rows),
    port: new Int32Array(rows),
    caller: new Uint32Array(rows),
    succ: new Uint32Array(rows),
    err: new Uint32Array(rows),
    ts: new Uint32Array(rows),
    minute: new Uint32Array(rows),
    overload: new Uint8Array(rows),
    totalSucc: new Float64Array(rows),
    totalErr: new Float64Array(rows),
  };
}

const COLUMN_NAMES = [
  'modid',
  'cmdid',
  'ip',
  'port',
  'caller',
  'succ',
  'err',
  'ts',
  'minute',
  'overload',
  'totalSucc',
  'totalErr',
] as const;

/**
 * One writer's pending rows: a bounded FIFO (ring buffer over typed-array columns) that makes room
 * by dropping its OLDEST row. When the database is slow or down the newest statistics are the ones
 * worth keeping: a later row of a host supersedes an earlier one anyway.
 *
 * Rows are numbered by a sequence (`headSeq` is the number of the oldest pending row). A writer
 * reads a batch in place (row-batch.ts) and then removes it with `releaseThrough()`; the queue
 * never holds more than `capacity` rows.
 */
export class RowQueue {
  readonly capacity: number;
  /** Rows dropped to make room since construction. */
  dropped = 0;
  private cols: RowColumns;
  private size: number;
  private head = 0;
  private _length = 0;
  private _headSeq = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new InvalidArgumentError(`row queue capacity ${capacity} must be a positive integer`);
    }
    this.capacity = capacity;
    this.size = Math.min(capacity, INITIAL_ROWS);
    this.cols = allocate(this.size);
  }

  get length(): number {
    return this._length;
  }

  /** Sequence number of the oldest pending row. */
  get headSeq(): number {
    return this._headSeq;
  }

  /** The storage; valid until the next push. */
  get columns(): RowColumns {
    return this.cols;
  }

  /** Storage index of the i-th pending row (0 = oldest); i < length. */
  slot(i: number): number {
    const s = this.head + i;
    return s < this.size ? s : s - this.size;
  }

  /** Appends a row; returns true when the oldest pending row was dropped to make room. */
  push(
    modid: number,
    cmdid: number,
    ip: number,
    port: number,
    caller: number,
    succ: number,
    err: number,
    ts: number,
    minute: number,
    overload: boolean,
    totalSucc = -1,
    totalErr = -1,
  ): boolean {
    let dropped = false;
    if (this._length === this.size) {
      if (this.size < this.capacity) {
        this.grow();
      } else {
        this.head = this.head + 1 === this.size ? 0 : this.head + 1;
        this._length -= 1;
        this._headSeq += 1;
        this.dropped += 1;
        dropped = true;
      }
    }
    const c = this.cols;
    const s = this.slot(this._length);
    c.modid[s] = modid;
    c.cmdid[s] = cmdid;
    c.ip[s] = ip;
    c.port[s] = port;
    c.caller[s] = caller;
    c.succ[s] = succ;
    c.err[s] = err;
    c.ts[s] = ts;
    c.minute[s] = minute;
    c.overload[s] = overload ? 1 : 0;
    c.totalSucc[s] = totalSucc;
    c.totalErr[s] = totalErr;
    this._length += 1;
    return dropped;
  }

  /**
   * Removes every pending row numbered below `endSeq` (a batch read from `headSeq` with `taken` rows
   * passes `headSeq + taken`); rows already dropped are skipped. Returns the number of rows removed.
   */
  releaseThrough(endSeq: number): number {
    const n = Math.min(this._length, endSeq - this._headSeq);
    if (n <= 0) return 0;
    this.head = n === this._length ? 0 : this.slot(n);
    this._length -= n;
    this._headSeq += n;
    return n;
  }

  /** Drops every pending row (counted in `dropped`); returns how many. */
  clear(): number {
    const n = this._length;
    this.dropped += n;
    this._headSeq += n;
    this.head = 0;
    this._length = 0;
    return n;
  }

  private grow(): void {
    const next = Math.min(this.capacity, this.size * 2);
    const fresh = allocate(next);
    const old = this.cols;
    const firstPart = Math.min(this._length, this.size - this.head);
    for (const name of COLUMN_NAMES) {
      const from = old[name];
      const to = fresh[name];
      to.set(from.subarray(this.head, this.head + firstPart), 0);
      if (firstPart < this._length) to.set(from.subarray(0, this._length - firstPart), firstPart);
    }
    this.cols = fresh;
    this.size = next;
    this.head = 0;
  }
}
