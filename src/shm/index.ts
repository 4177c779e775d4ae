/**
 * `lars/shm`: the client of the shared-memory manager (DESIGN §10, docs/shm.md). Imports nothing
 * from the daemon, the servers or the databases.
 */
export { ShmClient, type ShmClientOptions, type ShmClientState } from './shm-client.js';
export { ShmBuffer } from './shm-buffer.js';
export { encodeHandle, decodeHandle, HANDLE_BYTES, type ShmHandle } from './handle.js';
export type { ShmNotice, TransferTarget } from './wire-codec.js';
export type { ClassStat, HolderEntry, HoldersReport, ReclaimResult, ShmMode, ShmStat } from './reports.js';
export type { ShmModeSetting } from './pool-segment.js';
export {
  parseClasses,
  formatClasses,
  parseSize,
  formatSize,
  DEFAULT_CLASSES_SPEC,
  type SizeClass,
} from './size-classes.js';
export { defaultShmSocket, shmSocketFor } from './socket-path.js';
export { ShmError } from '../errors.js';
