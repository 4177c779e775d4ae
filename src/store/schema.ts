import type { Generated } from 'kysely';

/**
 * The database as kysely sees it (DESIGN §3).
 *
 * The original Lars tables keep their exact mixed-case names and columns, so a database created by
 * the original C++ Lars (MySQL, `base/sql/lars_dns.sql`) works unchanged. kysely quotes every
 * identifier, so on PostgreSQL these tables exist with their exact mixed-case names ("RouteData",
 * not routedata); all access goes through kysely, which keeps that consistent.
 *
 * Our own tables sit beside them with a `lars_` prefix; we never alter the original ones (adding an
 * index is the one exception: it changes no column and the original queries keep working).
 *
 * Integer columns are typed `number`: every value fits in 2^53 (ids, unix seconds, unsigned 32-bit
 * ips), the pg pool parses int8 as a number and mysql2 returns BIGINT as a number below 2^53. Row
 * mappers still pass every value through Number() so a driver returning a string cannot leak out.
 */

/** One host of one route. `serverip` is the unsigned INET_ATON number (0..4294967295). */
export interface RouteDataTable {
  id: Generated<number>;
  modid: number;
  cmdid: number;
  serverip: number;
  serverport: number;
}

/** A single row, id = 1, bumped on every route change (strictly increasing, ~unix seconds). */
export interface RouteVersionTable {
  id: number;
  version: number;
}

/** One row per changed route per change, with the version at which it changed. */
export interface RouteChangeTable {
  id: Generated<number>;
  modid: number;
  cmdid: number;
  version: number;
}

/** Latest call statistics of a host as seen by one agent (`caller`, unsigned IPv4). */
export interface ServerCallStatusTable {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
  caller: number;
  succ_cnt: number;
  err_cnt: number;
  /** Unix seconds. */
  ts: number;
  /** char(1): '1' when the agent considers the host overloaded, '0' otherwise (as the original wrote it). */
  overload: string;
}

export interface ModIDConfigTable {
  id: Generated<number>;
  modid: number;
  content: string;
}

export interface CmdIDConfigTable {
  id: Generated<number>;
  cmdid: number;
  content: string;
}

/** Applied migrations, by name (src/store/migrations.ts). */
export interface LarsMigrationsTable {
  name: string;
  /** ISO 8601 UTC timestamp. */
  applied_at: string;
}

/**
 * Running route services (dns). A dns registers itself and heartbeats; the CLI and console read the
 * live ones to ask them for an immediate poll after an edit (src/store/notify-dns.ts).
 */
export interface LarsDnsInstanceTable {
  id: string;
  host: string;
  port: number;
  admin_port: number | null;
  /** Unix seconds. */
  started_at: number;
  /** Unix seconds. */
  heartbeat_at: number;
}

/** Per-minute history of a host as seen by one agent (reporter). */
export interface LarsCallHistoryTable {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
  caller: number;
  /** Unix seconds of the start of the minute. */
  minute: number;
  succ_cnt: number;
  err_cnt: number;
  /** 1 overloaded, 0 idle. */
  overload: number;
  /**
   * The agent's cumulative calls to the host as of its latest report in this minute (issue 16);
   * null from original agents. Calls in a minute = this minus the caller's previous value.
   */
  total_succ: number | null;
  total_err: number | null;
}

/** Console users; `password_hash` is `scrypt$N$r$p$salt$hash` (base64). */
export interface LarsUserTable {
  id: Generated<number>;
  name: string;
  password_hash: string;
  /** Unix seconds. */
  created_at: number;
}

/** Console sessions; `id` is the hex SHA-256 of the session token. */
export interface LarsSessionTable {
  id: string;
  user_id: number;
  csrf: string;
  created_at: number;
  expires_at: number;
}

/**
 * A self-registered instance (issue 15), keyed like its RouteData row. Times are wall-clock
 * milliseconds; `expires_at` = `renewed_at` + `ttl_ms`, kept as a column so expiry is one indexed
 * range query.
 */
export interface LarsRouteLeaseTable {
  modid: number;
  cmdid: number;
  /** Unsigned INET_ATON number, as RouteData.serverip. */
  ip: number;
  port: number;
  weight: number;
  ttl_ms: number;
  /** Name of the agent that carries the registration. */
  agent: string;
  /** 1: the lease inserted the RouteData row (and removes it); 0: the row was there (manual). */
  created_row: number;
  registered_at: number;
  renewed_at: number;
  expires_at: number;
  /** Id of the dns instance that wrote the last renewal. */
  renewed_by: string;
}

/** A manual weight of one RouteData row (issue 15); rows without one weigh 1. */
export interface LarsRouteWeightTable {
  route_id: number;
  weight: number;
}

export interface Database {
  RouteData: RouteDataTable;
  RouteVersion: RouteVersionTable;
  RouteChange: RouteChangeTable;
  ServerCallStatus: ServerCallStatusTable;
  ModIDConfig: ModIDConfigTable;
  CmdIDConfig: CmdIDConfigTable;
  lars_migrations: LarsMigrationsTable;
  lars_dns_instance: LarsDnsInstanceTable;
  lars_call_history: LarsCallHistoryTable;
  lars_user: LarsUserTable;
  lars_session: LarsSessionTable;
  lars_route_lease: LarsRouteLeaseTable;
  lars_route_weight: LarsRouteWeightTable;
}

/** Column length limits of our tables, checked before writing so a long value fails with a clear message. */
export const MAX_CONTENT_LENGTH = 255;
export const MAX_DNS_INSTANCE_ID_LENGTH = 64;
export const MAX_HOST_LENGTH = 255;
export const MAX_LEASE_AGENT_LENGTH = 255;
