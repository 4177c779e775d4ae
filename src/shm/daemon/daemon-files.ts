import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { dirname, resolve } from 'node:path';
import { ErrorCode, ShmError } from '../../errors.js';
import { headerDaemonPid, segmentGeneration, segmentName } from '../pool-layout.js';
import { processExists } from './process-info.js';
import { humanSize } from '../size-classes.js';
import { SHM_DIR, segmentPath, unlinkSegment } from '../pool-segment.js';
import { MAX_SOCKET_PATH_BYTES } from '../socket-path.js';

/** Short tag of a socket path: segments of one daemon (one socket) share it across restarts. */
export function socketTag(socketPath: string): string {
  return createHash('sha256').update(resolve(socketPath)).digest('hex').slice(0, 8);
}

/**
 * Prepares the socket path: length within sun_path, directory created 0700, a stale socket of a
 * killed daemon removed; refuses when a live daemon answers there (its segments must not be touched).
 */
export async function prepareSocketPath(path: string): Promise<void> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new ShmError(
      ErrorCode.SHM_POOL,
      `socket path ${path} is ${Buffer.byteLength(path)} bytes, more than the ${MAX_SOCKET_PATH_BYTES} a Unix socket allows; use --socket with a shorter path`,
    );
  }
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Someone else's directory could swap our socket for theirs: only ours (or root's, e.g. /tmp).
  const owner = statSync(dir).uid;
  if (owner !== process.getuid!() && owner !== 0) {
    throw new ShmError(
      ErrorCode.SHM_POOL,
      `socket directory ${dir} belongs to uid ${owner}, not to this user`,
    );
  }
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((res) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
  if (live) throw new ShmError(ErrorCode.SHM_POOL, `another lars shm is serving ${path}`);
  rmSync(path, { force: true });
}

/**
 * The next pool generation: one more than any generation seen before on this socket (the
 * generation file, or a segment a killed daemon left behind); segments of earlier generations are
 * unlinked (iceoryx#113: a daemon killed with -9 must be able to restart). Clients that still map
 * them keep valid memory until they let go.
 */
export function nextGeneration(socketPath: string, uid: number): { generation: number; removed: string[] } {
  const tag = socketTag(socketPath);
  const genFile = `${socketPath}.generation`;
  let last = 0;
  try {
    const n = Number(readFileSync(genFile, 'utf8').trim());
    if (Number.isSafeInteger(n) && n > 0) last = n;
  } catch {
    // first start on this socket
  }
  const removed: string[] = [];
  for (const f of safeReaddir(SHM_DIR)) {
    const g = segmentGeneration(f, uid, tag);
    if (g === undefined) continue;
    last = Math.max(last, g);
    if (unlinkSegment(`/${f}`)) removed.push(f);
  }
  const generation = (last % 0xfffffffe) + 1;
  writeFileSync(genFile, `${generation}\n`, { mode: 0o600 });
  return { generation, removed };
}

/**
 * Removes pool segments of this uid whose daemon is dead (its pid, recorded in the header, no longer
 * exists): what daemons killed with -9 on other sockets left behind. A segment whose daemon lives is
 * never touched.
 */
export function sweepOrphanSegments(uid: number): string[] {
  const removed: string[] = [];
  const prefix = `lars-shm-${uid}-`;
  for (const f of safeReaddir(SHM_DIR)) {
    if (!f.startsWith(prefix)) continue;
    const pid = readHeaderPid(segmentPath(`/${f}`));
    if (pid !== undefined && pid > 0 && pid !== process.pid && !processExists(pid) && unlinkSegment(`/${f}`))
      removed.push(f);
  }
  return removed;
}

function readHeaderPid(path: string): number | undefined {
  try {
    const fd = openSync(path, 'r');
    try {
      const head = Buffer.alloc(32);
      return readSync(fd, head, 0, 32, 0) === 32 ? headerDaemonPid(head) : undefined;
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Refuses a pool that does not fit in /dev/shm (Docker's default is 64 MiB). */
export function checkShmSpace(poolBytes: number): void {
  let free: number;
  try {
    const s = statfsSync(SHM_DIR);
    free = s.bavail * s.bsize;
  } catch (err) {
    throw new ShmError(
      ErrorCode.SHM_POOL,
      `cannot read the free space of ${SHM_DIR}: ${(err as Error).message}`,
    );
  }
  if (poolBytes > free) {
    throw new ShmError(
      ErrorCode.SHM_POOL,
      `the pool needs ${humanSize(poolBytes)} but ${SHM_DIR} has ${humanSize(free)} free; ` +
        `raise it (e.g. docker run --shm-size, or mount -o remount,size=... ${SHM_DIR}) or give smaller --classes`,
    );
  }
}

export { segmentName };
