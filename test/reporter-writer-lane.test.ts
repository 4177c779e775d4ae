import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClosedError } from '../src/errors.js';
import type { Logger } from '../src/log/logger.js';
import { takeBatch, type BatchRows, type RowBatch } from '../src/reporter/row-batch.js';
import { RowQueue } from '../src/reporter/row-queue.js';
import type { StatusWriter } from '../src/reporter/status-writer.js';
import { WriterLane } from '../src/reporter/writer-lane.js';
import { waitFor } from './helpers/latch.js';

// ---------- helpers ----------

interface LogLine {
  level: string;
  msg: string | undefined;
  obj: Record<string, unknown>;
}

function memoryLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, msg, obj: obj as Record<string, unknown> });
    };
  const logger: Logger = {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: () => logger,
  };
  return { logger, lines };
}

/** Row of a batch as a plain object, for assertions. */
function rowsOf(
  rows: BatchRows,
): Array<{ key: string; succ: number; err: number; time: number; overload: number }> {
  return Array.from({ length: rows.count }, (_, i) => ({
    key: `${rows.modid[i]}/${rows.cmdid[i]} ${rows.ip[i]}:${rows.port[i]} <${rows.caller[i]}>`,
    succ: rows.succ[i]!,
    err: rows.err[i]!,
    time: rows.time[i]!,
    overload: rows.overload[i]!,
  }));
}

/**
 * A StatusWriter the test drives: each write() is recorded and stays pending until the test
 * settles it (ok / fail), so the order of events is fully determined by the test.
 */
class ManualWriter implements StatusWriter {
  readonly batches: RowBatch[] = [];
  private settle: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];

  write(batch: RowBatch): Promise<void> {
    this.batches.push(batch);
    return new Promise((resolve, reject) => this.settle.push({ resolve, reject }));
  }

  get inFlight(): number {
    return this.settle.length;
  }

  async waitWrites(n: number): Promise<void> {
    await waitFor(() => this.batches.length >= n, 5_000, `${n} writes`);
  }

  ok(): void {
    this.settle.shift()!.resolve();
  }

  fail(err: Error = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })): void {
    this.settle.shift()!.reject(err);
  }
}

/** Pushes a row with defaults: route 1/1, caller 9, ts 100, minute 60. */
function push(
  target: { enqueue: WriterLane['enqueue'] } | RowQueue,
  r: Partial<{
    modid: number;
    cmdid: number;
    ip: number;
    port: number;
    caller: number;
    succ: number;
    err: number;
    ts: number;
    minute: number;
    overload: boolean;
  }>,
): void {
  const args = [
    r.modid ?? 1,
    r.cmdid ?? 1,
    r.ip ?? 1,
    r.port ?? 80,
    r.caller ?? 9,
    r.succ ?? 0,
    r.err ?? 0,
    r.ts ?? 100,
    r.minute ?? 60,
    r.overload ?? false,
  ] as const;
  if (target instanceof RowQueue) target.push(...args);
  else target.enqueue(...args);
}

const lanes: WriterLane[] = [];
afterEach(() => {
  vi.useRealTimers();
  for (const l of lanes.splice(0)) l.destroy();
});

function lane(
  writer: StatusWriter,
  opts: { queueMaxRows?: number; batchMaxRows?: number; logger?: Logger } = {},
): WriterLane {
  const l = new WriterLane({
    index: 0,
    writer,
    queueMaxRows: opts.queueMaxRows ?? 1000,
    batchMaxRows: opts.batchMaxRows ?? 100,
    logger: opts.logger ?? memoryLogger().logger,
    backoff: { initialMs: 100, maxMs: 400, jitter: 0 },
  });
  lanes.push(l);
  return l;
}

// ---------- RowQueue ----------

