import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Environment variables clients read (they are also the `[shm] socket` / `[shm] mode` settings). */
export const SHM_SOCKET_ENV = 'LARS_SHM_SOCKET';
export const SHM_MODE_ENV = 'LARS_SHM_MODE';

/** sun_path holds 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/**
 * The socket of the lars shm of a data directory: `DIR/shm/shm.sock`, or, when that path is too long
 * for a Unix socket, `$TMPDIR/lars-shm-<hash of DIR>/shm.sock` (daemon and clients compute the same).
 */
export function shmSocketFor(dataDir: string): string {
  const path = join(dataDir, 'shm', 'shm.sock');
  if (Buffer.byteLength(resolve(path)) <= MAX_SOCKET_PATH_BYTES) return path;
  const tag = createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 12);
  return join(tmpdir(), `lars-shm-${tag}`, 'shm.sock');
}

/**
 * Where `lars shm` listens unless told otherwise, and where clients look: `LARS_SHM_SOCKET`, else
 * the socket of `LARS_DATA_DIR` (default ./lars-data), the data directory `lars up` uses.
 */
export function defaultShmSocket(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env[SHM_SOCKET_ENV];
  if (explicit) return explicit;
  return shmSocketFor(env.LARS_DATA_DIR || './lars-data');
}
