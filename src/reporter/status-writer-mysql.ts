import { StatusSql, type StatusSqlDialect } from './status-writer.js';

/**
 * MySQL/MariaDB spelling of the reporter's upserts: `INSERT ... ON DUPLICATE KEY UPDATE c = VALUES(c)`.
 * `VALUES()` rather than MySQL 8's row alias because MariaDB has no alias syntax (MySQL 8 still
 * accepts VALUES(), with a deprecation note). mysql2 substitutes `?` on the client (kysely calls
 * `query()`), so the real limit is max_allowed_packet; 65535 parameters keep a statement near 1 MB.
 */
export const mysqlStatusDialect: StatusSqlDialect = {
  kind: 'mysql',
  maxParams: 65_535,
  quote: (name) => `\`${name}\``,
  placeholder: () => '?',
  conflictClause: (_key, update) =>
    ` on duplicate key update ${update.map((c) => `\`${c}\` = values(\`${c}\`)`).join(', ')}`,
};

export function mysqlStatusSql(): StatusSql {
  return new StatusSql(mysqlStatusDialect);
}
