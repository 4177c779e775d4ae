import { Worker, type TransferListItem } from 'node:worker_threads';
import { ClosedError, InvalidArgumentError, QueueFullError, WorkerError } from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { tracer } from '../log/trace.js';
import { Backoff } from './backoff.js';
import type { SerializedError, TaskRequest, WorkerMessage } from './worker-protocol.js';

const trace = tracer('net');

/** Tasks one worker runs at a time unless told otherwise: CPU-bound tasks gain nothing from more. */
export const DEFAULT_WORKER_CONCURRENCY = 1;

export interface WorkerPoolOptions {
  /** Worker script (a file URL or an absolute path) that calls serveTasks(). */
  script: URL | string;
  /** Number of worker threads. */
  size: number;
  /** Tasks waiting for a free worker; past it run() rejects with QueueFullError. */
  maxQueue: number;
  /** Tasks handed to one worker at once. Default 1. */
  concurrency?: number;
  workerData?: unknown;
  /** Passed to each Worker (e.g. a loader for TypeScript worker scripts in tests). */
  execArgv?: string[];
  logger?: Logger;
}

export interface WorkerPoolStats {
  submitted: number;
  completed: number;
  /** Tasks that threw, or were lost with their worker. */
  failed: number;
  rejectedFull: number;
  queued: number;
  running: number;
  workersStarted: number;
  workerDeaths: number;
}

interface Task {
  readonly id: number;
  readonly name: string;
  readonly payload: unknown;
  readonly transfer: readonly TransferListItem[] | undefined;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

interface Slot {
  readonly worker: Worker;
  readonly tasks: Map<number, Task>;
  ready: boolean;
  exited: boolean;
  lastError: Error | undefined;
}

/**
 * A fixed-size pool of worker_threads running named tasks (served by serveTasks() in the script).
 *
 * Dispatch: a task goes to the least-busy worker that is below `concurrency`; ties go round-robin
 * from after the last pick, so equal workers take turns. (The original C++ framework's thread-pool
 * dispatcher never advanced its index and one thread did all the work: DESIGN §8.) When every
 * worker is full the task waits in a FIFO queue bounded by `maxQueue`; past it run() rejects with
 * QueueFullError at once.
 *
 * Failures: a task that throws rejects with WorkerError (cause: the worker's error, code kept) and
 * the worker keeps serving. A worker that dies rejects each of its in-flight tasks with WorkerError
 * and is replaced; a worker that dies before serveTasks() reported ready (broken script) is replaced
 * after a backoff delay, and queued tasks are rejected while no worker is ready, so a broken script cannot
 * hang callers.
 *
 * Lifecycle: close() stops accepting (run() rejects with ClosedError), lets queued and running tasks
 * finish, then terminates the workers. destroy() terminates at once and rejects everything with
 * ClosedError. Both idempotent. Idle workers are unref()'d, so a pool with no work never keeps the
 * process alive.
 */
export class WorkerPool {
  readonly stats: WorkerPoolStats = {
    submitted: 0,
    completed: 0,
    failed: 0,
    rejectedFull: 0,
    queued: 0,
    running: 0,
    workersStarted: 0,
    workerDeaths: 0,
  };

  private readonly options: WorkerPoolOptions;
  private readonly logger: Logger;
  private readonly concurrency: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private readonly respawnBackoff = new Backoff({ initialMs: 100, maxMs: 5_000, jitter: 0.2 });
  private readonly respawnTimers = new Set<NodeJS.Timeout>();
  private readyWaiters: { resolve(): void; reject(err: Error): void }[] = [];
  private nextTaskId = 1;
  private nextPick = 0;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private closing: Promise<void> | undefined;
  private resolveClosing: (() => void) | undefined;

  constructor(options: WorkerPoolOptions) {
    if (!Number.isInteger(options.size) || options.size < 1) {
      throw new InvalidArgumentError(`worker pool size ${options.size} must be a positive integer`);
    }
    if (!Number.isInteger(options.maxQueue) || options.maxQueue < 0) {
      throw new InvalidArgumentError(
        `worker pool maxQueue ${options.maxQueue} must be a non-negative integer`,
      );
    }
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.concurrency = options.concurrency ?? DEFAULT_WORKER_CONCURRENCY;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new InvalidArgumentError(`worker concurrency ${this.concurrency} must be a positive integer`);
    }
    for (let i = 0; i < options.size; i++) this.spawn();
  }

