import * as net from 'node:net';

/**
 * Listening sockets a process inherited from the process that started it (issue 11: `lars up`
 * holds each service's listening sockets across worker restarts, so clients queue instead of
 * being refused, and hands a duplicate to every worker it starts, as extra stdio descriptors).
 *
 * Like systemd's LISTEN_FDS, but named: the parent lists them in `LARSUP_LISTEN_FDS` as a JSON
 * object `{"tcp 127.0.0.1 7778": 4, "udp 127.0.0.1 8888": 5}`, and a server takes a descriptor
 * only when it listens on exactly that protocol, host and port; anything else binds as usual.
 * Each descriptor is taken once (its handle owns it afterwards). The name does not start with
 * `LARS_`: that prefix is reserved for settings.
 */
export const LISTEN_FDS_ENV = 'LARSUP_LISTEN_FDS';

export type ListenProto = 'tcp' | 'udp';

export function listenKey(proto: ListenProto, host: string, port: number): string {
  return `${proto} ${host} ${port}`;
}

let table: Map<string, number> | undefined;

function inherited(): Map<string, number> {
  if (table) return table;
  table = new Map();
  const raw = process.env[LISTEN_FDS_ENV];
  if (!raw) return table;
  try {
    for (const [key, fd] of Object.entries(JSON.parse(raw) as Record<string, unknown>)) {
      if (typeof fd === 'number' && Number.isInteger(fd) && fd > 2) table.set(key, fd);
    }
  } catch {
    // Not ours or damaged: bind as usual.
  }
  return table;
}

/** The inherited descriptor for (proto, host, port), once; undefined when there is none. */
export function takeInheritedFd(proto: ListenProto, host: string, port: number): number | undefined {
  if (port === 0) return undefined;
  const t = inherited();
  const key = listenKey(proto, host, port);
  const fd = t.get(key);
  if (fd !== undefined) t.delete(key);
  return fd;
}

type CreateServerHandle = (address: null, port: null, addressType: null, fd: number) => unknown;

/**
 * A server handle over the inherited listening TCP socket of (host, port), for
 * `net.Server.listen(handle)`, which listens on it directly, also in a node:cluster worker (a plain
 * `listen({ fd })` would be resolved by the cluster master in its own descriptor table). Built with
 * node:net's exported `_createServerHandle`, which node:cluster uses for the same purpose.
 * Undefined when nothing was inherited for that address (or the handle cannot be made).
 */
export function takeInheritedTcpHandle(host: string, port: number): object | undefined {
  const fd = takeInheritedFd('tcp', host, port);
  if (fd === undefined) return undefined;
  const create = (net as unknown as { _createServerHandle?: CreateServerHandle })._createServerHandle;
  if (typeof create !== 'function') return undefined;
  const handle = create(null, null, null, fd);
  return typeof handle === 'object' && handle !== null ? handle : undefined;
}
