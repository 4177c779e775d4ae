import { join } from 'node:path';
import { BUS_SOCKET_NAME } from './defaults.js';

/** Longest Unix socket path Linux accepts (sun_path is 108 bytes with the terminating NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

/**
 * Where the bus listens unless told otherwise: `LARS_BUS_SOCKET` (the `[bus] socket` setting as an
 * environment variable), else `<LARS_DATA_DIR or ./lars-data>/bus/bus.sock`. Used by the daemon, the
 * CLI and the client library alike, so a client started next to `lars up` finds the bus by default.
 */
export function defaultBusSocket(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.LARS_BUS_SOCKET;
  if (explicit !== undefined && explicit.trim() !== '') return explicit;
  return join(env.LARS_DATA_DIR ?? './lars-data', 'bus', BUS_SOCKET_NAME);
}
