import { StatusSql, type StatusSqlDialect } from './status-writer.js';

/**
 * PostgreSQL spelling of the reporter's upserts: `INSERT ... ON CONFLICT (key) DO UPDATE SET
 * c = EXCLUDED.c`. A statement may not touch one row twice, which the batch's de-duplication
 * guarantees. Table names are quoted: kysely created "ServerCallStatus" with its exact case.
 */
export const postgresStatusDialect: StatusSqlDialect = {
  kind: 'postgres',
  maxParams: 65_535,
  quote: (name) => `"${name}"`,
  placeholder: (i) => `$${i + 1}`,
  conflictClause: (key, update) =>
    ` on conflict (${key.map((c) => `"${c}"`).join(', ')}) do update set ${update
      .map((c) => `"${c}" = excluded."${c}"`)
      .join(', ')}`,
};

export function postgresStatusSql(): StatusSql {
  return new StatusSql(postgresStatusDialect);
}
