import { Kysely, sql, type LogEvent, type Transaction } from 'kysely';
import {
  ClosedError,
  ConflictError,
  ErrorCode,
  InvalidArgumentError,
  isLarsError,
  NotFoundError,
  StoreError,
  type LarsError,
} from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { tracer } from '../log/trace.js';
import { numberToIp } from '../protocol/ip.js';
import { errorProp, type StoreBackend } from './backend.js';
import { MIGRATIONS } from './migrations.js';
import { runMigrations, type MigrateResult } from './migrator.js';
import {
  MAX_CONTENT_LENGTH,
  MAX_DNS_INSTANCE_ID_LENGTH,
  MAX_HOST_LENGTH,
  MAX_LEASE_AGENT_LENGTH,
  type Database,
} from './schema.js';
import {
  MAX_LEASE_TTL_S,
  MAX_WEIGHT,
  MIN_LEASE_TTL_S,
  type ExpiringLease,
  type HostMeta,
  type LeaseAgent,
  type LeaseExpireResult,
  type LeaseKey,
  type LeaseRow,
  type LeaseSpec,
  type LeaseWrite,
  type LeaseWriteResult,
  type WeightRow,
} from './lease-types.js';
import { isMissingDatabase, missingDatabaseHint } from './create-database.js';
import { LeaseOps, type LeaseStoreContext } from './store-leases.js';
import { WeightOps } from './store-weights.js';
import { parseStoreUrl, type StoreKind, type StoreUrl } from './url.js';
import {
  assertId,
  assertIpNumber,
  assertNonNegativeInt,
  assertPort,
  assertPositiveInt,
  assertText,
} from './validate.js';

/**
 * The store: one query layer (kysely) over SQLite, MySQL/MariaDB and PostgreSQL (DESIGN §3).
 *
 * Contracts every caller can rely on:
 * - every route mutation is ONE transaction that changes RouteData, bumps RouteVersion and writes one
 *   RouteChange row per affected route, so a reader that sees the new version also sees the rows;
 * - the version strictly increases on every change: new = max(now_unix_seconds, previous + 1), taken
 *   under the RouteVersion row lock (see bumpVersion), so concurrent writers in any number of
 *   processes never reuse or reorder a version;
 * - every driver failure surfaces as StoreError(LARS_ERR_STORE) whose message names the operation and
 *   whose `cause` is the driver error; bad input is InvalidArgumentError naming the field; a call after
 *   close() is ClosedError;
 * - numbers are numbers: values drivers hand back as strings or bigints are converted.
 */

export { DEFAULT_STORE_URL } from './url.js';
export type { StoreKind } from './url.js';
export type { MigrateResult } from './migrator.js';

/** Rows per query when loading the whole route table. */
export const DEFAULT_LOAD_CHUNK_SIZE = 20_000;
/** RouteChange rows returned by one changesAfter() call unless the caller asks otherwise. */
export const DEFAULT_CHANGES_LIMIT = 10_000;
/** A dns instance that has not heartbeated for this long is considered gone. */
export const DEFAULT_DNS_MAX_AGE_S = 30;

/** One host of one route. `ip` is the unsigned INET_ATON number (192.168.1.177 = 3232235953). */
export interface RouteRow {
  id: number;
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
}

export interface HostSpec {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
}

export interface RouteChangeRow {
  id: number;
  modid: number;
  cmdid: number;
  version: number;
}

export interface ListRoutesOptions {
  modid?: number;
  cmdid?: number;
  limit?: number;
  offset?: number;
}

export interface ModIdRow {
  id: number;
  modid: number;
  content: string;
}

export interface CmdIdRow {
  id: number;
  cmdid: number;
  content: string;
}

export interface DnsInstanceSpec {
  /** Unique per running instance (e.g. a UUID), at most 64 characters. */
  id: string;
  /** Address other processes use to reach it. */
  host: string;
  /** The route protocol (TCP) port. */
  port: number;
  /** HTTP admin port serving POST /admin/poll, or null/undefined when there is none. */
  adminPort?: number | null;
}

export interface DnsInstance {
  id: string;
  host: string;
  port: number;
  adminPort: number | null;
  /** Unix seconds. */
  startedAt: number;
  /** Unix seconds. */
  heartbeatAt: number;
}

export interface Store {
  readonly kind: StoreKind;
  /** The store URL with any password hidden, for messages. */
  readonly url: string;
  /** The query builder, for modules that own their own tables (reporter, console). */
  readonly db: Kysely<Database>;

  /** Creates or upgrades the schema; idempotent. */
  migrate(): Promise<MigrateResult>;
  /** Releases the connection(s); idempotent. Later calls fail with ClosedError. */
  close(): Promise<void>;
  /** Round trip to the database; StoreError when it cannot be reached. */
  ping(): Promise<void>;

