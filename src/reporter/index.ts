/** Public surface of the reporter service (STYLE §5). */
export {
  ReporterService,
  minuteOf,
  DEFAULT_BATCH_MAX_ROWS,
  DEFAULT_PRUNE_INTERVAL_MS,
  DEFAULT_CLOSE_GRACE_MS,
  drainBudgetMs,
  type ReporterServiceOptions,
  type ReporterStats,
  type RowAccounting,
} from './reporter-service.js';
export { HashRing, DEFAULT_VIRTUAL_NODES } from './hash-ring.js';
export { murmur3, murmur3String, murmur3Int32Pair } from './murmur3.js';
export { DEFAULT_RETRY_BACKOFF, type WriterLaneStats } from './writer-lane.js';
