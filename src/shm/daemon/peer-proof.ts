import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { processUid } from './process-info.js';

/**
 * Process identity without SO_PEERCRED (file mode, DESIGN §10): a declared pid is never simply
 * trusted. The daemon creates a fresh file with an unguessable name in its private 0700 directory
 * and answers HELLO with its path; the client opens it and sends PROVE; the daemon then checks that
 * the declared process has that very file open (a link in /proc/PID/fd) and runs as the daemon's
 * uid. Only a process that can open the daemon's private file and is itself the declared pid (or
 * was handed the descriptor by it) passes. The file is removed after the check either way.
 */
export class ProofBook {
  private readonly pending = new Map<number, { pid: number; path: string }>();

  constructor(private readonly dir: string) {}

  /** Creates the proof file for connection `connId` claiming `pid`; returns its path. */
  issue(connId: number, pid: number): string {
    this.drop(connId);
    const path = join(this.dir, `.proof-${randomBytes(16).toString('hex')}`);
    closeSync(openSync(path, 'wx', 0o600));
    this.pending.set(connId, { pid, path });
    return path;
  }

  /** The verified pid, or a reason why not. The proof is consumed. */
  check(connId: number): { pid: number } | { error: string } {
    const p = this.pending.get(connId);
    if (!p) return { error: 'no proof pending: send HELLO first' };
    try {
      const uid = processUid(p.pid);
      if (uid === undefined) return { error: `no process with pid ${p.pid}` };
      if (uid !== process.getuid?.())
        return { error: `pid ${p.pid} runs as uid ${uid}, not as the daemon's` };
      if (!processHoldsFile(p.pid, p.path))
        return { error: `pid ${p.pid} does not hold the proof file open` };
      return { pid: p.pid };
    } finally {
      this.drop(connId); // removed only after the check: /proc shows a removed file as "(deleted)"
    }
  }

  drop(connId: number): void {
    const p = this.pending.get(connId);
    if (!p) return;
    this.pending.delete(connId);
    rmSync(p.path, { force: true });
  }

  clear(): void {
    for (const id of [...this.pending.keys()]) this.drop(id);
  }
}

/** Whether process `pid` has `path` open (any of its descriptors links to it). */
export function processHoldsFile(pid: number, path: string): boolean {
  const dir = `/proc/${pid}/fd`;
  let fds: string[];
  try {
    fds = readdirSync(dir);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      if (readlinkSync(join(dir, fd)) === path) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}
