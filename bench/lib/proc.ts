import { fork, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { ClosedError, TimeoutError } from '../../src/errors.js';

/**
 * Child-process orchestration for benchmarks: the parent forks copies of the same compiled script in
 * another role (server, client) and talks to them over the IPC channel, so each side of a network
 * benchmark gets its own process (and core) as in production.
 */

/** A message on the bench IPC channel; `type` discriminates. */
export interface BenchMessage {
  type: string;
  [key: string]: unknown;
}

/** Forks `script` with `args` (and node flags `execArgv`); stdout/stderr are inherited so children can report failures. */
export function forkRole(
  script: string,
  args: readonly string[],
  execArgv: readonly string[] = [],
): ChildProcess {
  const child = fork(script, [...args], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    ...(execArgv.length ? { execArgv: [...execArgv] } : {}),
  });
  // A bench parent that dies must not leave busy children behind.
  const kill = (): void => {
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  child.on('error', (err) => process.stderr.write(`bench child ${child.pid}: ${err.message}\n`));
  child.once('exit', () => process.off('exit', kill));
  return child;
}

/** Resolves with the next message of `type` from `child`; rejects on exit or after `timeoutMs`. */
export function nextMessage<T extends BenchMessage>(
  child: ChildProcess,
  type: string,
  timeoutMs: number,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new TimeoutError(`bench child ${child.pid}: no '${type}' message within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (m: BenchMessage): void => {
      if (m && m.type === type) {
        cleanup();
        resolve(m as T);
      }
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new ClosedError(`bench child ${child.pid} exited (code ${code}) before sending '${type}'`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Asks a child to stop (a `{type:'stop'}` message), then kills it if it has not exited in time. */
export async function stopChild(child: ChildProcess, timeoutMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // The child may be exiting on its own already: a failed send is not an error here.
  if (child.connected) child.send({ type: 'stop' }, () => {});
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** In a child: sends a message to the parent (no-op without an IPC channel). */
export function tellParent(message: BenchMessage): void {
  process.send?.(message);
}

/** In a child: resolves when the parent sends `{type}` (one of `types`), or disconnects. */
export function fromParent<T extends BenchMessage>(type: string | readonly string[]): Promise<T> {
  const types = typeof type === 'string' ? [type] : type;
  return new Promise((resolve) => {
    const done = (m: BenchMessage): void => {
      process.off('message', onMessage);
      process.off('disconnect', onDisconnect);
      resolve(m as T);
    };
    const onMessage = (m: BenchMessage): void => {
      if (m && types.includes(m.type)) done(m);
    };
    const onDisconnect = (): void => done({ type: types[0] as string });
    process.on('message', onMessage);
    process.once('disconnect', onDisconnect);
  });
}

/**
 * In a child: waits for the parent's `measure`, calls `onStart`, and returns the milliseconds until
 * the parent's `stop` (the measured window of a role).
 */
export async function measured(onStart: () => void): Promise<number> {
  await fromParent('measure');
  onStart();
  const t0 = performance.now();
  await fromParent('stop');
  return performance.now() - t0;
}

/** One line naming the machine and runtime, printed next to results (STYLE §16). */
export function machineLine(): string {
  const cpu = cpus();
  return `node ${process.version}, ${process.platform}/${process.arch}, ${cpu.length} x ${cpu[0]?.model.trim() ?? 'unknown cpu'}`;
}

/** In a child: a busy loop (another tenant's CPU-heavy work) until the parent goes away. */
export function runBusyLoop(): void {
  process.on('disconnect', () => process.exit(0));
  const spin = (): void => {
    const until = Date.now() + 50;
    while (Date.now() < until);
    setImmediate(spin);
  };
  spin();
}
