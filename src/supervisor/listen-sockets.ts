import type { Logger } from '../log/logger.js';
import type { NativeSockets } from '../native/index.js';
import { listenKey, type ListenProto } from '../net/inherited-sockets.js';

/** A socket a service listens on: TCP (dns, reporter, console) or UDP (agent). */
export interface ListenSpec {
  proto: ListenProto;
  host: string;
  port: number;
}

/** Listen backlog of the held TCP sockets: what queues while no worker accepts (node's default). */
const BACKLOG = 511;

/**
 * The listening sockets the `lars up` master holds for its services (issue 11: no restart gap).
 *
 * node:cluster closes a shared listening socket when the last worker using it exits, so while the
 * only worker of a service was being replaced its port refused connections (the console: 19.9 s;
 * the agent's UDP API: 264 failed requests). Here the master creates each socket once (the native
 * addon: socket, bind, listen, with no event-loop watcher, so the master never accepts or reads)
 * and passes a duplicate to every worker it starts; workers listen on it (net/inherited-sockets.ts).
 * A worker's death leaves the socket open: connections wait in the backlog and datagrams in the
 * receive buffer until the replacement serves them.
 *
 * Without the addon, `fdFor` returns undefined and workers bind through node:cluster as before.
 * A socket that cannot be created (port taken) is logged and left to the worker, which then fails
 * with its own error and is restarted or given up on like any crash.
 */
export class ListenSockets {
  private readonly held = new Map<string, number>();
  private warnedUnavailable = false;

  constructor(
    private readonly sockets: NativeSockets | undefined,
    private readonly log: Logger,
  ) {}

  /** The held descriptor for `spec`, created on first use; undefined when it cannot be held. */
  fdFor(spec: ListenSpec): number | undefined {
    try {
      return this.hold(spec);
    } catch (err) {
      this.log.warn(
        { ...spec, err: (err as Error).message },
        'could not hold the listening socket; the worker binds it itself',
      );
      return undefined;
    }
  }

  /**
   * Like fdFor, but a socket that cannot be created throws (errno `code` such as EADDRINUSE): the
   * master's check before it starts anything. Undefined without the native addon.
   */
  hold(spec: ListenSpec): number | undefined {
    const key = listenKey(spec.proto, spec.host, spec.port);
    const known = this.held.get(key);
    if (known !== undefined) return known;
    if (!this.sockets) {
      if (!this.warnedUnavailable) {
        this.warnedUnavailable = true;
        this.log.warn(
          {},
          'native addon unavailable: listening sockets close while a crashed worker restarts (clients are refused meanwhile)',
        );
      }
      return undefined;
    }
    const fd =
      spec.proto === 'tcp'
        ? this.sockets.listenTcp(spec.host, spec.port, BACKLOG)
        : this.sockets.bindUdp(spec.host, spec.port);
    this.held.set(key, fd);
    return fd;
  }

  /** Closes every held socket not in `keep` (after a reload moved a service). */
  retain(keep: readonly ListenSpec[]): void {
    const wanted = new Set(keep.map((s) => listenKey(s.proto, s.host, s.port)));
    for (const [key, fd] of this.held) {
      if (wanted.has(key)) continue;
      this.close(key, fd);
    }
  }

  closeAll(): void {
    for (const [key, fd] of this.held) this.close(key, fd);
  }

  get size(): number {
    return this.held.size;
  }

  private close(key: string, fd: number): void {
    this.held.delete(key);
    try {
      this.sockets?.closeFd(fd);
    } catch (err) {
      this.log.warn({ socket: key, err: (err as Error).message }, 'closing a held socket failed');
    }
  }
}
