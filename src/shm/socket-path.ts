import { join } from 'node:path';

/** Environment variables clients read (they are also the `[shm] socket` / `[shm] mode` settings). */
export const SHM_SOCKET_ENV = 'LARS_SHM_SOCKET';
export const SHM_MODE_ENV = 'LARS_SHM_MODE';

/**
 * Where `lars shm` listens unless told otherwise, and where clients look: `LARS_SHM_SOCKET`, else
 * `<LARS_DATA_DIR or ./lars-data>/shm/shm.sock` (the data directory `lars up` uses).
 */
export function defaultShmSocket(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env[SHM_SOCKET_ENV];
  if (explicit) return explicit;
  return join(env.LARS_DATA_DIR || './lars-data', 'shm', 'shm.sock');
}
