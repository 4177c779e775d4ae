import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, WorkerError } from '../src/errors.js';
import { serveTasks, WorkerPool, type WorkerPoolOptions } from '../src/net/index.js';
import { waitFor } from './helpers/latch.js';

// A plain .mjs worker that loads serveTasks from the TypeScript sources via test-only hooks.
const script = new URL('./fixtures/net-worker.mjs', import.meta.url);

const pools: WorkerPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.destroy()));
});

function pool(opts: Partial<WorkerPoolOptions> = {}): WorkerPool {
  const p = new WorkerPool({ script, size: 2, maxQueue: 100, ...opts });
  pools.push(p);
  return p;
}

type Spin = { threadId: number; x: number };

describe('WorkerPool', () => {
  it('spreads CPU-bound tasks over both workers (no timing asserted)', async () => {
    const p = pool({ size: 2 });
    // Both threads online first: otherwise the one that boots faster rightly takes everything.
    await p.ready();
    const N = 40;
    const results = await Promise.all(Array.from({ length: N }, () => p.run<Spin>('spin', 3_000_000)));
    const perThread = new Map<number, number>();
    for (const r of results) perThread.set(r.threadId, (perThread.get(r.threadId) ?? 0) + 1);
    // Every worker took work (the exact split depends on how the OS schedules the two threads).
    expect([...perThread.keys()].sort()).toEqual([...p.threadIds].sort());
    expect(p.stats).toMatchObject({ submitted: N, completed: N, failed: 0, running: 0, queued: 0 });
  });

  it('runs two tasks at the same time on two different threads', async () => {
    const p = pool({ size: 2 });
    await p.ready();
    const sab = new SharedArrayBuffer(8);
    const flags = new Int32Array(sab);
    const both = [p.run<Spin>('block', { sab }), p.run<Spin>('block', { sab })];
    // Both tasks are inside their workers at once (neither can finish before the release).
    await waitFor(() => Atomics.load(flags, 1) === 2, 10_000, 'both tasks running');
    Atomics.store(flags, 0, 1);
    Atomics.notify(flags, 0);
    const ids = (await Promise.all(both)).map((r) => r.threadId);
    expect(new Set(ids).size).toBe(2);
  });

  it('alternates between idle workers for tasks submitted one at a time', async () => {
    const p = pool({ size: 2 });
    const ids: number[] = [];
    for (let i = 0; i < 6; i++) ids.push(await p.run<number>('threadId'));
    expect(new Set(ids).size).toBe(2);
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('rejects with QueueFullError once the bounded queue is full', async () => {
    const p = pool({ size: 1, maxQueue: 2 });
    const accepted = [p.run('spin', 1000), p.run('spin', 1000), p.run('spin', 1000)]; // 1 running, 2 queued
    await expect(p.run('spin', 1000)).rejects.toMatchObject({ code: ErrorCode.QUEUE_FULL });
    expect(p.stats.rejectedFull).toBe(1);
    await Promise.all(accepted);
  });

  it('a throwing task rejects with WorkerError (cause keeps name and code); the worker keeps serving', async () => {
    const p = pool({ size: 1 });
    const err = await p.run('fail', 'bad input').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerError);
    expect((err as WorkerError).code).toBe(ErrorCode.WORKER);
    expect((err as Error).cause).toMatchObject({ name: 'RangeError', message: 'bad input', code: 'E_TASK' });
    await expect(p.run('nope')).rejects.toBeInstanceOf(WorkerError);
    await expect(p.run('unclonable')).rejects.toBeInstanceOf(WorkerError);
    await expect(p.run('echo', { a: [1, 2] })).resolves.toEqual({ a: [1, 2] });
    expect(p.stats.workerDeaths).toBe(0);
  });

  it('a dying worker rejects its in-flight task with WorkerError and is replaced', async () => {
    const p = pool({ size: 2 });
    const before = p.threadIds;
    const err = await p.run('crash').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerError);
    expect((err as Error).message).toMatch(/died/);
    expect(p.stats.workerDeaths).toBe(1);
    const results = await Promise.all(Array.from({ length: 10 }, () => p.run<Spin>('spin', 100_000)));
    expect(results).toHaveLength(10);
    expect(p.threadIds).toHaveLength(2);
    expect(p.threadIds.filter((id) => !before.includes(id))).toHaveLength(1);
  });

  it('close() finishes queued tasks then terminates; run() afterwards rejects with ClosedError', async () => {
    const p = pool({ size: 1 });
    const tasks = Array.from({ length: 5 }, (_, i) => p.run('later', i));
    const closing = p.close();
    expect(p.close()).toBe(closing);
    await expect(p.run('echo', 1)).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    const done = await Promise.all(tasks);
    expect(done.map((d) => (d as { payload: number }).payload)).toEqual([0, 1, 2, 3, 4]);
    await closing;
    await p.destroy();
  });

  it('destroy() terminates now and rejects queued and running tasks with ClosedError', async () => {
    const p = pool({ size: 1 });
    const running = expect(p.run('spin', 2_000_000_000)).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    const queued = expect(p.run('echo', 1)).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    await p.destroy();
    await running;
    await queued;
    await p.destroy();
  });

  it('ready() rejects with WorkerError when the script cannot start, and queued work is not left hanging', async () => {
    const p = pool({ size: 1, script: new URL('./fixtures/net-missing-worker.mjs', import.meta.url) });
    const task = p.run('echo', 1);
    await expect(p.ready()).rejects.toBeInstanceOf(WorkerError);
    await expect(task).rejects.toBeInstanceOf(WorkerError);
  });

  it('serveTasks refuses to run on the main thread', () => {
    expect(() => serveTasks({})).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
  });
});
