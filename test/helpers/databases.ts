import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createConnection } from 'mysql2/promise';
import pg from 'pg';
import { onTestFinished } from 'vitest';
import { openStore, type Store, type OpenStoreOptions } from '../../src/store/index.js';
import type { StoreKind } from '../../src/store/url.js';

/**
 * Test databases for every backend (issue: store layer, item 6).
 *
 * `BACKENDS` describes sqlite (a temp file, and in-memory), MariaDB/MySQL and PostgreSQL. Each test
 * gets a fresh database: a new temp file, or on the servers a database named `lars_t_<random>`
 * created through an admin connection and dropped when the test finishes.
 *
 * A server that cannot be reached: outside CI the backend's tests are skipped with the reason in the
 * suite name and a console.warn; under CI=true they run and fail, so a broken CI service is never
 * mistaken for a green build.
 *
 * Overrides: LARS_TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306),
 * LARS_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432).
 */

export const TEST_MYSQL_URL = process.env.LARS_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';
export const TEST_PG_URL = process.env.LARS_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
export const IN_CI = process.env.CI === 'true';

const PROBE_TIMEOUT_MS = 3000;

export interface TestDatabase {
  url: string;
  /** Removes the database (file or server database). Idempotent. */
  drop(): Promise<void>;
}

export interface BackendDescriptor {
  /** Suite label: sqlite-file, sqlite-memory, mariadb, postgres. */
  name: string;
  kind: StoreKind;
  /** Set when the server could not be reached; the reason for skipping. */
  unavailable: string | undefined;
  /** Creates a fresh, empty database. */
  create(): Promise<TestDatabase>;
}

function randomName(): string {
  return `lars_t_${randomBytes(6).toString('hex')}`;
}

function serverUrl(base: string): URL {
  return new URL(base.replace(/\/+$/, ''));
}

/** The admin URL with `database` as its path. */
function withDatabase(base: string, database: string): string {
  const u = serverUrl(base);
  u.pathname = `/${database}`;
  return u.toString();
}

async function mysqlAdmin() {
  const u = serverUrl(TEST_MYSQL_URL);
  return createConnection({
    host: u.hostname,
    port: u.port ? Number(u.port) : 3306,
    user: decodeURIComponent(u.username || 'root'),
    password: decodeURIComponent(u.password),
    connectTimeout: PROBE_TIMEOUT_MS,
  });
}

