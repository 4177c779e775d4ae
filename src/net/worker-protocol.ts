/**
 * Messages between WorkerPool (main thread) and serveTasks (worker thread). Private to the pair;
 * kept in one file so both sides agree on the shapes.
 */
export interface TaskRequest {
  readonly id: number;
  readonly name: string;
  readonly payload: unknown;
}

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly code?: string | undefined;
  readonly stack?: string | undefined;
}

export type TaskReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: SerializedError };

/** Sent once by serveTasks when its handler is installed: the worker's script has loaded. */
export interface WorkerReady {
  readonly ready: true;
}

export type WorkerMessage = TaskReply | WorkerReady;
