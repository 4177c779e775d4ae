import { defaultServiceSocket, serviceSocketIn } from '../net/unix-socket-path.js';
import { BUS_SOCKET_NAME } from './defaults.js';

export { MAX_SOCKET_PATH_BYTES } from '../net/unix-socket-path.js';

/** The bus socket of a data directory: DIR/bus/bus.sock (see serviceSocketIn). */
export function busSocketIn(dataDir: string): string {
  return serviceSocketIn(dataDir, 'bus', BUS_SOCKET_NAME);
}

/**
 * Where the bus listens unless told otherwise: `LARS_BUS_SOCKET` (the `[bus] socket` setting as an
 * environment variable), else DIR/bus/bus.sock of `LARS_DATA_DIR`. Used by the daemon, the CLI and
 * the client library alike, so a client started next to `lars up` finds the bus.
 */
export function defaultBusSocket(env: NodeJS.ProcessEnv = process.env): string {
  return defaultServiceSocket('LARS_BUS_SOCKET', 'bus', BUS_SOCKET_NAME, env);
}