  getVersion(): Promise<number>;
  /**
   * The whole route table in chunks of at most `chunkSize` rows, in id order (keyset pagination), with
   * a macrotask yield between chunks so a large load never blocks the event loop for long. It is NOT
   * a snapshot: rows may change between chunks. A caller that needs a consistent table reads
   * getVersion() before and after and loads again when it changed.
   */
  loadRoutes(options?: { chunkSize?: number }): AsyncIterable<RouteRow[]>;
  /** Hosts of one route, ordered by ip, port. Empty when the route has none. */
  getRoute(modid: number, cmdid: number): Promise<RouteRow[]>;
  /** Ordered by modid, cmdid, ip, port. */
  listRoutes(options?: ListRoutesOptions): Promise<RouteRow[]>;
  getHostById(id: number): Promise<RouteRow | undefined>;

  /** ConflictError when the host is already in the route. `weight` sets its manual weight. */
  addHost(
    modid: number,
    cmdid: number,
    ip: number,
    port: number,
    options?: { weight?: number },
  ): Promise<{ id: number; version: number }>;
  /** NotFoundError when the host is not in the route. */
  removeHost(modid: number, cmdid: number, ip: number, port: number): Promise<{ version: number }>;
  /** NotFoundError when no row has that id. */
  removeHostById(id: number): Promise<{ version: number; removed: RouteRow }>;
  /**
   * Moves/edits one row. NotFoundError when the id is unknown, ConflictError when the target host
   * already exists in the target route. An update that changes nothing writes nothing and returns
   * the current version.
   */
  updateHost(id: number, to: HostSpec): Promise<{ version: number }>;

  /** Highest RouteChange id, 0 when there is none. Never goes backwards (pruning keeps the newest row). */
  lastChangeId(): Promise<number>;
  /** Changes with id > `afterId`, ordered by id, at most `limit`. */
  changesAfter(afterId: number, limit?: number): Promise<RouteChangeRow[]>;
  /**
   * Deletes RouteChange rows whose version is older than `maxAgeSeconds` (versions are ~unix
   * seconds), always keeping the newest row. Only writers/maintenance call this; readers never
   * delete, since several dns instances may share the table. Returns the number deleted.
   */
  pruneChanges(maxAgeSeconds: number): Promise<number>;

  listModIds(): Promise<ModIdRow[]>;
  /** Sets the description of a modid, creating its row when missing. */
  upsertModId(modid: number, content: string): Promise<{ id: number; created: boolean }>;
  /** Returns how many rows were deleted (0 when the modid was unknown). */
  deleteModId(modid: number): Promise<number>;
  listCmdIds(): Promise<CmdIdRow[]>;
  upsertCmdId(cmdid: number, content: string): Promise<{ id: number; created: boolean }>;
  deleteCmdId(cmdid: number): Promise<number>;

  // ---- self-registration and weights (issue 15; src/store/store-leases.ts, store-weights.ts) ----

  /**
   * One agent's batch: renews its live leases (timestamps only: constant queries per batch), creates
   * new ones (inserting the RouteData row when there is none), applies weight/ttl changes, deletes
   * the removed leases it owns. Route-visible changes bump the version and write RouteChange rows.
   */
  renewLeases(batch: LeaseWrite): Promise<LeaseWriteResult>;
  /** Leases past their expiry at `nowMs` whose ttl is at most `maxTtlMs`, soonest first. */
  expiringLeases(nowMs: number, maxTtlMs: number, limit?: number): Promise<ExpiringLease[]>;
  /** Deletes those still not renewed since they were read (and the rows they created). */
  expireLeases(leases: readonly ExpiringLease[]): Promise<LeaseExpireResult>;
  /** Owner agents of the leases, with their freshest renewal. */
  leaseAgents(): Promise<LeaseAgent[]>;
  listLeases(filter?: { modid?: number; cmdid?: number; agent?: string }): Promise<LeaseRow[]>;
  /** Every host whose effective weight is not 1 (manual weight, else the lease's). */
  loadWeights(): Promise<WeightRow[]>;
  getRouteWeights(modid: number, cmdid: number): Promise<WeightRow[]>;
  /** Origin (manual or registered), lease and weight of each row, by row id. */
  describeHosts(rows: readonly RouteRow[]): Promise<Map<number, HostMeta>>;
  /** Sets (null: clears) a row's manual weight; a route change. NotFoundError for an unknown id. */
  setHostWeight(id: number, weight: number | null): Promise<{ version: number }>;

  /** Inserts or replaces the instance; started_at and heartbeat_at become now. */
  registerDnsInstance(spec: DnsInstanceSpec): Promise<void>;
  /** NotFoundError when the instance is not registered (e.g. removed by hand): the caller re-registers. */
  heartbeatDnsInstance(id: string): Promise<void>;
  /** Idempotent: removing an unknown instance is not an error. */
  removeDnsInstance(id: string): Promise<void>;
  /** Instances whose last heartbeat is at most `maxAgeSeconds` old, oldest start first. */
  listDnsInstances(maxAgeSeconds?: number): Promise<DnsInstance[]>;
}