describe('RowQueue', () => {
  it('keeps FIFO order across growth and wrap-around', () => {
    const q = new RowQueue(5000);
    let next = 0;
    let expected = 0;
    // Interleave pushes and releases so the ring wraps before and after it grows.
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 300; i++) push(q, { succ: next++ });
      const release = 200;
      const first = q.headSeq;
      for (let i = 0; i < release; i++) {
        expect(q.columns.succ[q.slot(i)]).toBe(expected + i);
      }
      expect(q.releaseThrough(first + release)).toBe(release);
      expected += release;
    }
    expect(q.length).toBe(20 * 100);
    for (let i = 0; i < q.length; i++) expect(q.columns.succ[q.slot(i)]).toBe(expected + i);
    expect(q.dropped).toBe(0);
  });

  it('drops the oldest row when full and counts it', () => {
    const q = new RowQueue(3);
    for (let i = 0; i < 3; i++) push(q, { succ: i });
    expect(q.push(1, 1, 1, 80, 9, 3, 0, 100, 60, false)).toBe(true);
    expect(q.push(1, 1, 1, 80, 9, 4, 0, 100, 60, false)).toBe(true);
    expect(q.length).toBe(3);
    expect(q.dropped).toBe(2);
    expect(q.headSeq).toBe(2);
    expect([0, 1, 2].map((i) => q.columns.succ[q.slot(i)])).toEqual([2, 3, 4]);
  });

  it('releases a batch read before drops without releasing newer rows', () => {
    const q = new RowQueue(4);
    for (let i = 0; i < 4; i++) push(q, { succ: i });
    const first = q.headSeq;
    const taken = 3; // a writer read rows 0..2 and is writing them
    for (let i = 4; i < 7; i++) push(q, { succ: i }); // drops rows 0, 1, 2 meanwhile
    expect(q.releaseThrough(first + taken)).toBe(0);
    expect([0, 1, 2, 3].map((i) => q.columns.succ[q.slot(i)])).toEqual([3, 4, 5, 6]);
    expect(q.clear()).toBe(4);
    expect(q.dropped).toBe(3 + 4);
  });
});

// ---------- takeBatch ----------

describe('takeBatch', () => {
  it('keeps the latest values of each key, one history sample per minute, sorted by key; reads without removing', () => {
    const q = new RowQueue(100);
    push(q, { modid: 2, ip: 5, succ: 1, minute: 60 });
    push(q, { modid: 1, ip: 7, succ: 10, minute: 60 });
    push(q, { modid: 2, ip: 5, succ: 2, err: 1, minute: 60 });
    push(q, { modid: 2, ip: 5, succ: 3, err: 1, minute: 120, overload: true });
    push(q, { modid: 1, ip: 7, succ: 11, minute: 60, caller: 8 });
    const batch = takeBatch(q, 100);
    expect(batch.taken).toBe(5);
    expect(batch.firstSeq).toBe(0);
    expect(q.length).toBe(5);
    expect(rowsOf(batch.status)).toEqual([
      { key: '1/1 7:80 <8>', succ: 11, err: 0, time: 100, overload: 0 },
      { key: '1/1 7:80 <9>', succ: 10, err: 0, time: 100, overload: 0 },
      { key: '2/1 5:80 <9>', succ: 3, err: 1, time: 100, overload: 1 },
    ]);
    expect(rowsOf(batch.history)).toEqual([
      { key: '1/1 7:80 <8>', succ: 11, err: 0, time: 60, overload: 0 },
      { key: '1/1 7:80 <9>', succ: 10, err: 0, time: 60, overload: 0 },
      { key: '2/1 5:80 <9>', succ: 2, err: 1, time: 60, overload: 0 },
      { key: '2/1 5:80 <9>', succ: 3, err: 1, time: 120, overload: 1 },
    ]);
  });

  it('takes at most maxRows of the oldest rows', () => {
    const q = new RowQueue(100);
    for (let i = 0; i < 10; i++) push(q, { ip: i, succ: i });
    const batch = takeBatch(q, 4);
    expect(batch.taken).toBe(4);
    expect(rowsOf(batch.status).map((r) => r.succ)).toEqual([0, 1, 2, 3]);
  });
});

// ---------- WriterLane ----------

