import { readFileSync, statSync } from 'node:fs';

/** What the daemon reads about a client process from /proc and kill(2). */

export function processUid(pid: number): number | undefined {
  try {
    return statSync(`/proc/${pid}`).uid;
  } catch {
    return undefined;
  }
}

/** /proc/PID/comm, or '?' when the process is gone or not ours. */
export function processName(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || '?';
  } catch {
    return '?';
  }
}

/** Whether a process exists (kill 0: EPERM means it exists under another uid). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