export interface OpenStoreOptions {
  logger?: Logger;
  /** Unix time in whole seconds. Tests pin it to exercise edits within one second. */
  nowSeconds?: () => number;
  /**
   * SQLite only: create the database file (and its directory) when missing. Default true; commands
   * other than `lars db init` pass false so a typo in a path is an error, not a new empty database.
   */
  createIfMissing?: boolean;
  /**
   * SQLite only: how long a statement waits for another process's lock (default 5000 ms). The
   * driver is synchronous, so the wait blocks the event loop: the route service passes a short one
   * so a database locked by someone else cannot stall its queries. Applies when this process first
   * opens the file (stores on one file share one handle).
   */
  busyTimeoutMs?: number;
  /** Called after every query with its SQL (tests and benchmarks count the queries an operation costs). */
  onQuery?: (sql: string) => void;
}

const systemNowSeconds = (): number => Math.floor(Date.now() / 1000);

/** Lets timers and I/O callbacks run between chunks (better-sqlite3 answers synchronously). */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function describeError(err: unknown): string {
  const message = errorProp(err, 'message');
  if (typeof message === 'string' && message !== '') return message;
  // pg reports a refused connection to every resolved address as an AggregateError with no message.
  if (err instanceof AggregateError && err.errors.length > 0) return describeError(err.errors[0]);
  const code = errorProp(err, 'code');
  return typeof code === 'string' ? code : String(err);
}

function toRouteRow(r: {
  id: unknown;
  modid: unknown;
  cmdid: unknown;
  serverip: unknown;
  serverport: unknown;
}): RouteRow {
  return {
    id: Number(r.id),
    modid: Number(r.modid),
    cmdid: Number(r.cmdid),
    ip: Number(r.serverip),
    port: Number(r.serverport),
  };
}

/**
 * The driver's rows made RouteRows in place: dns reads the whole table every reload interval, and
 * a second object per row was a fifth of the garbage of each reload (issue 17). Number() because
 * drivers return BIGINT columns as strings.
 */
function asRouteRows(rows: Array<{ [K in keyof RouteRow]: unknown }>): RouteRow[] {
  for (const r of rows) {
    r.id = Number(r.id);
    r.modid = Number(r.modid);
    r.cmdid = Number(r.cmdid);
    r.ip = Number(r.ip);
    r.port = Number(r.port);
  }
  return rows as RouteRow[];
}

function hostLabel(modid: number, cmdid: number, ip: number, port: number): string {
  return `${numberToIp(ip)}:${port} in route ${modid}/${cmdid}`;
}

/**
 * The backend of `url`, its driver loaded only now: a process opens one kind of database, and
 * loading all three drivers cost every command that opens a store ~0.3 s (issue 16).
 */
async function createBackend(
  url: StoreUrl,
  logger: Logger,
  createIfMissing: boolean,
  busyTimeoutMs?: number,
): Promise<StoreBackend> {
  switch (url.kind) {
    case 'sqlite':
      return (await import('./store-sqlite.js')).createSqliteBackend(url, createIfMissing, busyTimeoutMs);
    case 'mysql':
      return (await import('./store-mysql.js')).createMysqlBackend(url);
    case 'postgres':
      return (await import('./store-postgres.js')).createPostgresBackend(url, logger);
  }
}

/** Opens (and pings) a store. The schema is not touched: call migrate() (`lars db init`) for that. */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<Store> {
  const parsed = parseStoreUrl(url);
  const logger = (options.logger ?? silentLogger).child({ store: parsed.kind });
  let backend: StoreBackend;
  try {
    backend = await createBackend(parsed, logger, options.createIfMissing ?? true, options.busyTimeoutMs);
  } catch (err) {
    if (isLarsError(err)) throw err;
    throw new StoreError(ErrorCode.STORE, `cannot open ${parsed.display}: ${describeError(err)}`, {
      cause: err,
    });
  }
  const trace = tracer('store');
  const onQuery = options.onQuery;
  const db = new Kysely<Database>({
    dialect: backend.dialect,
    ...(trace || onQuery
      ? {
          log: (e: LogEvent) => {
            onQuery?.(e.query.sql);
            trace?.(
              `${e.level === 'error' ? 'ERROR ' : ''}${e.queryDurationMillis.toFixed(1)} ms ${e.query.sql}`,
            );
          },
        }
      : {}),
  });
  const store = new KyselyStore(db, backend, parsed.display, logger, options.nowSeconds ?? systemNowSeconds);
  try {
    await sql`select 1`.execute(db);
  } catch (err) {
    await store.close();
    const hint = isMissingDatabase(err) ? `; ${missingDatabaseHint(parsed.display)}` : '';
    throw new StoreError(
      ErrorCode.STORE,
      `cannot connect to ${parsed.display}: ${describeError(err)}${hint}`,
      {
        cause: err,
      },
    );
  }
  logger.debug({ url: parsed.display }, 'store opened');
  return store;
}

class KyselyStore implements Store {
  readonly kind: StoreKind;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly leases: LeaseOps;
  private readonly weights: WeightOps;

