/** The shared-memory daemon (`lars shm`): server side only; clients import from src/shm/index.ts. */
export {
  ShmDaemon,
  DEFAULT_BATCH_TTL_MS,
  DEFAULT_QUOTA_PERCENT,
  type ShmDaemonInfo,
  type ShmDaemonOptions,
  type ShmReleaseEvent,
} from './shm-daemon.js';
export { shmDaemonSettings, type ShmFlags } from './shm-settings.js';
export { ShmCore, type ShmCounters } from './shm-core.js';
