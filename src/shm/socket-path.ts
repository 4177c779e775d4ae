import { defaultServiceSocket, serviceSocketIn } from '../net/unix-socket-path.js';

export { MAX_SOCKET_PATH_BYTES } from '../net/unix-socket-path.js';

/** Environment variables clients read (they are also the `[shm] socket` / `[shm] mode` settings). */
export const SHM_SOCKET_ENV = 'LARS_SHM_SOCKET';
export const SHM_MODE_ENV = 'LARS_SHM_MODE';

/** The socket of the lars shm of a data directory: `DIR/shm/shm.sock` (see serviceSocketIn). */
export function shmSocketFor(dataDir: string): string {
  return serviceSocketIn(dataDir, 'shm');
}

/** Where `lars shm` listens unless told otherwise, and where clients look: `LARS_SHM_SOCKET`, else DIR/shm/shm.sock. */
export function defaultShmSocket(env: NodeJS.ProcessEnv = process.env): string {
  return defaultServiceSocket(SHM_SOCKET_ENV, 'shm', undefined, env);
}