  constructor(
    readonly db: Kysely<Database>,
    private readonly backend: StoreBackend,
    readonly url: string,
    private readonly logger: Logger,
    private readonly nowSeconds: () => number,
  ) {
    this.kind = backend.kind;
    const ctx: LeaseStoreContext = {
      db,
      run: (op, fn) => this.run(op, fn),
      mutateIf: (op, body) => this.mutateIf(op, body),
      recordChanges: (trx, routes, version) => this.recordChanges(trx, routes, version),
    };
    this.leases = new LeaseOps(ctx);
    this.weights = new WeightOps(ctx, this.leases);
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  migrate(): Promise<MigrateResult> {
    return this.run('migrate', async () => {
      const result = await runMigrations(this.db, this.backend, MIGRATIONS);
      if (result.applied.length > 0) this.logger.info({ applied: result.applied }, 'store migrated');
      if (result.unknown.length > 0) {
        this.logger.warn({ unknown: result.unknown }, 'database has migrations this build does not know');
      }
      return result;
    });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      try {
        await this.db.destroy();
      } catch (err) {
        this.logger.warn({ err }, 'store close failed');
      }
    })();
    return this.closing;
  }

  ping(): Promise<void> {
    return this.run('ping', async () => {
      await sql`select 1`.execute(this.db);
    });
  }

  // ---- reads -----------------------------------------------------------------------------------

  getVersion(): Promise<number> {
    return this.run('getVersion', () => this.readVersion(this.db));
  }

  async *loadRoutes(options: { chunkSize?: number } = {}): AsyncIterable<RouteRow[]> {
    const chunkSize = assertPositiveInt(options.chunkSize ?? DEFAULT_LOAD_CHUNK_SIZE, 'chunkSize');
    let lastId: number | undefined;
    for (;;) {
      const after = lastId;
      const rows = await this.run('loadRoutes', () => {
        let q = this.db
          .selectFrom('RouteData')
          .select(['id', 'modid', 'cmdid', 'serverip as ip', 'serverport as port']);
        if (after !== undefined) q = q.where('id', '>', after);
        return q.orderBy('id').limit(chunkSize).execute();
      });
      if (rows.length === 0) return;
      const chunk = asRouteRows(rows);
      lastId = (chunk[chunk.length - 1] as RouteRow).id;
      yield chunk;
      if (rows.length < chunkSize) return;
      await yieldToEventLoop();
    }
  }

  getRoute(modid: number, cmdid: number): Promise<RouteRow[]> {
    return this.run('getRoute', async () => {
      assertId(modid, 'modid');
      assertId(cmdid, 'cmdid');
      const rows = await this.db
        .selectFrom('RouteData')
        .select(['id', 'modid', 'cmdid', 'serverip', 'serverport'])
        .where('modid', '=', modid)
        .where('cmdid', '=', cmdid)
        .orderBy('serverip')
        .orderBy('serverport')
        .orderBy('id')
        .execute();
      return rows.map(toRouteRow);
    });
  }

  listRoutes(options: ListRoutesOptions = {}): Promise<RouteRow[]> {
    return this.run('listRoutes', async () => {
      let q = this.db.selectFrom('RouteData').select(['id', 'modid', 'cmdid', 'serverip', 'serverport']);
      if (options.modid !== undefined) q = q.where('modid', '=', assertId(options.modid, 'modid'));
      if (options.cmdid !== undefined) q = q.where('cmdid', '=', assertId(options.cmdid, 'cmdid'));
      q = q.orderBy('modid').orderBy('cmdid').orderBy('serverip').orderBy('serverport').orderBy('id');
      if (options.limit !== undefined || options.offset !== undefined) {
        // MySQL and SQLite accept OFFSET only after LIMIT: "no limit" is the largest safe integer.
        q = q.limit(
          options.limit === undefined
            ? Number.MAX_SAFE_INTEGER
            : assertNonNegativeInt(options.limit, 'limit'),
        );
        if (options.offset !== undefined) q = q.offset(assertNonNegativeInt(options.offset, 'offset'));
      }
      return (await q.execute()).map(toRouteRow);
    });
  }

  getHostById(id: number): Promise<RouteRow | undefined> {
    return this.run('getHostById', async () => {
      assertNonNegativeInt(id, 'id');
      const row = await this.selectHost(this.db, id);
      return row && toRouteRow(row);
    });
  }

  // ---- route mutations -------------------------------------------------------------------------

  async addHost(
    modid: number,
    cmdid: number,
    ip: number,
    port: number,
    options: { weight?: number } = {},
  ): Promise<{ id: number; version: number }> {
    const host = validHost({ modid, cmdid, ip, port });
    const weight = options.weight === undefined ? undefined : assertWeight(options.weight);
    return this.mutate('addHost', async (trx, version) => {
      const dup = await this.findHost(trx, host).executeTakeFirst();
      if (dup) {
        throw new ConflictError(
          `host ${hostLabel(modid, cmdid, ip, port)} already exists (id ${Number(dup.id)})`,
        );
      }
      const id = await this.insertHost(trx, host);
      if (weight !== undefined) await this.weights.write(trx, id, weight);
      await this.recordChanges(trx, [host], version);
      return { id, version };
    });
  }

  async removeHost(modid: number, cmdid: number, ip: number, port: number): Promise<{ version: number }> {
    const host = validHost({ modid, cmdid, ip, port });
    return this.mutate('removeHost', async (trx, version) => {
      const ids = (await this.findHost(trx, host).clearLimit().execute()).map((r) => Number(r.id));
      // Deletes every matching row: an original database may hold the same host twice.
      const res = await trx
        .deleteFrom('RouteData')
        .where('modid', '=', host.modid)
        .where('cmdid', '=', host.cmdid)
        .where('serverip', '=', host.ip)
        .where('serverport', '=', host.port)
        .executeTakeFirst();
      if (Number(res.numDeletedRows) === 0)
        throw new NotFoundError(`host ${hostLabel(modid, cmdid, ip, port)} does not exist`);
      await this.forgetHost(trx, host, ids);
      await this.recordChanges(trx, [host], version);
      return { version };
    });
  }

  async removeHostById(id: number): Promise<{ version: number; removed: RouteRow }> {
    assertNonNegativeInt(id, 'id');
    return this.mutate('removeHostById', async (trx, version) => {
      const row = await this.selectHost(trx, id);
      if (!row) throw new NotFoundError(`no host with id ${id}`);
      const removed = toRouteRow(row);
      await trx.deleteFrom('RouteData').where('id', '=', id).execute();
      await this.forgetHost(trx, removed, [id]);
      await this.recordChanges(trx, [removed], version);
      return { version, removed };
    });
  }

  async updateHost(id: number, to: HostSpec): Promise<{ version: number }> {
    assertNonNegativeInt(id, 'id');
    const host = validHost(to);
    // Checked before the write transaction: if the row already holds these values, returning now is
    // equivalent to the no-op having happened at the moment of this read.
    const current = await this.getHostById(id);
    if (!current) throw new NotFoundError(`no host with id ${id}`);
    if (sameHost(current, host)) return { version: await this.getVersion() };
    return this.mutate('updateHost', async (trx, version) => {
      const rowBefore = await this.selectHost(trx, id);
      if (!rowBefore) throw new NotFoundError(`no host with id ${id}`);
      const before = toRouteRow(rowBefore);
      const dup = await this.findHost(trx, host).where('id', '<>', id).executeTakeFirst();
      if (dup) {
        throw new ConflictError(
          `host ${hostLabel(host.modid, host.cmdid, host.ip, host.port)} already exists (id ${Number(dup.id)})`,
        );
      }
      await trx
        .updateTable('RouteData')
        .set({ modid: host.modid, cmdid: host.cmdid, serverip: host.ip, serverport: host.port })
        .where('id', '=', id)
        .execute();
      // The row no longer stands for the registered instance it may have carried (its manual
      // weight, keyed by the row, moves with it).
      await this.leases.forget(trx, [before]);
      const routes = before.modid === host.modid && before.cmdid === host.cmdid ? [host] : [before, host];
      await this.recordChanges(trx, routes, version);
      return { version };
    });
  }

  // ---- change log ------------------------------------------------------------------------------

  lastChangeId(): Promise<number> {
    return this.run('lastChangeId', () => this.maxChangeId());
  }

  changesAfter(afterId: number, limit = DEFAULT_CHANGES_LIMIT): Promise<RouteChangeRow[]> {
    return this.run('changesAfter', async () => {
      assertNonNegativeInt(afterId, 'afterId');
      assertPositiveInt(limit, 'limit');
      const rows = await this.db
        .selectFrom('RouteChange')
        .select(['id', 'modid', 'cmdid', 'version'])
        .where('id', '>', afterId)
        .orderBy('id')
        .limit(limit)
        .execute();
      return rows.map((r) => ({
        id: Number(r.id),
        modid: Number(r.modid),
        cmdid: Number(r.cmdid),
        version: Number(r.version),
      }));
    });
  }

  pruneChanges(maxAgeSeconds: number): Promise<number> {
    return this.run('pruneChanges', async () => {
      assertNonNegativeInt(maxAgeSeconds, 'maxAgeSeconds');
      const cutoff = this.nowSeconds() - maxAgeSeconds;
      // Keep the newest row: lastChangeId() must never go backwards, and on backends whose
      // auto-increment counter is not persisted an empty table could hand out old ids again.
      // (Read separately: MySQL cannot reference the target table in a DELETE's subquery.)
      const newest = await this.maxChangeId();
      const res = await this.db
        .deleteFrom('RouteChange')
        .where('version', '<', cutoff)
        .where('id', '<', newest)
        .executeTakeFirst();
      return Number(res.numDeletedRows);
    });
  }

  // ---- module / command id descriptions ------------------------------------------------------

  listModIds(): Promise<ModIdRow[]> {
    return this.run('listModIds', async () => {
      const rows = await this.db
        .selectFrom('ModIDConfig')
        .select(['id', 'modid', 'content'])
        .orderBy('modid')
        .orderBy('id')
        .execute();
      return rows.map((r) => ({ id: Number(r.id), modid: Number(r.modid), content: String(r.content) }));
    });
  }

  async upsertModId(modid: number, content: string): Promise<{ id: number; created: boolean }> {
    assertId(modid, 'modid');
    assertText(content, 'content', MAX_CONTENT_LENGTH, true);
    // Not serialised against a concurrent upsert of the same new modid (the original table has no
    // unique key we could lean on); the console is the only writer and edits are rare.
    return this.run('upsertModId', () =>
      this.db.transaction().execute(async (trx) => {
        const row = await trx
          .selectFrom('ModIDConfig')
          .select('id')
          .where('modid', '=', modid)
          .orderBy('id')
          .executeTakeFirst();
        if (row) {
          await trx.updateTable('ModIDConfig').set({ content }).where('modid', '=', modid).execute();
          return { id: Number(row.id), created: false };
        }
        const q = trx.insertInto('ModIDConfig').values({ modid, content });
        const id = this.backend.returning
          ? Number((await q.returning('id').executeTakeFirstOrThrow()).id)
          : Number((await q.executeTakeFirstOrThrow()).insertId);
        return { id, created: true };
      }),
    );
  }

  deleteModId(modid: number): Promise<number> {
    return this.run('deleteModId', async () => {
      assertId(modid, 'modid');
      const res = await this.db.deleteFrom('ModIDConfig').where('modid', '=', modid).executeTakeFirst();
      return Number(res.numDeletedRows);
    });
  }

  listCmdIds(): Promise<CmdIdRow[]> {
    return this.run('listCmdIds', async () => {
      const rows = await this.db
        .selectFrom('CmdIDConfig')
        .select(['id', 'cmdid', 'content'])
        .orderBy('cmdid')
        .orderBy('id')
        .execute();
      return rows.map((r) => ({ id: Number(r.id), cmdid: Number(r.cmdid), content: String(r.content) }));
    });
  }

  async upsertCmdId(cmdid: number, content: string): Promise<{ id: number; created: boolean }> {
    assertId(cmdid, 'cmdid');
    assertText(content, 'content', MAX_CONTENT_LENGTH, true);
    return this.run('upsertCmdId', () =>
      this.db.transaction().execute(async (trx) => {
        const row = await trx
          .selectFrom('CmdIDConfig')
          .select('id')
          .where('cmdid', '=', cmdid)
          .orderBy('id')
          .executeTakeFirst();
        if (row) {
          await trx.updateTable('CmdIDConfig').set({ content }).where('cmdid', '=', cmdid).execute();
          return { id: Number(row.id), created: false };
        }
        const q = trx.insertInto('CmdIDConfig').values({ cmdid, content });
        const id = this.backend.returning
          ? Number((await q.returning('id').executeTakeFirstOrThrow()).id)
          : Number((await q.executeTakeFirstOrThrow()).insertId);
        return { id, created: true };
      }),
    );
  }

  deleteCmdId(cmdid: number): Promise<number> {
    return this.run('deleteCmdId', async () => {
      assertId(cmdid, 'cmdid');
      const res = await this.db.deleteFrom('CmdIDConfig').where('cmdid', '=', cmdid).executeTakeFirst();
      return Number(res.numDeletedRows);
    });
  }

  // ---- leases and weights ----------------------------------------------------------------------

  async renewLeases(batch: LeaseWrite): Promise<LeaseWriteResult> {
    assertText(batch.agent, 'agent', MAX_LEASE_AGENT_LENGTH);
    assertText(batch.dnsId, 'dns instance id', MAX_DNS_INSTANCE_ID_LENGTH);
    assertNonNegativeInt(batch.nowMs, 'nowMs');
    const renew = batch.renew.map(validLease);
    const remove = batch.remove.map((k) => validKey(k));
    return this.leases.write({ ...batch, renew, remove });
  }

  async expiringLeases(nowMs: number, maxTtlMs: number, limit = 1000): Promise<ExpiringLease[]> {
    assertNonNegativeInt(nowMs, 'nowMs');
    assertNonNegativeInt(maxTtlMs, 'maxTtlMs');
    return this.leases.candidates(nowMs, maxTtlMs, assertPositiveInt(limit, 'limit'));
  }

  expireLeases(leases: readonly ExpiringLease[]): Promise<LeaseExpireResult> {
    return this.leases.expire(leases);
  }

  leaseAgents(): Promise<LeaseAgent[]> {
    return this.leases.agents();
  }

  listLeases(filter: { modid?: number; cmdid?: number; agent?: string } = {}): Promise<LeaseRow[]> {
    return this.leases.list(filter);
  }

  loadWeights(): Promise<WeightRow[]> {
    return this.weights.load();
  }

  getRouteWeights(modid: number, cmdid: number): Promise<WeightRow[]> {
    return this.weights.load({ modid: assertId(modid, 'modid'), cmdid: assertId(cmdid, 'cmdid') });
  }

  describeHosts(rows: readonly RouteRow[]): Promise<Map<number, HostMeta>> {
    return this.weights.describe(rows);
  }

  async setHostWeight(id: number, weight: number | null): Promise<{ version: number }> {
    assertNonNegativeInt(id, 'id');
    return this.weights.set(id, weight === null ? null : assertWeight(weight));
  }

  // ---- dns instances ---------------------------------------------------------------------------

  registerDnsInstance(spec: DnsInstanceSpec): Promise<void> {
    return this.run('registerDnsInstance', async () => {
      const id = assertText(spec.id, 'dns instance id', MAX_DNS_INSTANCE_ID_LENGTH);
      const host = assertText(spec.host, 'dns host', MAX_HOST_LENGTH);
      const port = assertPort(spec.port, 'dns port');
      const adminPort =
        spec.adminPort === undefined || spec.adminPort === null
          ? null
          : assertPort(spec.adminPort, 'dns admin port');
      const now = this.nowSeconds();
      await this.backend.upsertDnsInstance(this.db, {
        id,
        host,
        port,
        admin_port: adminPort,
        started_at: now,
        heartbeat_at: now,
      });
    });
  }

  heartbeatDnsInstance(id: string): Promise<void> {
    return this.run('heartbeatDnsInstance', async () => {
      assertText(id, 'dns instance id', MAX_DNS_INSTANCE_ID_LENGTH);
      // mysql2 connects with FOUND_ROWS, so an unchanged heartbeat_at (same second) still counts as matched.
      const res = await this.db
        .updateTable('lars_dns_instance')
        .set({ heartbeat_at: this.nowSeconds() })
        .where('id', '=', id)
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) === 0)
        throw new NotFoundError(`dns instance ${JSON.stringify(id)} is not registered`);
    });
  }

  removeDnsInstance(id: string): Promise<void> {
    return this.run('removeDnsInstance', async () => {
      assertText(id, 'dns instance id', MAX_DNS_INSTANCE_ID_LENGTH);
      await this.db.deleteFrom('lars_dns_instance').where('id', '=', id).execute();
    });
  }

  listDnsInstances(maxAgeSeconds = DEFAULT_DNS_MAX_AGE_S): Promise<DnsInstance[]> {
    return this.run('listDnsInstances', async () => {
      assertNonNegativeInt(maxAgeSeconds, 'maxAgeSeconds');
      const rows = await this.db
        .selectFrom('lars_dns_instance')
        .selectAll()
        .where('heartbeat_at', '>=', this.nowSeconds() - maxAgeSeconds)
        .orderBy('started_at')
        .orderBy('id')
        .execute();
      return rows.map((r) => ({
        id: String(r.id),
        host: String(r.host),
        port: Number(r.port),
        adminPort: r.admin_port === null ? null : Number(r.admin_port),
        startedAt: Number(r.started_at),
        heartbeatAt: Number(r.heartbeat_at),
      }));
    });
  }

  // ---- internals -------------------------------------------------------------------------------

  /** Runs one operation: refuses after close(), passes LarsErrors through, wraps everything else. */
  private async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new ClosedError(`store ${this.url} is closed (${op})`);
    try {
      return await fn();
    } catch (err) {
      throw this.wrap(op, err);
    }
  }

  private wrap(op: string, err: unknown): LarsError {
    if (isLarsError(err)) return err;
    if (this.closed) return new ClosedError(`store ${this.url} was closed during ${op}`);
    const hint = this.backend.isMissingTable(err) ? ' (is the database initialised? run `lars db init`)' : '';
    return new StoreError(ErrorCode.STORE, `${op} on ${this.url} failed: ${describeError(err)}${hint}`, {
      cause: err,
    });
  }

  /**
   * One route mutation = one transaction that starts by bumping the version. The bump is the first
   * statement on purpose: its row lock (InnoDB / PostgreSQL) or SQLite's write lock serialises all
   * route writers from here to commit, so the duplicate checks that follow cannot race, and the
   * versions of concurrent writers are handed out in commit order. A body that throws rolls the bump
   * back with everything else.
   */
  private mutate<T>(
    op: string,
    body: (trx: Transaction<Database>, version: number) => Promise<T>,
  ): Promise<T> {
    return this.run(op, () => {
      const builder = this.db.transaction();
      const isolation = this.backend.mutationIsolation;
      return (isolation ? builder.setIsolationLevel(isolation) : builder).execute(async (trx) => {
        const version = await this.bumpVersion(trx);
        return body(trx, version);
      });
    });
  }

  /** As mutate(), but a body that returns undefined rolls everything back (the version too). */
  private async mutateIf<T>(
    op: string,
    body: (trx: Transaction<Database>, version: number) => Promise<T | undefined>,
  ): Promise<T | undefined> {
    try {
      return await this.mutate(op, async (trx, version) => {
        const out = await body(trx, version);
        if (out === undefined) throw NOTHING_CHANGED;
        return out;
      });
    } catch (err) {
      if (err === NOTHING_CHANGED) return undefined;
      throw err;
    }
  }

  /** Leases and manual weights of rows an operator removed, in the operator's transaction. */
  private async forgetHost(trx: Transaction<Database>, key: LeaseKey, ids: readonly number[]): Promise<void> {
    await this.leases.forget(trx, [key]);
    if (ids.length > 0) await trx.deleteFrom('lars_route_weight').where('route_id', 'in', ids).execute();
  }

  /** new = max(now, previous + 1), computed by the database under the row lock, then read back. */
  private async bumpVersion(trx: Transaction<Database>): Promise<number> {
    const now = this.nowSeconds();
    const v = sql.ref<number>('version');
    const res = await trx
      .updateTable('RouteVersion')
      .set({ version: sql<number>`case when ${v} + 1 > ${now} then ${v} + 1 else ${now} end` })
      .where('id', '=', 1)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) {
      throw new StoreError(ErrorCode.STORE, 'the RouteVersion row id=1 is missing (run `lars db init`)');
    }
    return this.readVersion(trx);
  }

  private async readVersion(db: Kysely<Database>): Promise<number> {
    const row = await db.selectFrom('RouteVersion').select('version').where('id', '=', 1).executeTakeFirst();
    if (!row)
      throw new StoreError(ErrorCode.STORE, 'the RouteVersion row id=1 is missing (run `lars db init`)');
    return Number(row.version);
  }

  private async maxChangeId(): Promise<number> {
    const row = await this.db
      .selectFrom('RouteChange')
      .select((eb) => eb.fn.max('id').as('m'))
      .executeTakeFirst();
    return Number(row?.m ?? 0);
  }

  private selectHost(db: Kysely<Database>, id: number) {
    return db
      .selectFrom('RouteData')
      .select(['id', 'modid', 'cmdid', 'serverip', 'serverport'])
      .where('id', '=', id)
      .executeTakeFirst();
  }

  private findHost(db: Kysely<Database>, host: HostSpec) {
    return db
      .selectFrom('RouteData')
      .select('id')
      .where('modid', '=', host.modid)
      .where('cmdid', '=', host.cmdid)
      .where('serverip', '=', host.ip)
      .where('serverport', '=', host.port)
      .limit(1);
  }

  private async insertHost(trx: Transaction<Database>, host: HostSpec): Promise<number> {
    const q = trx
      .insertInto('RouteData')
      .values({ modid: host.modid, cmdid: host.cmdid, serverip: host.ip, serverport: host.port });
    if (this.backend.returning) return Number((await q.returning('id').executeTakeFirstOrThrow()).id);
    return Number((await q.executeTakeFirstOrThrow()).insertId);
  }

  private async recordChanges(
    trx: Transaction<Database>,
    routes: Array<{ modid: number; cmdid: number }>,
    version: number,
  ): Promise<void> {
    await trx
      .insertInto('RouteChange')
      .values(routes.map((r) => ({ modid: r.modid, cmdid: r.cmdid, version })))
      .execute();
  }
}