function pgAdmin(): pg.Client {
  const u = serverUrl(TEST_PG_URL);
  const db = u.pathname.replace(/^\//, '');
  return new pg.Client({
    host: u.hostname,
    port: u.port ? Number(u.port) : 5432,
    user: decodeURIComponent(u.username || 'postgres'),
    password: decodeURIComponent(u.password) || undefined,
    database: db || 'postgres',
    connectionTimeoutMillis: PROBE_TIMEOUT_MS,
  });
}

async function probe(what: string, fn: () => Promise<void>): Promise<string | undefined> {
  try {
    await fn();
    return undefined;
  } catch (err) {
    const reason = `${what} unreachable: ${(err as Error).message || String(err)}`;
    if (!IN_CI) console.warn(`[lars tests] skipping ${what} tests: ${reason}`);
    return reason;
  }
}

const mysqlUnavailable = await probe(`MariaDB/MySQL at ${TEST_MYSQL_URL}`, async () => {
  const c = await mysqlAdmin();
  await c.end();
});

const pgUnavailable = await probe(`PostgreSQL at ${TEST_PG_URL}`, async () => {
  const c = pgAdmin();
  await c.connect();
  await c.end();
});

const sqliteFile: BackendDescriptor = {
  name: 'sqlite-file',
  kind: 'sqlite',
  unavailable: undefined,
  async create() {
    const dir = mkdtempSync(join(tmpdir(), 'lars-store-'));
    return {
      url: `sqlite:${join(dir, 'data', 'lars.db')}`,
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
};

const sqliteMemory: BackendDescriptor = {
  name: 'sqlite-memory',
  kind: 'sqlite',
  unavailable: undefined,
  async create() {
    return { url: 'sqlite::memory:', drop: async () => undefined };
  },
};

const mariadb: BackendDescriptor = {
  name: 'mariadb',
  kind: 'mysql',
  unavailable: mysqlUnavailable,
  async create() {
    const name = randomName();
    const admin = await mysqlAdmin();
    try {
      await admin.query(`CREATE DATABASE \`${name}\``);
    } finally {
      await admin.end();
    }
    let dropped = false;
    return {
      url: withDatabase(TEST_MYSQL_URL, name),
      async drop() {
        if (dropped) return;
        dropped = true;
        const c = await mysqlAdmin();
        try {
          await c.query(`DROP DATABASE IF EXISTS \`${name}\``);
        } finally {
          await c.end();
        }
      },
    };
  },
};

const postgres: BackendDescriptor = {
  name: 'postgres',
  kind: 'postgres',
  unavailable: pgUnavailable,
  async create() {
    const name = randomName();
    const admin = pgAdmin();
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE "${name}"`);
    } finally {
      await admin.end();
    }
    let dropped = false;
    return {
      url: withDatabase(TEST_PG_URL, name),
      async drop() {
        if (dropped) return;
        dropped = true;
        const c = pgAdmin();
        await c.connect();
        try {
          // FORCE (PostgreSQL 13+): a connection leaked by a failed test must not make cleanup fail.
          await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        } finally {
          await c.end();
        }
      },
    };
  },
};

/**
 * A URL naming a database that does not exist on the backend's server (for `lars db init --create`),
 * and a drop() that removes it if the test created it.
 */
export function missingDatabase(b: BackendDescriptor): TestDatabase {
  const name = randomName();
  if (b.kind === 'mysql')
    return {
      url: withDatabase(TEST_MYSQL_URL, name),
      async drop() {
        const c = await mysqlAdmin();
        try {
          await c.query(`DROP DATABASE IF EXISTS \`${name}\``);
        } finally {
          await c.end();
        }
      },
    };
  if (b.kind === 'postgres')
    return {
      url: withDatabase(TEST_PG_URL, name),
      async drop() {
        const c = pgAdmin();
        await c.connect();
        try {
          await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        } finally {
          await c.end();
        }
      },
    };
  throw new Error(`no missing-database URL for ${b.name}`);
}

/** Every backend, in a fixed order. */
export function backends(options: { memory?: boolean } = {}): BackendDescriptor[] {
  return options.memory === false
    ? [sqliteFile, mariadb, postgres]
    : [sqliteFile, sqliteMemory, mariadb, postgres];
}

/** For `describe.skipIf(skipBackend(b))`: true only outside CI when the server is unreachable. */
export function skipBackend(b: BackendDescriptor): boolean {
  return b.unavailable !== undefined && !IN_CI;
}

/** Suite title: the backend name, plus the skip reason when it is skipped. */
export function suiteTitle(b: BackendDescriptor, what: string): string {
  return skipBackend(b) ? `${what} [${b.name}] (skipped: ${b.unavailable})` : `${what} [${b.name}]`;
}

/**
 * A fresh database for the current test, dropped when the test finishes. Call inside a test
 * (uses onTestFinished).
 */
export async function freshDatabase(b: BackendDescriptor): Promise<TestDatabase> {
  const db = await b.create();
  onTestFinished(() => db.drop());
  return db;
}

/**
 * Opens a store on a fresh database for the current test; `migrate` (default true) runs the
 * migrations. Closed (then the database dropped) when the test finishes.
 */
export async function freshStore(
  b: BackendDescriptor,
  options: OpenStoreOptions & { migrate?: boolean } = {},
): Promise<{ store: Store; url: string; database: TestDatabase }> {
  const database = await freshDatabase(b);
  const store = await openStore(database.url, options);
  // Registered after the drop, so it runs first (onTestFinished hooks run in reverse order).
  onTestFinished(() => store.close());
  if (options.migrate !== false) await store.migrate();
  return { store, url: database.url, database };
}
