import type { Kysely } from 'kysely';
import type { DdlDialect } from './backend.js';
import type { Database } from './schema.js';
import {
  MAX_CONTENT_LENGTH,
  MAX_DNS_INSTANCE_ID_LENGTH,
  MAX_HOST_LENGTH,
  MAX_LEASE_AGENT_LENGTH,
} from './schema.js';
import type { StoreKind } from './url.js';

/**
 * Ordered schema migrations. Each runs once per database (recorded by name in lars_migrations), in
 * a transaction where the backend allows it (SQLite, PostgreSQL; MySQL commits DDL implicitly).
 *
 * Contract for every migration:
 * - append only: never rename, reorder or edit one that has shipped; add a new one at the end;
 * - re-runnable: use IF NOT EXISTS / "insert if missing", because on MySQL a migration that failed
 *   halfway is not rolled back and runs again from the start next time;
 * - original Lars tables (RouteData, RouteVersion, RouteChange, ServerCallStatus, ModIDConfig,
 *   CmdIDConfig) may already exist with rows, created by the original's lars_dns.sql: tolerate that,
 *   never alter their columns. Our tables are prefixed `lars_`.
 */

export interface MigrationContext {
  /** Transaction (or, on MySQL, the locked connection) to run the migration on. */
  readonly db: Kysely<Database>;
  readonly kind: StoreKind;
  readonly ddl: DdlDialect;
}

export interface Migration {
  /** Unique, sortable: `NNNN_what`. */
  readonly name: string;
  up(ctx: MigrationContext): Promise<void>;
}

const originalTables: Migration = {
  name: '0001_original_tables',
  async up({ db, ddl }) {
    const s = db.schema;
    await ddl
      .tableOptions(
        s
          .createTable('RouteData')
          .ifNotExists()
          .addColumn('id', ...ddl.autoId(false))
          .addColumn('modid', ddl.int32, (c) => c.notNull())
          .addColumn('cmdid', ddl.int32, (c) => c.notNull())
          .addColumn('serverip', ddl.uint32, (c) => c.notNull())
          .addColumn('serverport', ddl.uint32, (c) => c.notNull()),
      )
      .execute();
    await ddl
      .tableOptions(
        s
          .createTable('RouteVersion')
          .ifNotExists()
          .addColumn('id', ddl.int32, (c) => c.primaryKey().notNull())
          .addColumn('version', ddl.uint32, (c) => c.notNull()),
      )
      .execute();
    await ddl
      .tableOptions(
        s
          .createTable('RouteChange')
          .ifNotExists()
          .addColumn('id', ...ddl.autoId(true))
          .addColumn('modid', ddl.int32, (c) => c.notNull())
          .addColumn('cmdid', ddl.int32, (c) => c.notNull())
          .addColumn('version', ddl.uint64, (c) => c.notNull()),
      )
      .execute();
    await ddl
      .tableOptions(
        s
          .createTable('ServerCallStatus')
          .ifNotExists()
          .addColumn('modid', ddl.int32, (c) => c.notNull())
          .addColumn('cmdid', ddl.int32, (c) => c.notNull())
          .addColumn('ip', ddl.uint32, (c) => c.notNull())
          .addColumn('port', ddl.int32, (c) => c.notNull())
          .addColumn('caller', ddl.uint32, (c) => c.notNull())
          .addColumn('succ_cnt', ddl.uint32, (c) => c.notNull())
          .addColumn('err_cnt', ddl.uint32, (c) => c.notNull())
          .addColumn('ts', ddl.uint64, (c) => c.notNull())
          .addColumn('overload', ddl.char1, (c) => c.notNull())
          .addPrimaryKeyConstraint('ServerCallStatus_pk', ['modid', 'cmdid', 'ip', 'port', 'caller']),
      )
      .execute();
    for (const [table, column] of [
      ['ModIDConfig', 'modid'],
      ['CmdIDConfig', 'cmdid'],
    ] as const) {
      await ddl
        .tableOptions(
          s
            .createTable(table)
            .ifNotExists()
            .addColumn('id', ...ddl.autoId(false))
            .addColumn(column, ddl.int32, (c) => c.notNull())
            // varchar, not the original's char(255): MySQL strips trailing spaces from CHAR values.
            .addColumn('content', ddl.varchar(MAX_CONTENT_LENGTH), (c) => c.notNull()),
        )
        .execute();
    }
    // The single version row. An original database already has it (its SQL inserts version 0).
    const row = await db.selectFrom('RouteVersion').select('id').where('id', '=', 1).executeTakeFirst();
    if (!row) await db.insertInto('RouteVersion').values({ id: 1, version: 0 }).execute();
  },
};