  /** Thread ids of the current workers. */
  get threadIds(): number[] {
    return this.slots.map((s) => s.worker.threadId);
  }

  /**
   * Resolves once every worker thread is ready (its script loaded and called serveTasks()). Optional: run() works before,
   * tasks simply wait for their worker. Rejects with WorkerError if the script fails to start, or
   * ClosedError when the pool closes first.
   */
  ready(): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new ClosedError('worker pool is closed'));
    if (this.slots.every((s) => s.ready)) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Runs `name(payload)` on a worker. Never throws: failures are rejections (see class comment). */
  run<R = unknown>(name: string, payload?: unknown, transfer?: readonly TransferListItem[]): Promise<R> {
    if (this.state !== 'open') return Promise.reject(new ClosedError('worker pool is closed'));
    const slot = this.pick();
    if (slot === undefined && this.queue.length >= this.options.maxQueue) {
      this.stats.rejectedFull += 1;
      return Promise.reject(
        new QueueFullError(
          `worker pool queue is full (${this.queue.length} waiting, max ${this.options.maxQueue})`,
        ),
      );
    }
    this.stats.submitted += 1;
    return new Promise<R>((resolve, reject) => {
      const task: Task = {
        id: this.nextTaskId++,
        name,
        payload,
        transfer,
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      if (slot !== undefined) {
        this.assign(slot, task);
      } else {
        this.queue.push(task);
        this.stats.queued = this.queue.length;
      }
    });
  }

  /** Graceful: finishes queued and running tasks, then terminates the workers. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = new Promise((resolve) => {
      this.resolveClosing = resolve;
    });
    this.state = 'closing';
    this.maybeFinishClose();
    return this.closing;
  }

  /** Abortive: terminates the workers now; queued and running tasks reject with ClosedError. */
  destroy(): Promise<void> {
    const done = this.close();
    if (this.state === 'closed') return done;
    const err = new ClosedError('worker pool destroyed');
    for (const t of this.queue.splice(0)) t.reject(err);
    this.stats.queued = 0;
    for (const slot of this.slots) {
      for (const t of slot.tasks.values()) t.reject(err);
      slot.tasks.clear();
    }
    this.stats.running = 0;
    this.finish();
    return done;
  }

  private maybeFinishClose(): void {
    if (this.state !== 'closing' || this.queue.length > 0) return;
    for (const slot of this.slots) if (slot.tasks.size > 0) return;
    this.finish();
  }

  private finish(): void {
    this.state = 'closed';
    const closedErr = new ClosedError('worker pool closed before its workers were ready');
    for (const w of this.readyWaiters.splice(0)) w.reject(closedErr);
    for (const t of this.respawnTimers) clearTimeout(t);
    this.respawnTimers.clear();
    const slots = this.slots.splice(0);
    for (const s of slots) s.exited = true;
    void Promise.all(slots.map((s) => s.worker.terminate().catch(() => undefined))).then(() => {
      this.logger.debug({}, 'worker pool closed');
      this.resolveClosing?.();
    });
  }

  /** Least-busy worker with room; ties broken round-robin starting after the previous pick. */
  private pick(): Slot | undefined {
    const n = this.slots.length;
    let best: Slot | undefined;
    let bestIndex = 0;
    for (let k = 0; k < n; k++) {
      const i = (this.nextPick + k) % n;
      const s = this.slots[i]!;
      if (!s.ready && s.tasks.size > 0) continue; // a starting worker gets one task to begin with
      const busy = s.tasks.size;
      if (busy >= this.concurrency) continue;
      if (best === undefined || busy < best.tasks.size) {
        best = s;
        bestIndex = i;
        if (busy === 0) break;
      }
    }
    if (best !== undefined) this.nextPick = (bestIndex + 1) % n;
    return best;
  }

  private assign(slot: Slot, task: Task): void {
    if (slot.tasks.size === 0) slot.worker.ref();
    slot.tasks.set(task.id, task);
    this.stats.running += 1;
    const req: TaskRequest = { id: task.id, name: task.name, payload: task.payload };
    try {
      slot.worker.postMessage(req, task.transfer);
    } catch (err) {
      // The payload could not be cloned: the task's fault, not the worker's.
      slot.tasks.delete(task.id);
      this.stats.running -= 1;
      if (slot.tasks.size === 0) slot.worker.unref();
      this.stats.failed += 1;
      task.reject(new WorkerError(`task ${task.name}: payload cannot be sent to a worker`, { cause: err }));
    }
  }

  private pump(): void {
    while (this.queue.length > 0 && this.state !== 'closed') {
      const slot = this.pick();
      if (slot === undefined) break;
      this.assign(slot, this.queue.shift()!);
    }
    this.stats.queued = this.queue.length;
  }

  private spawn(): void {
    const worker = new Worker(this.options.script, {
      workerData: this.options.workerData,
      ...(this.options.execArgv ? { execArgv: this.options.execArgv } : {}),
    });
    worker.unref();
    const slot: Slot = { worker, tasks: new Map(), ready: false, exited: false, lastError: undefined };
    this.slots.push(slot);
    this.stats.workersStarted += 1;
    worker.on('message', (msg: WorkerMessage) => {
      if ('ready' in msg) this.onReady(slot);
      else this.onReply(slot, msg);
    });
    worker.on('error', (err) => {
      slot.lastError = err;
    });
    worker.on('exit', (code) => this.onExit(slot, code));
    trace?.(`worker ${worker.threadId} started`);
  }

  /** serveTasks() is installed in this worker: its script loaded. */
  private onReady(slot: Slot): void {
    slot.ready = true;
    this.respawnBackoff.reset();
    if (this.slots.every((s) => s.ready)) for (const w of this.readyWaiters.splice(0)) w.resolve();
    this.pump();
  }

  private onReply(slot: Slot, reply: Exclude<WorkerMessage, { ready: true }>): void {
    const task = slot.tasks.get(reply.id);
    if (task === undefined) return;
    slot.tasks.delete(reply.id);
    this.stats.running -= 1;
    if (slot.tasks.size === 0) slot.worker.unref();
    if (reply.ok) {
      this.stats.completed += 1;
      task.resolve(reply.result);
    } else {
      this.stats.failed += 1;
      task.reject(
        new WorkerError(`task ${task.name} failed: ${reply.error.message}`, { cause: revive(reply.error) }),
      );
    }
    this.pump();
    this.maybeFinishClose();
  }

  private onExit(slot: Slot, code: number): void {
    if (slot.exited) return; // terminated by us
    slot.exited = true;
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    if (this.nextPick >= this.slots.length) this.nextPick = 0;
    this.stats.workerDeaths += 1;
    const threadId = slot.worker.threadId;
    const cause = slot.lastError;
    this.logger.error({ threadId, code, err: cause }, 'worker thread died: replacing it');
    for (const t of slot.tasks.values()) {
      this.stats.failed += 1;
      this.stats.running -= 1;
      t.reject(
        new WorkerError(`worker thread ${threadId} died (exit code ${code}) while running task ${t.name}`, {
          cause,
        }),
      );
    }
    slot.tasks.clear();
    if (this.state === 'closed') return;
    if (slot.ready) {
      this.spawn();
    } else {
      // Died before serveTasks() was ready: the script itself is broken. Retry later, and do not let queued
      // callers wait on workers that may never start.
      const err = new WorkerError(`worker script failed to start (exit code ${code})`, { cause });
      for (const w of this.readyWaiters.splice(0)) w.reject(err);
      if (!this.slots.some((s) => s.ready)) {
        for (const t of this.queue.splice(0)) {
          this.stats.failed += 1;
          t.reject(err);
        }
        this.stats.queued = 0;
      }
      const t = setTimeout(() => {
        this.respawnTimers.delete(t);
        if (this.state !== 'closed') this.spawn();
      }, this.respawnBackoff.next());
      t.unref();
      this.respawnTimers.add(t);
    }
    this.pump();
    this.maybeFinishClose();
  }
}

function revive(e: SerializedError): Error {
  const err = new Error(e.message) as Error & { code?: string };
  err.name = e.name;
  if (e.code !== undefined) err.code = e.code;
  if (e.stack !== undefined) err.stack = e.stack;
  return err;
}
