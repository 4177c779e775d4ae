/**
 * Public surface of the store (STYLE §5): the database layer shared by dns, reporter, console and CLI.
 */
export {
  openStore,
  DEFAULT_LOAD_CHUNK_SIZE,
  DEFAULT_CHANGES_LIMIT,
  DEFAULT_DNS_MAX_AGE_S,
  type Store,
  type OpenStoreOptions,
  type RouteRow,
  type HostSpec,
  type RouteChangeRow,
  type ListRoutesOptions,
  type ModIdRow,
  type CmdIdRow,
  type DnsInstance,
  type DnsInstanceSpec,
  type MigrateResult,
} from './store.js';
export {
  DEFAULT_STORE_URL,
  STORE_URL_ENV,
  parseStoreUrl,
  redact,
  type StoreKind,
  type StoreUrl,
} from './url.js';
export { MIGRATIONS, type Migration, type MigrationContext } from './migrations.js';
export type { Database } from './schema.js';
export {
  notifyDnsInstances,
  adminPollUrl,
  DNS_ADMIN_POLL_PATH,
  DEFAULT_NOTIFY_TIMEOUT_MS,
  type DnsNotifier,
  type NotifyResult,
  type NotifyFailure,
  type NotifyDnsOptions,
} from './notify-dns.js';
export { insertRouteRows } from './bulk-insert.js';
export { createDatabase, isMissingDatabase } from './create-database.js';
export { assertWeight } from './store.js';
export {
  DEFAULT_LEASE_TTL_S,
  MIN_LEASE_TTL_S,
  MAX_LEASE_TTL_S,
  MAX_WEIGHT,
  leaseKeyString,
  type LeaseKey,
  type LeaseSpec,
  type LeaseWrite,
  type LeaseWriteResult,
  type ExpiringLease,
  type LeaseExpireResult,
  type LeaseAgent,
  type LeaseRow,
  type WeightRow,
  type HostMeta,
} from './lease-types.js';