const routeIndexes: Migration = {
  name: '0002_route_indexes',
  async up({ db, ddl }) {
    // getRoute / listRoutes filter by (modid, cmdid); pruneChanges deletes by version.
    await ddl.ensureIndex(db, 'RouteData', 'RouteData_modid_cmdid', ['modid', 'cmdid']);
    await ddl.ensureIndex(db, 'RouteChange', 'RouteChange_version', ['version']);
  },
};

const dnsInstances: Migration = {
  name: '0003_lars_dns_instance',
  async up({ db, ddl }) {
    await ddl
      .tableOptions(
        db.schema
          .createTable('lars_dns_instance')
          .ifNotExists()
          .addColumn('id', ddl.varchar(MAX_DNS_INSTANCE_ID_LENGTH), (c) => c.primaryKey().notNull())
          .addColumn('host', ddl.varchar(MAX_HOST_LENGTH), (c) => c.notNull())
          .addColumn('port', ddl.int32, (c) => c.notNull())
          .addColumn('admin_port', ddl.int32)
          .addColumn('started_at', ddl.int64, (c) => c.notNull())
          .addColumn('heartbeat_at', ddl.int64, (c) => c.notNull()),
      )
      .execute();
  },
};

/**
 * The reporter's per-minute history of each host as seen by each agent (issue: reporter, item 4):
 * one row per (route, host, caller, minute), latest values of that minute win. Read by the console's
 * charts ("this route over the last hour/day") and pruned by age.
 */
const callHistory: Migration = {
  name: '0004_lars_call_history',
  async up({ db, ddl }) {
    await ddl
      .tableOptions(
        db.schema
          .createTable('lars_call_history')
          .ifNotExists()
          .addColumn('modid', ddl.int32, (c) => c.notNull())
          .addColumn('cmdid', ddl.int32, (c) => c.notNull())
          .addColumn('ip', ddl.uint32, (c) => c.notNull())
          .addColumn('port', ddl.int32, (c) => c.notNull())
          .addColumn('caller', ddl.uint32, (c) => c.notNull())
          // Unix seconds of the start of the minute (ts - ts % 60).
          .addColumn('minute', ddl.int64, (c) => c.notNull())
          .addColumn('succ_cnt', ddl.uint32, (c) => c.notNull())
          .addColumn('err_cnt', ddl.uint32, (c) => c.notNull())
          // 1 when the agent reported the host overloaded, else 0.
          .addColumn('overload', ddl.int32, (c) => c.notNull())
          .addPrimaryKeyConstraint('lars_call_history_pk', [
            'modid',
            'cmdid',
            'ip',
            'port',
            'caller',
            'minute',
          ]),
      )
      .execute();
    await ddl.ensureIndex(db, 'lars_call_history', 'lars_call_history_route_minute', [
      'modid',
      'cmdid',
      'minute',
    ]);
    await ddl.ensureIndex(db, 'lars_call_history', 'lars_call_history_minute', ['minute']);
  },
};

/**
 * Console users and browser sessions (issue: web console, item 2). Passwords are scrypt hashes
 * (`scrypt$N$r$p$salt$hash`, base64); a session row stores the SHA-256 of its token, never the token.
 */
