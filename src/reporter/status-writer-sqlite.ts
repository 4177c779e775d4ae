import { StatusSql, type StatusSqlDialect } from './status-writer.js';

/**
 * SQLite spelling of the reporter's upserts (`ON CONFLICT (key) DO UPDATE`, SQLite 3.24+; the
 * bundled better-sqlite3 is far newer). SQLITE_MAX_VARIABLE_NUMBER is 32766 since 3.32.
 */
export const sqliteStatusDialect: StatusSqlDialect = {
  kind: 'sqlite',
  maxParams: 32_766,
  quote: (name) => `"${name}"`,
  placeholder: () => '?',
  conflictClause: (key, update) =>
    ` on conflict (${key.map((c) => `"${c}"`).join(', ')}) do update set ${update
      .map((c) => `"${c}" = excluded."${c}"`)
      .join(', ')}`,
};

export function sqliteStatusSql(): StatusSql {
  return new StatusSql(sqliteStatusDialect);
}
