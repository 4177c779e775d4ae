import { createRequire } from 'node:module';
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
  return join(tmpdir(), `lars-${name}-${pathHash(abs)}`, file);
}

/**
 * 16 hex digits of SHA-256 of `text`: names a socket for a directory whose own path is too long.
 * node:crypto is loaded only then: every service imports this module, and loading it costs ~2 MB
 * of RSS (issue 17's footprint).
 */
export function pathHash(text: string): string {
  const { createHash } = createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
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
