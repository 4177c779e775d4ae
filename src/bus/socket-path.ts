import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BUS_SOCKET_NAME } from './defaults.js';

/** Longest Unix socket path Linux accepts (sun_path is 108 bytes with the terminating NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

/**
 * The bus socket of a data directory: DIR/bus/bus.sock, or, when that path is too long for a Unix
 * socket, a per-directory folder in the temp directory (the same rule as the supervisor's control
 * socket), so the daemon, `lars up` and every client agree on it.
 */
export function busSocketIn(dataDir: string): string {
  const abs = resolve(dataDir);
  const path = join(abs, 'bus', BUS_SOCKET_NAME);
  if (Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES) return path;
  const id = createHash('sha256').update(abs).digest('hex').slice(0, 16);
  return join(tmpdir(), `lars-bus-${id}`, BUS_SOCKET_NAME);
}

/**
 * Where the bus listens unless told otherwise: `LARS_BUS_SOCKET` (the `[bus] socket` setting as an
 * environment variable), else the socket of `LARS_DATA_DIR` (default ./lars-data). Used by the
 * daemon, the CLI and the client library alike, so a client started next to `lars up` finds the bus.
 */
export function defaultBusSocket(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.LARS_BUS_SOCKET;
  if (explicit !== undefined && explicit.trim() !== '') return explicit;
  return busSocketIn(env.LARS_DATA_DIR ?? './lars-data');
}
