import { AddressInUseError, ConfigError, isLarsError, type LarsError } from '../errors.js';
import { findPortHolder } from './port-holder.js';

/** One address a service listens on, and the flag/config key an operator changes to move it. */
export interface ListenSetting {
  /** What listens there, for the message: "the console", "dns admin HTTP". */
  what: string;
  proto: 'tcp' | 'udp';
  host: string;
  /** 0 (any free port) is never "in use" and is skipped when matching. */
  port: number;
  /** e.g. "--port or [web] port". */
  setting: string;
  /** The flag/key of the address, for an address not of this host: "--host or [web] ip". */
  hostSetting?: string;
}

/** Socket errors a bind/listen can end with that an operator can fix by configuration. */
const LISTEN_CODES = new Set(['EADDRINUSE', 'EACCES', 'EADDRNOTAVAIL']);
const MAX_CAUSE_DEPTH = 5;

interface SocketErrno {
  code: string;
  port?: number;
  address?: string;
  message: string;
}

/** The bind/listen errno error in `err` or its `cause` chain. */
export function listenErrno(err: unknown): SocketErrno | undefined {
  let e = err as { code?: unknown; syscall?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < MAX_CAUSE_DEPTH; depth++) {
    if (typeof e.code === 'string' && LISTEN_CODES.has(e.code)) {
      const syscall = typeof e.syscall === 'string' ? e.syscall : '';
      if (syscall === '' || syscall === 'listen' || syscall === 'bind' || e.code === 'EADDRINUSE')
        return e as SocketErrno;
    }
    e = e.cause as typeof e;
  }
  return undefined;
}

/**
 * Turns a failed bind/listen into a typed error that names the address, the setting to change and,
 * for a taken port, the process holding it (issue 16: never a raw `listen EADDRINUSE` stack).
 * Returns undefined when `err` is not such a failure. The setting is matched on the error's port
 * (node errors carry it); with one candidate, that one.
 */
export function explainListenError(err: unknown, settings: readonly ListenSetting[]): LarsError | undefined {
  if (isLarsError(err) && (err.code === 'LARS_ERR_ADDRESS_IN_USE' || err.code === 'LARS_ERR_CONFIG'))
    return err;
  const e = listenErrno(err);
  if (!e) return undefined;
  const candidates = settings.filter((s) => s.port !== 0);
  const port = typeof e.port === 'number' ? e.port : portInMessage(e.message);
  const s = candidates.find((c) => c.port === port) ??
    (candidates.length === 1 ? candidates[0] : undefined) ?? {
      what: 'the service',
      proto: 'tcp' as const,
      host: e.address ?? '?',
      port: port ?? 0,
      setting: 'its port setting (see --help)',
    };
  const addr = `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`;
  if (e.code === 'EADDRINUSE') {
    const holder = findPortHolder(s.proto, s.port);
    const by = holder
      ? ` by pid ${holder.pid}${holder.command ? ` (${holder.command})` : ''}`
      : ' by another process';
    return new AddressInUseError(
      {
        proto: s.proto,
        host: s.host,
        port: s.port,
        setting: s.setting,
        ...(holder ? { holderPid: holder.pid } : {}),
      },
      `${s.what} cannot listen on ${s.proto} ${addr}: the address is already in use${by}. ` +
        `Stop that process, or choose another port with ${s.setting}.`,
      { cause: err },
    );
  }
  const why =
    e.code === 'EACCES'
      ? 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)'
      : 'the address is not one of this host';
  const change = e.code === 'EACCES' ? s.setting : (s.hostSetting ?? s.setting);
  return new ConfigError(`${s.what} cannot listen on ${s.proto} ${addr}: ${why}. Change ${change}.`);
}

/** Runs `start`, rethrowing bind/listen failures as explained by explainListenError. */
export async function withListenErrors<T>(
  settings: readonly ListenSetting[],
  start: () => Promise<T>,
): Promise<T> {
  try {
    return await start();
  } catch (err) {
    throw explainListenError(err, settings) ?? err;
  }
}

function portInMessage(message: string): number | undefined {
  const m = /:(\d{1,5})\b(?!.*:\d)/.exec(message);
  return m ? Number(m[1]) : undefined;
}

/**
 * Checks that `s` can be listened on (bind, then release at once), throwing the explained error when
 * not: a parent that forks workers (`lars dns --workers N`, `lars up`) fails once, early, instead of
 * every worker failing in turn.
 */
export async function probeListen(s: ListenSetting): Promise<void> {
  if (s.port === 0) return;
  const bound = s.proto === 'tcp' ? probeTcp(s.host, s.port) : probeUdp(s.host, s.port);
  try {
    await bound;
  } catch (err) {
    throw explainListenError(err, [s]) ?? err;
  }
}

async function probeTcp(host: string, port: number): Promise<void> {
  const { createServer } = await import('node:net');
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
  });
}

async function probeUdp(host: string, port: number): Promise<void> {
  const [{ createSocket }, { isIPv6 }] = await Promise.all([import('node:dgram'), import('node:net')]);
  await new Promise<void>((resolve, reject) => {
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    socket.unref();
    socket.once('error', reject);
    socket.bind({ port, address: host, exclusive: true }, () => socket.close(() => resolve()));
  });
}
