import { isMainThread, parentPort, type MessagePort } from 'node:worker_threads';
import { InvalidArgumentError } from '../errors.js';
import type { SerializedError, TaskReply, TaskRequest, WorkerReady } from './worker-protocol.js';

/** A task function run on a worker thread. The result must be structured-cloneable. */
export type TaskFn = (payload: never) => unknown;

/**
 * Worker-side half of WorkerPool: call it once at the top of a worker script with the tasks it
 * serves. Each request runs `tasks[name](payload)`; a thrown error or rejected promise is sent back
 * (name, message, code, stack) and the pool rejects that task with WorkerError; the worker keeps
 * serving. An unknown task name is such an error too.
 *
 *     // my-worker.ts
 *     serveTasks({ hash: (s: string) => sha256(s) });
 */
export function serveTasks(tasks: Readonly<Record<string, TaskFn>>): void {
  const port = parentPort;
  if (isMainThread || port === null) {
    throw new InvalidArgumentError('serveTasks() must be called from a worker thread started by WorkerPool');
  }
  port.on('message', (req: TaskRequest) => {
    const fn = Object.prototype.hasOwnProperty.call(tasks, req.name) ? tasks[req.name] : undefined;
    if (fn === undefined) {
      port.postMessage(
        failure(req.id, new InvalidArgumentError(`worker has no task named ${JSON.stringify(req.name)}`)),
      );
      return;
    }
    let result: unknown;
    try {
      result = fn(req.payload as never);
    } catch (err) {
      port.postMessage(failure(req.id, err));
      return;
    }
    if (
      result !== null &&
      typeof result === 'object' &&
      typeof (result as Promise<unknown>).then === 'function'
    ) {
      (result as Promise<unknown>).then(
        (value) => succeed(port, req.id, value),
        (err: unknown) => port.postMessage(failure(req.id, err)),
      );
      return;
    }
    succeed(port, req.id, result);
  });
  port.postMessage({ ready: true } satisfies WorkerReady);
}

function succeed(port: MessagePort, id: number, result: unknown): void {
  try {
    port.postMessage({ id, ok: true, result } satisfies TaskReply);
  } catch (err) {
    // A result that cannot be cloned is the task's failure, not a reason to kill the worker.
    port.postMessage(failure(id, err));
  }
}

function failure(id: number, err: unknown): TaskReply {
  const e = err as { name?: unknown; message?: unknown; code?: unknown; stack?: unknown } | null;
  const error: SerializedError = {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    message: typeof e?.message === 'string' ? e.message : String(err),
    code: typeof e?.code === 'string' ? e.code : undefined,
    stack: typeof e?.stack === 'string' ? e.stack : undefined,
  };
  return { id, ok: false, error };
}
