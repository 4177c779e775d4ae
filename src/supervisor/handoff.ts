import { createServer, type Server, type Socket } from 'node:net';
import { ClosedError } from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { SupervisorMsg } from './child-ipc.js';

/** Connections held while no worker can take them (all restarting), before new ones are refused. */
export const DEFAULT_MAX_PENDING = 1_024;
/** How long a held connection waits for a worker before it is closed. */
export const DEFAULT_PENDING_TIMEOUT_MS = 5_000;

/** A worker that can be handed a connection (ManagedWorker in the supervisor; fakes in tests). */
export interface HandoffTarget {
  readonly pid: number;
  /**
   * Sends the socket; false only when it could not even be queued (channel closed), the socket
   * then still belongs to the caller. The callback reports the outcome of a queued send.
   */
  send(message: { type: string }, handle: Socket, callback: (err: Error | null) => void): boolean;
}

export interface HandoffServerOptions {
  host: string;
  port: number;
  /** The current serving worker of each slot (undefined: none ready). Read on every connection. */
  slots: () => ReadonlyArray<HandoffTarget | undefined>;
  logger?: Logger;
  maxPending?: number;
  pendingTimeoutMs?: number;
}

/** FNV-1a, 32 bit: a stable, cheap hash of the peer address. */
export function addressKey(address: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < address.length; i++) {
    h ^= address.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Picks the slot for a key: slot `key % n` when its worker is ready, else the next ready one, so a
 * peer keeps landing on the same worker across reconnects while the worker set is unchanged.
 */
export function pickSlot<T>(slots: ReadonlyArray<T | undefined>, key: number): T | undefined {
  const n = slots.length;
  for (let i = 0; i < n; i++) {
    const t = slots[(key + i) % n];
    if (t !== undefined) return t;
  }
  return undefined;
}

/**
 * Handoff mode of the dns service (issue 7): the master accepts every connection itself and passes
 * it to the worker chosen by a hash of the peer's address (`child.send(msg, socket)`); the worker
 * serves it as if it had accepted it. Sockets are accepted paused, so the master never reads a byte.
 * While no worker is ready (all restarting) connections are held, bounded by count and time.
 */
export class HandoffServer {
  readonly stats = { accepted: 0, handed: 0, held: 0, dropped: 0, sendErrors: 0 };
  private readonly opts: HandoffServerOptions;
  private readonly log: Logger;
  private readonly server: Server;
  private readonly pending: Array<{ socket: Socket; since: number }> = [];
  private pendingTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: HandoffServerOptions) {
    this.opts = options;
    this.log = options.logger ?? silentLogger;
    this.server = createServer({ pauseOnConnect: true }, (socket) => this.onConnection(socket));
    this.server.on('error', (err) => this.log.error({ err }, 'handoff listener error'));
  }

  listen(): Promise<number> {
    if (this.closed) return Promise.reject(new ClosedError('handoff server is closed'));
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.opts.host, port: this.opts.port, exclusive: true }, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        resolve(a && typeof a === 'object' ? a.port : 0);
      });
    });
  }

  /**
   * Stops accepting; held connections are closed (their peers reconnect). Idempotent. Does not wait
   * for the 'close' event: node tracks sockets handed to children and would only emit it once the
   * workers closed them all, which they do when they drain, after this.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pendingTimer) clearInterval(this.pendingTimer);
    for (const p of this.pending.splice(0)) p.socket.destroy();
    if (this.server.listening) this.server.close();
  }

  /** A worker became ready: hand it whatever was held. */
  drainPending(): void {
    while (this.pending.length > 0) {
      const target = this.pick(this.pending[0]!.socket);
      if (!target) return;
      this.handTo(target, this.pending.shift()!.socket);
    }
  }

  private onConnection(socket: Socket): void {
    this.stats.accepted++;
    // Errors before the handoff (peer reset) must not reach the master's process.
    socket.on('error', () => {});
    if (this.closed) return void socket.destroy();
    const target = this.pick(socket);
    if (target) return this.handTo(target, socket);
    this.hold(socket);
  }

  private pick(socket: Socket, except?: HandoffTarget): HandoffTarget | undefined {
    const slots = this.opts.slots().map((t) => (t === except ? undefined : t));
    return pickSlot(slots, addressKey(socket.remoteAddress ?? ''));
  }

  private handTo(target: HandoffTarget, socket: Socket): void {
    const issued = target.send({ type: SupervisorMsg.CONN }, socket, (err) => {
      if (!err) {
        this.stats.handed++;
        return;
      }
      // The worker died with the socket in flight; the socket's handle is gone from this process
      // either way, so the peer sees the connection end and reconnects (to a live worker).
      this.stats.sendErrors++;
      this.log.warn({ pid: target.pid, err: err.message }, 'handoff to a worker failed');
      socket.destroy();
    });
    if (issued) return;
    // The channel was already closed: the socket is untouched, give it to another worker.
    this.stats.sendErrors++;
    const next = this.pick(socket, target);
    if (next) this.handTo(next, socket);
    else this.hold(socket);
  }

  private hold(socket: Socket): void {
    const max = this.opts.maxPending ?? DEFAULT_MAX_PENDING;
    if (this.pending.length >= max) {
      this.stats.dropped++;
      socket.destroy();
      return;
    }
    this.stats.held++;
    this.pending.push({ socket, since: Date.now() });
    this.pendingTimer ??= setInterval(() => this.expirePending(), 250);
    this.pendingTimer.unref();
  }

  private expirePending(): void {
    const limit = Date.now() - (this.opts.pendingTimeoutMs ?? DEFAULT_PENDING_TIMEOUT_MS);
    while (this.pending.length > 0 && this.pending[0]!.since <= limit) {
      this.stats.dropped++;
      this.pending.shift()!.socket.destroy();
    }
    if (this.pending.length === 0 && this.pendingTimer) {
      clearInterval(this.pendingTimer);
      this.pendingTimer = undefined;
    }
  }
}
