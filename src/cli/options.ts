import { networkInterfaces } from 'node:os';
import type { Command } from 'commander';
import { loadConfig, type Config, type FlagOverride, type LoadedConfig } from '../config/index.js';
import { ConfigError, InvalidArgumentError } from '../errors.js';
import { isValidIpv4, parsePort } from '../protocol/ip.js';
import { DEFAULT_STORE_URL, STORE_URL_ENV } from '../store/url.js';
import { SUPERVISOR_ENV } from '../supervisor/child-ipc.js';

/**
 * Option helpers shared by command families.
 */

export const DB_OPTION_DESCRIPTION =
  `database URL: sqlite:PATH, mysql://user:pass@host:3306/db or postgres://user@host:5432/db ` +
  `(default ${DEFAULT_STORE_URL}, or env ${STORE_URL_ENV})`;

/**
 * Adds `--db <url>` to a command, and `--config FILE` unless it has one: the database may also come
 * from the file's `[store] url` or original `[mysql]` section (see resolveDbUrl).
 */
export function withDbOption(cmd: Command): Command {
  cmd.option('--db <url>', DB_OPTION_DESCRIPTION);
  if (!cmd.options.some((o) => o.long === '--config')) {
    withConfigOption(cmd);
    // One command per process: the file named by --config is where resolveDbUrl looks.
    cmd.hook('preAction', (c) => {
      const file = (c.opts() as { config?: string }).config;
      if (file) process.env.LARS_CONFIG = file;
    });
  }
  return cmd;
}

/**
 * The database URL: `--db` > env LARS_DB > `[store] url` > the original `[mysql]` section (when
 * db_host is set) > the default. An empty LARS_DB counts as unset.
 */
export function resolveDbUrl(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  config?: Config,
): string {
  if (flag !== undefined) return flag;
  const fromEnv = env[STORE_URL_ENV];
  if (fromEnv !== undefined && fromEnv.trim() !== '') return fromEnv;
  if (config === undefined && env.LARS_CONFIG) config = loadConfig({ file: env.LARS_CONFIG, env }).config;
  if (config?.store.url) return config.store.url;
  if (config?.mysql.db_host) {
    const m = config.mysql;
    const user = encodeURIComponent(m.db_user);
    const auth = m.db_passwd ? `${user}:${encodeURIComponent(m.db_passwd)}` : user;
    return `mysql://${auth}@${m.db_host}:${m.db_port}/${encodeURIComponent(m.db_name)}`;
  }
  return DEFAULT_STORE_URL;
}

/** Where a command writes; injected by tests. Each call writes one line (the newline is added). */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

export const processIo: CliIo = {
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
};

/** Aligned plain-text rows (columns padded, two spaces apart) for the human output of list commands. */
export function textTable(header: readonly string[], cells: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: readonly string[]) =>
    c
      .map((v, i) => v.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  return [line(header), ...cells.map(line)];
}

/** Parses `HOST:PORT` (IPv4 or host name) with messages naming the flag. */
export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  if (i <= 0) throw new InvalidArgumentError(`${flag}: expected HOST:PORT, got ${JSON.stringify(value)}`);
  const host = value.slice(0, i);
  if (/^[\d.]+$/.test(host) && !isValidIpv4(host)) {
    throw new InvalidArgumentError(`${flag}: invalid IPv4 address ${JSON.stringify(host)}`);
  }
  return { host, port: parsePort(value.slice(i + 1), `${flag} port`) };
}

/** Parses `8888,8889,8890`. */
export function parsePorts(value: string, flag: string): number[] {
  const ports = value.split(',').map((p) => parsePort(p, `${flag} port`, true));
  if (new Set(ports.filter((p) => p !== 0)).size !== ports.filter((p) => p !== 0).length) {
    throw new InvalidArgumentError(`${flag}: ports must be distinct, got ${value}`);
  }
  return ports;
}

/**
 * Loads --config FILE with the given flag overrides (validated once; see docs/config.md), and
 * prints what the file means differently from the original Lars (`lars: warning: …`). Under
 * `lars up` the master prints them once; its workers do not repeat them.
 */
export function loadServiceConfig(configFile: string | undefined, flags: FlagOverride[]): LoadedConfig {
  const loaded = loadConfig({ file: configFile ?? process.env.LARS_CONFIG, flags });
  if (!process.env[SUPERVISOR_ENV.SERVICE])
    for (const w of loaded.warnings) process.stderr.write(`lars: warning: ${w}\n`);
  return loaded;
}

/** Adds `--config FILE` to a command. */
export function withConfigOption(cmd: Command): Command {
  return cmd.option(
    '-c, --config <file>',
    'INI config file (original Lars layout; see docs/config.md); env LARS_CONFIG',
  );
}

/**
 * This machine's IPv4 for the `caller` field of statistics: the first non-internal IPv4 address,
 * or 127.0.0.1 when there is none.
 */
export function localIpv4(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === 'IPv4' && !a.internal) return a.address;
    }
  }
  return '127.0.0.1';
}

/**
 * The `caller` of this agent's statistics from `[agent] caller_ip` (issue 16): `interface` (the
 * default) = localIpv4(); `hostname` = the IPv4 address os.hostname() resolves to, as the original
 * agent used (a host switching implementations then keeps its ServerCallStatus rows); or an IPv4.
 */
export async function resolveCallerIp(setting: string): Promise<string> {
  if (setting === 'interface' || setting === '') return localIpv4();
  if (setting === 'hostname') {
    const [{ lookup }, { hostname }] = await Promise.all([import('node:dns/promises'), import('node:os')]);
    try {
      return (await lookup(hostname(), { family: 4 })).address;
    } catch (err) {
      throw new ConfigError(
        `[agent] caller_ip = hostname: the host name ${JSON.stringify(hostname())} does not resolve to an IPv4 address (${(err as Error).message}); set caller_ip = interface or an address`,
        { section: 'agent', key: 'caller_ip' },
      );
    }
  }
  if (isValidIpv4(setting)) return setting;
  throw new ConfigError(
    `[agent] caller_ip: ${JSON.stringify(setting)} is not interface, hostname or an IPv4 address`,
    { section: 'agent', key: 'caller_ip' },
  );
}

/**
 * The TCP servers' limits on hostile connections from `[reactor]` (issue 11): the same three keys
 * for dns and the reporter, in the milliseconds TcpServer takes.
 */
export function connectionLimits(config: Config): {
  headerTimeoutMs: number;
  handshakeTimeoutMs: number;
  maxConnectionsPerIp: number;
} {
  return {
    headerTimeoutMs: Math.round(config.reactor.header_timeout * 1000),
    handshakeTimeoutMs: Math.round(config.reactor.handshake_timeout * 1000),
    maxConnectionsPerIp: config.reactor.max_conn_per_ip,
  };
}

/** Resolves when SIGINT or SIGTERM arrives; the caller shuts down gracefully. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