const consoleUsers: Migration = {
  name: '0005_lars_console_users',
  async up({ db, ddl }) {
    await ddl
      .tableOptions(
        db.schema
          .createTable('lars_user')
          .ifNotExists()
          .addColumn('id', ...ddl.autoId(false))
          .addColumn('name', ddl.varchar(64), (c) => c.notNull().unique())
          .addColumn('password_hash', ddl.varchar(255), (c) => c.notNull())
          .addColumn('created_at', ddl.int64, (c) => c.notNull()),
      )
      .execute();
    await ddl
      .tableOptions(
        db.schema
          .createTable('lars_session')
          .ifNotExists()
          .addColumn('id', ddl.varchar(64), (c) => c.primaryKey().notNull())
          .addColumn('user_id', ddl.int32, (c) => c.notNull())
          .addColumn('csrf', ddl.varchar(64), (c) => c.notNull())
          .addColumn('created_at', ddl.int64, (c) => c.notNull())
          .addColumn('expires_at', ddl.int64, (c) => c.notNull()),
      )
      .execute();
    await ddl.ensureIndex(db, 'lars_session', 'lars_session_expires', ['expires_at']);
  },
};

/**
 * Self-registration leases and host weights (issue 15). A lease is one registered instance, keyed
 * like the RouteData row it keeps alive; `created_row` says whether the lease inserted that row
 * (then its expiry or deregistration deletes the row) or found a manual one (never deleted by a
 * lease). Times are wall-clock milliseconds written by the dns instance that received the renewal.
 * Manual weights are keyed by the RouteData row id; a row without one weighs 1.
 */
const leasesAndWeights: Migration = {
  name: '0006_lars_route_lease_weight',
  async up({ db, ddl }) {
    await ddl
      .tableOptions(
        db.schema
          .createTable('lars_route_lease')
          .ifNotExists()
          .addColumn('modid', ddl.int32, (c) => c.notNull())
          .addColumn('cmdid', ddl.int32, (c) => c.notNull())
          .addColumn('ip', ddl.uint32, (c) => c.notNull())
          .addColumn('port', ddl.int32, (c) => c.notNull())
          .addColumn('weight', ddl.int32, (c) => c.notNull())
          .addColumn('ttl_ms', ddl.int64, (c) => c.notNull())
          .addColumn('agent', ddl.varchar(MAX_LEASE_AGENT_LENGTH), (c) => c.notNull())
          .addColumn('created_row', ddl.int32, (c) => c.notNull())
          .addColumn('registered_at', ddl.int64, (c) => c.notNull())
          .addColumn('renewed_at', ddl.int64, (c) => c.notNull())
          .addColumn('expires_at', ddl.int64, (c) => c.notNull())
          .addColumn('renewed_by', ddl.varchar(MAX_DNS_INSTANCE_ID_LENGTH), (c) => c.notNull())
          .addPrimaryKeyConstraint('lars_route_lease_pk', ['modid', 'cmdid', 'ip', 'port']),
      )
      .execute();
    await ddl.ensureIndex(db, 'lars_route_lease', 'lars_route_lease_expires', ['expires_at']);
    await ddl
      .tableOptions(
        db.schema
          .createTable('lars_route_weight')
          .ifNotExists()
          .addColumn('route_id', ddl.int64, (c) => c.primaryKey().notNull())
          .addColumn('weight', ddl.int32, (c) => c.notNull()),
      )
      .execute();
  },
};

/**
 * Issue 16: the agent's cumulative per-host counters in each history minute, so the console charts
 * exact calls per minute (differences between consecutive minutes). NULL in rows of original agents.
 */
const callHistoryTotals: Migration = {
  name: '0007_lars_call_history_totals',
  async up({ db, ddl }) {
    await db.schema.alterTable('lars_call_history').addColumn('total_succ', ddl.int64).execute();
    await db.schema.alterTable('lars_call_history').addColumn('total_err', ddl.int64).execute();
  },
};

/** Every migration, in the order they apply. Append new ones at the end. */
export const MIGRATIONS: readonly Migration[] = Object.freeze([
  originalTables,
  routeIndexes,
  dnsInstances,
  callHistory,
  consoleUsers,
  leasesAndWeights,
  callHistoryTotals,
]);
