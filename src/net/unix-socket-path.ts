import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Longest Unix socket path Linux accepts (sun_path is 108 bytes with the terminating NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

/**
 * The Unix socket of a same-host service (the bus, lars shm) in a data directory: `DIR/NAME/FILE`,
 * or, when that path is too long for a Unix socket, `$TMPDIR/lars-NAME-<hash of DIR>/FILE`. The
 * daemon, `lars up` and every client compute the same path from the same directory.
 */
export function serviceSocketIn(dataDir: string, name: string, file = `${name}.sock`): string {
  const abs = resolve(dataDir);
  const path = join(abs, name, file);
  if (Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES) return path;
  const id = createHash('sha256').update(abs).digest('hex').slice(0, 16);
  return join(tmpdir(), `lars-${name}-${id}`, file);
}

/**
 * Where a same-host service listens unless told otherwise, and where its clients look: the
 * environment variable `envVar` (its `[NAME] socket` setting), else the socket of `LARS_DATA_DIR`
 * (default ./lars-data), the data directory `lars up` uses.
 */
export function defaultServiceSocket(
  envVar: string,
  name: string,
  file?: string,
  env: NodeJS.ProcessEnv = process.env,
): string {
  const explicit = env[envVar];
  if (explicit !== undefined && explicit.trim() !== '') return explicit;
  return serviceSocketIn(env.LARS_DATA_DIR || './lars-data', name, file);
}