describe('WriterLane', () => {
  it('writes rows in arrival order, one batch in flight, later batches carrying what arrived meanwhile', async () => {
    const w = new ManualWriter();
    const l = lane(w);
    push(l, { succ: 1 });
    await w.waitWrites(1);
    // While batch 1 is in flight, three more values of the same key and a new key arrive.
    push(l, { succ: 2 });
    push(l, { succ: 3 });
    push(l, { ip: 2, succ: 7 });
    push(l, { succ: 4 });
    expect(w.inFlight).toBe(1);
    expect(l.depth).toBe(5);
    w.ok();
    await w.waitWrites(2);
    expect(rowsOf(w.batches[0]!.status).map((r) => r.succ)).toEqual([1]);
    expect(rowsOf(w.batches[1]!.status).map((r) => [r.key, r.succ])).toEqual([
      ['1/1 1:80 <9>', 4],
      ['1/1 2:80 <9>', 7],
    ]);
    expect(w.batches[1]!.taken).toBe(4);
    w.ok();
    await l.drain();
    expect(l.depth).toBe(0);
    expect(l.stats).toMatchObject({
      rowsIn: 5,
      rowsCommitted: 5,
      statusRows: 3,
      batches: 2,
      failures: 0,
      dropped: 0,
    });
  });

  it('keeps rows queued while the database fails, retries with backoff, logs the outage and recovery once', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { logger, lines } = memoryLogger();
    const w = new ManualWriter();
    const l = lane(w, { logger });
    push(l, { succ: 1 });
    await w.waitWrites(1);
    w.fail();
    await waitFor(() => l.dbState === 'failing');
    push(l, { succ: 2 });
    // Backoff 100, 200, 400, 400 ms (jitter 0): no write before each delay has passed.
    for (const [i, delay] of [100, 200, 400, 400].entries()) {
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(w.batches.length).toBe(1 + i);
      await vi.advanceTimersByTimeAsync(1);
      await w.waitWrites(2 + i);
      if (i < 3) w.fail();
    }
    // Every retry carries the failed batch again; the row that arrived meanwhile waits behind it.
    expect(w.batches.map((b) => rowsOf(b.status).map((r) => r.succ))).toEqual([[1], [1], [1], [1], [1]]);
    w.ok();
    await w.waitWrites(6);
    expect(rowsOf(w.batches[5]!.status).map((r) => r.succ)).toEqual([2]);
    w.ok();
    await l.drain();
    expect(l.dbState).toBe('ok');
    expect(l.stats).toMatchObject({ failures: 4, rowsCommitted: 2, dropped: 0 });
    expect(lines.filter((x) => x.level === 'warn').map((x) => x.msg)).toEqual([
      expect.stringContaining('database write failed'),
    ]);
    expect(lines.filter((x) => x.level === 'info').map((x) => x.msg)).toEqual(['database writes resumed']);
    // After recovery the backoff starts again from its first delay.
    push(l, { succ: 3 });
    await w.waitWrites(7);
    w.fail();
    await waitFor(() => l.dbState === 'failing');
    await vi.advanceTimersByTimeAsync(99);
    expect(w.batches).toHaveLength(7);
    await vi.advanceTimersByTimeAsync(1);
    await w.waitWrites(8);
    w.ok();
    await l.drain();
  });

  it('bounded: drops the oldest queued rows when full, counts them, warns once per crossing, writes the newest', async () => {
    const { logger, lines } = memoryLogger();
    const w = new ManualWriter();
    const l = lane(w, { queueMaxRows: 100, batchMaxRows: 50, logger });
    push(l, { ip: 0, succ: 0 });
    await w.waitWrites(1); // stuck in flight: the database is slow
    for (let i = 1; i <= 1000; i++) push(l, { ip: i, succ: i });
    expect(l.queued).toBe(100);
    expect(l.depth).toBe(101); // plus the batch in flight
    expect(l.stats.dropped).toBe(900);
    expect(lines.filter((x) => x.level === 'warn')).toHaveLength(1);
    expect(lines[0]!.msg).toContain('writer queue full');
    w.ok(); // the batch in flight commits; then the newest 100 rows, 50 a batch
    await w.waitWrites(2);
    w.ok();
    await w.waitWrites(3);
    w.ok();
    await l.drain();
    const written = w.batches.flatMap((b) => rowsOf(b.status).map((r) => r.succ));
    expect(written).toEqual([0, ...Array.from({ length: 100 }, (_, i) => 901 + i)]);
    // Every row is counted once: committed or dropped.
    expect(l.stats.rowsCommitted + l.stats.dropped).toBe(l.stats.rowsIn);
    expect(lines.filter((x) => x.level === 'info').map((x) => x.msg)).toEqual([
      'writer queue below half capacity again',
    ]);
    // A second overflow is a second crossing: one more warning.
    push(l, { succ: 0 });
    await w.waitWrites(4);
    for (let i = 0; i < 200; i++) push(l, { ip: i, succ: i });
    expect(lines.filter((x) => x.level === 'warn')).toHaveLength(2);
    w.ok();
    await w.waitWrites(5);
    w.ok();
    await w.waitWrites(6);
    w.ok();
    await l.drain();
    expect(l.stats.rowsCommitted + l.stats.dropped).toBe(l.stats.rowsIn);
  });

  it('retries a deadlocked batch at once without declaring the database down', async () => {
    const w = new ManualWriter();
    const l = lane(w);
    push(l, { succ: 1 });
    await w.waitWrites(1);
    w.fail(
      Object.assign(new Error('Deadlock found when trying to get lock'), {
        errno: 1213,
        code: 'ER_LOCK_DEADLOCK',
      }),
    );
    await w.waitWrites(2);
    expect(l.dbState).toBe('ok');
    w.ok();
    await l.drain();
    expect(l.stats).toMatchObject({ conflictRetries: 1, failures: 0, rowsCommitted: 1 });
  });

  it('destroy() discards pending rows (counted) and is idempotent; drain() after it rejects', async () => {
    const w = new ManualWriter();
    const l = lane(w);
    push(l, { succ: 1 });
    await w.waitWrites(1);
    push(l, { succ: 2 });
    expect(l.destroy()).toBe(2);
    expect(l.destroy()).toBe(0);
    push(l, { succ: 3 });
    expect(l.stats.dropped).toBe(3);
    await expect(l.drain()).rejects.toBeInstanceOf(ClosedError);
    w.ok(); // a write that completes after destroy changes nothing
    expect(l.depth).toBe(0);
  });
});