function validHost(h: HostSpec): HostSpec {
  return {
    modid: assertId(h.modid, 'modid'),
    cmdid: assertId(h.cmdid, 'cmdid'),
    ip: assertIpNumber(h.ip, 'ip'),
    port: assertPort(h.port, 'port'),
  };
}

/** Thrown inside mutateIf's transaction to roll it back; never escapes. */
const NOTHING_CHANGED = new StoreError(ErrorCode.STORE, 'nothing changed (rolled back)');

export function assertWeight(value: unknown, field = 'weight'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_WEIGHT) {
    throw new InvalidArgumentError(
      `invalid ${field} ${JSON.stringify(value)}: expected an integer from 1 to ${MAX_WEIGHT}`,
    );
  }
  return value;
}

function validKey(k: LeaseKey): LeaseKey {
  return {
    modid: assertId(k.modid, 'modid'),
    cmdid: assertId(k.cmdid, 'cmdid'),
    ip: assertIpNumber(k.ip, 'ip'),
    port: assertPort(k.port, 'port'),
  };
}

function validLease(l: LeaseSpec): LeaseSpec {
  const ttlMs = l.ttlMs;
  if (!Number.isInteger(ttlMs) || ttlMs < MIN_LEASE_TTL_S * 1000 || ttlMs > MAX_LEASE_TTL_S * 1000) {
    throw new InvalidArgumentError(
      `invalid ttlMs ${ttlMs}: expected ${MIN_LEASE_TTL_S * 1000} to ${MAX_LEASE_TTL_S * 1000}`,
    );
  }
  return { ...validKey(l), weight: assertWeight(l.weight), ttlMs };
}

function sameHost(a: RouteRow, b: HostSpec): boolean {
  return a.modid === b.modid && a.cmdid === b.cmdid && a.ip === b.ip && a.port === b.port;
}
