import { ErrorCode, StoreError } from '../errors.js';
import { errorProp } from './backend.js';
import type { ServerStoreUrl } from './url.js';

/**
 * A MySQL/PostgreSQL database that does not exist yet (issue 16): how to recognise the server's
 * answer, and `lars db init --create`, which creates it on the same server with the URL's user.
 */

/** MySQL/MariaDB ER_BAD_DB_ERROR. */
const MYSQL_UNKNOWN_DATABASE = 1049;
/** PostgreSQL invalid_catalog_name. */
const PG_UNKNOWN_DATABASE = '3D000';
/** The database a PostgreSQL server always has, to connect to while creating another. */
const PG_MAINTENANCE_DB = 'postgres';
const CONNECT_TIMEOUT_MS = 5_000;

/** True when `err` (or its cause) is the server saying the URL's database does not exist. */
export function isMissingDatabase(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = errorProp(e, 'cause'), depth++) {
    if (errorProp(e, 'errno') === MYSQL_UNKNOWN_DATABASE || errorProp(e, 'code') === PG_UNKNOWN_DATABASE)
      return true;
  }
  return false;
}

/** What to do about a missing database, for messages. */
export function missingDatabaseHint(display: string): string {
  return `create it with \`lars db init --create --db ${display}\` (or CREATE DATABASE yourself), then start the services`;
}

/** Creates the URL's database (utf8mb4 on MySQL). Throws LARS_ERR_STORE with the server's reason. */
export async function createDatabase(url: ServerStoreUrl): Promise<void> {
  try {
    if (url.kind === 'mysql') await createMysql(url);
    else await createPostgres(url);
  } catch (err) {
    throw new StoreError(
      ErrorCode.STORE,
      `cannot create database ${JSON.stringify(url.database)} on ${url.display}: ${String(errorProp(err, 'message') ?? err)}`,
      { cause: err },
    );
  }
}

async function createMysql(url: ServerStoreUrl): Promise<void> {
  const { createConnection } = await import('mysql2/promise');
  const conn = await createConnection({
    host: url.host,
    port: url.port,
    user: url.user,
    password: url.password,
    connectTimeout: CONNECT_TIMEOUT_MS,
  });
  try {
    const name = '`' + url.database.replaceAll('`', '``') + '`';
    await conn.query(`create database if not exists ${name} character set utf8mb4`);
  } finally {
    await conn.end();
  }
}

async function createPostgres(url: ServerStoreUrl): Promise<void> {
  const pg = (await import('pg')).default;
  const client = new pg.Client({
    host: url.host,
    port: url.port,
    user: url.user,
    password: url.password,
    database: PG_MAINTENANCE_DB,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
  await client.connect();
  try {
    // PostgreSQL has no CREATE DATABASE IF NOT EXISTS; a concurrent create is the only way to lose.
    const exists = await client.query('select 1 from pg_database where datname = $1', [url.database]);
    if (exists.rowCount === 0) await client.query(`create database "${url.database.replaceAll('"', '""')}"`);
  } finally {
    await client.end();
  }
}