describe('WriterLane.stop() (drain deadline, issue 11)', () => {
  it('lets the batch in flight finish, drops what is queued, counts every row once', async () => {
    const w = new ManualWriter();
    const l = lane(w, { batchMaxRows: 10 });
    for (let i = 0; i < 10; i++) push(l, { ip: i });
    await w.waitWrites(1);
    for (let i = 10; i < 25; i++) push(l, { ip: i });
    const stopping = l.stop();
    push(l, { ip: 99 }); // arrives while stopping: dropped, counted
    w.ok();
    expect(await stopping).toBe(16);
    expect(l.stats).toMatchObject({ rowsIn: 26, rowsCommitted: 10, dropped: 16 });
    expect(l.depth).toBe(0);
    expect(w.batches.length).toBe(1);
    expect(await l.stop()).toBe(0);
  });

  it('drops a batch that fails while stopping, and one waiting for its retry', async () => {
    const w = new ManualWriter();
    const l = lane(w, { batchMaxRows: 10 });
    for (let i = 0; i < 5; i++) push(l, { ip: i });
    await w.waitWrites(1);
    const stopping = l.stop();
    w.fail();
    expect(await stopping).toBe(5);
    expect(l.stats).toMatchObject({ rowsIn: 5, rowsCommitted: 0, dropped: 5 });

    const w2 = new ManualWriter();
    const l2 = lane(w2, { batchMaxRows: 10 });
    for (let i = 0; i < 5; i++) push(l2, { ip: i });
    await w2.waitWrites(1);
    w2.fail();
    await waitFor(() => l2.dbState === 'failing', 5_000, 'in backoff');
    push(l2, { ip: 7 });
    expect(await l2.stop()).toBe(6);
    expect(l2.stats).toMatchObject({ rowsIn: 6, rowsCommitted: 0, dropped: 6 });
    expect(w2.batches.length).toBe(1); // never retried
  });
});
