import { ErrorCode, StoreError } from '../errors.js';

/**
 * Store URLs (DESIGN §3). One string chooses the backend and where it lives:
 *
 *   sqlite:PATH               a file (relative to the working directory); `sqlite:///abs/path` also works
 *   sqlite::memory:           a private in-memory database (tests)
 *   mysql://user:pass@host:3306/db     (`mariadb://` is an alias)
 *   postgres://user@host:5432/db       (`postgresql://` is an alias)
 *
 * Parsing is strict: anything we would otherwise silently ignore (query parameters, a missing
 * database name) is an error, because a typo in a URL should not send writes to the wrong place.
 */

/** Where `lars` keeps its data when neither `--db` nor `LARS_DB` says otherwise. */
export const DEFAULT_STORE_URL = 'sqlite:./lars-data/lars.db';

/** Environment variable the CLI reads when `--db` is not given. */
export const STORE_URL_ENV = 'LARS_DB';

export const DEFAULT_MYSQL_PORT = 3306;
export const DEFAULT_POSTGRES_PORT = 5432;

export type StoreKind = 'sqlite' | 'mysql' | 'postgres';

export interface SqliteStoreUrl {
  readonly kind: 'sqlite';
  /** File path as given (relative paths resolve against the working directory), or ':memory:'. */
  readonly path: string;
  readonly memory: boolean;
  /** The URL for messages and logs. */
  readonly display: string;
}

export interface ServerStoreUrl {
  readonly kind: 'mysql' | 'postgres';
  readonly host: string;
  readonly port: number;
  /** Undefined lets the driver pick its default (PGUSER / the OS user for pg). */
  readonly user: string | undefined;
  readonly password: string | undefined;
  readonly database: string;
  /** The URL with the password replaced by `***`, safe for messages and logs. */
  readonly display: string;
}

export type StoreUrl = SqliteStoreUrl | ServerStoreUrl;

function urlError(raw: string, problem: string): StoreError {
  return new StoreError(ErrorCode.STORE_URL, `invalid store URL ${JSON.stringify(redact(raw))}: ${problem}`);
}

/** Hides the password of a server URL (best effort: works on strings that do not parse too). */
export function redact(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@/]*@/i, '$1:***@');
}

const SCHEMES: Record<string, StoreKind> = {
  'sqlite:': 'sqlite',
  'mysql:': 'mysql',
  'mariadb:': 'mysql',
  'postgres:': 'postgres',
  'postgresql:': 'postgres',
};

/** Parses a store URL; throws StoreError(LARS_ERR_STORE_URL) naming the problem. */
export function parseStoreUrl(raw: string): StoreUrl {
  if (typeof raw !== 'string' || raw.trim() === '') throw urlError(String(raw), 'the URL is empty');
  const url = raw.trim();
  const schemeMatch = /^([a-z][a-z0-9+.-]*:)/i.exec(url);
  if (!schemeMatch) {
    throw urlError(url, 'missing scheme: expected sqlite:PATH, mysql://..., mariadb://..., postgres://...');
  }
  const scheme = (schemeMatch[1] as string).toLowerCase();
  const kind = SCHEMES[scheme];
  if (!kind) {
    throw urlError(
      url,
      `unsupported scheme "${scheme.slice(0, -1)}": expected sqlite, mysql, mariadb, postgres or postgresql`,
    );
  }
  if (kind === 'sqlite') return parseSqlite(url, url.slice(scheme.length));
  return parseServer(url, kind);
}

function parseSqlite(raw: string, rest: string): SqliteStoreUrl {
  if (rest === ':memory:')
    return { kind: 'sqlite', path: ':memory:', memory: true, display: 'sqlite::memory:' };
  // `sqlite:///abs/path` and `sqlite://rel/path` are common spellings; `//` is not part of the path.
  const path = rest.startsWith('//') ? rest.slice(2) : rest;
  if (path === '') throw urlError(raw, 'missing file path: expected sqlite:PATH or sqlite::memory:');
  if (path.includes('\0')) throw urlError(raw, 'the file path contains a NUL byte');
  if (/[?#]/.test(path)) throw urlError(raw, 'query parameters and fragments are not supported for sqlite');
  return { kind: 'sqlite', path, memory: false, display: `sqlite:${path}` };
}

function parseServer(raw: string, kind: 'mysql' | 'postgres'): ServerStoreUrl {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw urlError(
      raw,
      `malformed URL: expected ${kind === 'mysql' ? 'mysql://user:pass@host:3306/db' : 'postgres://user@host:5432/db'}`,
    );
  }
  if (!raw.slice(u.protocol.length).startsWith('//')) throw urlError(raw, 'expected "//" after the scheme');
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw urlError(raw, 'missing host');
  let port = kind === 'mysql' ? DEFAULT_MYSQL_PORT : DEFAULT_POSTGRES_PORT;
  if (u.port !== '') {
    port = Number(u.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw urlError(raw, `invalid port "${u.port}"`);
  }
  let database: string;
  let user: string | undefined;
  let password: string | undefined;
  try {
    database = decodeURIComponent(u.pathname.replace(/^\//, ''));
    user = u.username === '' ? undefined : decodeURIComponent(u.username);
    password = u.password === '' ? undefined : decodeURIComponent(u.password);
  } catch {
    throw urlError(raw, 'bad percent-encoding in the user, password or database name');
  }
  if (database === '') throw urlError(raw, 'missing database name (the path after host:port)');
  if (database.includes('/')) throw urlError(raw, `invalid database name "${database}": it contains "/"`);
  const params = [...u.searchParams.keys()];
  if (params.length > 0) throw urlError(raw, `query parameters are not supported: ${params.join(', ')}`);
  if (u.hash !== '') throw urlError(raw, 'fragments ("#...") are not supported');
  if (kind === 'mysql' && user === undefined) throw urlError(raw, 'missing user name (mysql://USER@host/db)');
  const scheme = u.protocol.slice(0, -1);
  const auth =
    user === undefined ? '' : `${encodeURIComponent(user)}${password === undefined ? '' : ':***'}@`;
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return {
    kind,
    host,
    port,
    user,
    password,
    database,
    display: `${scheme}://${auth}${hostPart}:${port}/${encodeURIComponent(database)}`,
  };
}
