// Used by the client SDK and the agent: imports nothing but node:fs (DESIGN §7).
import { readFileSync, statSync } from 'node:fs';

/**
 * Who a process is, as Linux's /proc tells it (issue 15): the SDK sends its pid, start time and
 * pid namespace with each registration, and the agent, when it sees that same process, checks
 * every ~250 ms that it still runs, so a crash deregisters at once instead of after the ttl.
 * Where /proc is missing (other systems) everything reads as 0 / undefined and only the ttl applies.
 */

export interface ProcStat {
  /** Field 3: R, S, D, Z (zombie: dead, not yet reaped), X, ... */
  state: string;
  /** Field 22: start time in clock ticks after boot; with the pid it names one process. */
  start: number;
}

/** /proc/PID/stat of a process, or undefined when it does not exist (or cannot be read). */
export function procStat(pid: number): ProcStat | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const start = Number(fields[19]);
  return Number.isFinite(start) ? { state: fields[0] ?? '?', start } : undefined;
}

/** Inode of a process's pid namespace (`/proc/PID/ns/pid`); 0 when unknown. */
export function pidNamespace(pid: number | 'self' = 'self'): number {
  try {
    return statSync(`/proc/${pid}/ns/pid`).ino;
  } catch {
    return 0;
  }
}

/** This process, as a RegisterRequest carries it. */
export function ownIdentity(): { pid: number; pid_start: number; pid_ns: number } {
  const stat = procStat(process.pid);
  return { pid: process.pid, pid_start: stat?.start ?? 0, pid_ns: stat ? pidNamespace('self') : 0 };
}

/** The process still runs: same pid, same start time (not a reused pid), not a zombie. */
export function processAlive(pid: number, start: number): boolean {
  const s = procStat(pid);
  return s !== undefined && s.start === start && s.state !== 'Z' && s.state !== 'X';
}
