import type { Config } from '../../config/index.js';
import { ConfigError, InvalidArgumentError } from '../../errors.js';
import { parseClasses } from '../size-classes.js';
import type { ShmModeSetting } from '../pool-segment.js';
import type { ShmDaemonOptions } from './shm-daemon.js';

export interface ShmFlags {
  socket?: string;
  classes?: string;
  httpPort?: number;
}

const MODES: readonly string[] = ['auto', 'addon', 'file'];

/**
 * ShmDaemon options from the validated `[shm]` section and the command's flags (flags win). Values
 * the schema cannot check (the class list, the mode) are checked here, naming the key or flag.
 */
export function shmDaemonSettings(
  config: Config,
  flags: ShmFlags,
  defaultSocket: string,
  file?: string,
): Omit<ShmDaemonOptions, 'logger'> {
  const s = config.shm;
  let classes;
  try {
    classes = parseClasses(
      flags.classes ?? s.classes,
      flags.classes !== undefined ? '--classes' : '[shm] classes',
    );
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err;
    throw new ConfigError(flags.classes !== undefined || !file ? err.message : `${file}: ${err.message}`, {
      ...(file ? { file } : {}),
      section: 'shm',
      key: 'classes',
    });
  }
  if (!MODES.includes(s.mode)) {
    throw new ConfigError(`[shm] mode: expected auto, addon or file, got ${JSON.stringify(s.mode)}`, {
      section: 'shm',
      key: 'mode',
    });
  }
  if (s.max_batch_ttl < s.batch_ttl) {
    throw new ConfigError(`[shm] max_batch_ttl (${s.max_batch_ttl}) is below batch_ttl (${s.batch_ttl})`, {
      section: 'shm',
      key: 'max_batch_ttl',
    });
  }
  return {
    socketPath: flags.socket ?? (s.socket || defaultSocket),
    classes,
    mode: s.mode as ShmModeSetting,
    quotaPercent: s.quota_percent,
    maxBatchesPerProc: s.max_batches_per_proc,
    defaultTtlMs: Math.round(s.batch_ttl * 1000),
    maxTtlMs: Math.round(s.max_batch_ttl * 1000),
    maxConnections: s.max_conns,
    http: { host: s.ip, port: flags.httpPort ?? s.http_port },
  };
}
