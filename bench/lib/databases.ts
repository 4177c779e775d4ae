import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'mysql2/promise';
import pg from 'pg';
import { InvalidArgumentError } from '../../src/errors.js';

/**
 * Throw-away databases for benchmarks: a SQLite file in a temp directory, or a `lars_b_<random>`
 * database on the MariaDB/PostgreSQL server, dropped (or deleted) when `fn` finishes.
 * Servers: LARS_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306), LARS_BENCH_PG_URL (default
 * postgres://postgres@127.0.0.1:5432).
 */
export const BENCH_MYSQL_URL = process.env.LARS_BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';
export const BENCH_PG_URL = process.env.LARS_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';

export type BenchBackend = 'sqlite' | 'mysql' | 'postgres';

/** `sqlite`, `mysql` (or `mariadb`), `postgres` (or `postgresql`). */
export function benchBackend(name: string): BenchBackend {
  const n = name.trim().toLowerCase();
  if (n === 'sqlite') return 'sqlite';
  if (n === 'mysql' || n === 'mariadb') return 'mysql';
  if (n === 'postgres' || n === 'postgresql') return 'postgres';
  throw new InvalidArgumentError(
    `unknown backend ${JSON.stringify(name)}: expected sqlite, mysql or postgres`,
  );
}

/** Human label for result tables. */
export const BACKEND_LABEL: Record<BenchBackend, string> = {
  sqlite: 'sqlite (file, WAL)',
  mysql: 'mariadb/mysql',
  postgres: 'postgresql',
};

/** A fresh database; `drop()` removes it (idempotent use is the caller's). */
export async function createBenchDatabase(
  backend: BenchBackend,
): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `lars_b_${randomBytes(5).toString('hex')}`;
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'lars-bench-'));
    return {
      url: `sqlite:${join(dir, 'lars.db')}`,
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  if (backend === 'mysql') {
    const u = new URL(BENCH_MYSQL_URL);
    const admin = await createConnection({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username || 'root'),
      password: decodeURIComponent(u.password),
    });
    await admin.query(`CREATE DATABASE \`${name}\``);
    u.pathname = `/${name}`;
    return {
      url: u.toString(),
      drop: async () => {
        await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
        await admin.end();
      },
    };
  }
  const u = new URL(BENCH_PG_URL);
  const admin = new pg.Client({
    host: u.hostname,
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username || 'postgres'),
    password: decodeURIComponent(u.password) || undefined,
    database: 'postgres',
  });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** Runs `fn` on a fresh database and removes the database afterwards. */
export async function withBenchDatabase<T>(
  backend: BenchBackend,
  fn: (url: string) => Promise<T>,
): Promise<T> {
  const db = await createBenchDatabase(backend);
  try {
    return await fn(db.url);
  } finally {
    await db.drop();
  }
}
