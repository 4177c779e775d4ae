import { createServer, type Server, type Socket } from 'node:net';
import { ClosedError, type ProtocolError } from '../errors.js';
import { LogLimiter } from '../log/log-limiter.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { tracer } from '../log/trace.js';
import type { DispatchObserver, FrameDispatcher } from './dispatcher.js';
import {
  TcpConnection,
  type ConnectionCounters,
  type ConnectionOwner,
  type CutKind,
} from './tcp-connection.js';
import { takeInheritedTcpHandle } from './inherited-sockets.js';
import { nextTransportId } from './transport.js';

const trace = tracer('net');

/** Default grace period of close(): how long connections get to drain before they are destroyed. */
export const DEFAULT_CLOSE_GRACE_MS = 5_000;
/** How long a connection closed by a handler may linger half-closed before it is destroyed. */
export const DEFAULT_LINGER_MS = 5_000;
/** close() staggers connection ends only above this many connections (small servers just close). */
export const STAGGER_MIN_CONNECTIONS = 16;
/** Number of waves a staggered close is split into, spread over the first half of the grace period. */
const STAGGER_WAVES = 10;
/** `[reactor] header_timeout`: seconds a started frame has to complete (issue 11). */
export const DEFAULT_HEADER_TIMEOUT_MS = 10_000;
/** `[reactor] handshake_timeout`: seconds a new connection has to complete its first frame. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;
/** `[reactor] max_conn_per_ip`: simultaneous connections from one address. */
export const DEFAULT_MAX_CONN_PER_IP = 1024;

export interface TcpServerOptions<S> {
  host: string;
  /** 0 picks a free port; listen() resolves with the real one. */
  port: number;
  /**
   * Listen on this Unix-domain socket path instead of host/port (same framing and policies; the
   * caller creates the directory and sets permissions). listen() resolves with { host: path, port: 0 }.
   */
  path?: string;
  /** Connections beyond this are refused (closed at once) and counted. */
  maxConnections: number;
  /** Per-connection outbound cap in bytes; see the slow-peer policy in tcp-connection.ts. */
  maxOutboundBytes: number;
  /** Close connections with no inbound traffic for this long. Default: never. */
  idleTimeoutMs?: number;
  /**
   * Cut a new connection that has not completed its first frame within this (ms; 0 = never).
   * Default DEFAULT_HANDSHAKE_TIMEOUT_MS. A connection that completed a frame may stay quiet forever.
   */
  handshakeTimeoutMs?: number;
  /** Cut a connection holding a started frame for this long (ms; 0 = never). Default 10 s. */
  headerTimeoutMs?: number;
  /** Connections from one remote address beyond this are refused and counted. Default 1024. */
  maxConnectionsPerIp?: number;
  /** See ConnectionOwner.readWhileClosing (the reporter's drain). Default false. */
  readWhileClosing?: boolean;
  /** See DEFAULT_LINGER_MS. */
  lingerMs?: number;
  logger?: Logger;
  dispatcher: FrameDispatcher<TcpConnection<S>>;
  /** Creates `conn.state` for each accepted connection. Default: `{}`. */
  createState?: (conn: TcpConnection<S>) => S;
  /** Called once per accepted connection, before any of its frames is dispatched. */
  onConnectionStart?: (conn: TcpConnection<S>) => void;
  /**
   * Called once per accepted connection after its socket closed. `reason` is undefined for an
   * orderly close by the peer, otherwise the error that ended it (ConnectionError SLOW_PEER,
   * ProtocolError, TimeoutError for idle, handshake or header timeouts, ClosedError for server
   * shutdown, or a socket error).
   */
  onConnectionClose?: (conn: TcpConnection<S>, reason: Error | undefined) => void;
}

export interface TcpServerStats extends ConnectionCounters {
  connectionsAccepted: number;
  /** Refused at maxConnections. */
  connectionsRefused: number;
  /** Refused at maxConnectionsPerIp. */
  perIpRefused: number;
  connectionsOpen: number;
  unknownMsgid: number;
  handlerErrors: number;
}

type ServerState = 'idle' | 'listening' | 'closing' | 'closed';

/**
 * A TCP server speaking Lars frames (DESIGN §2): each connection feeds a FrameDecoder and dispatches
 * frames by msgid; replies produced while handling one inbound chunk leave in one write.
 *
 * Shutdown (STYLE §10):
 * - close(graceMs): stops accepting; every connection flushes what it has queued and is ended (in
 *   waves over the first half of the grace period when there are many, so thousands of agents do not
 *   reconnect at once); connections still open when the grace period ends are destroyed. Resolves when
 *   every connection is closed. Connections not yet ended keep being served meanwhile.
 * - destroy(err): stops accepting and destroys every connection now (queued frames are lost).
 * Both are idempotent and may be combined (destroy() during close() finishes it at once).
 * After either, listen() rejects with ClosedError and sends on closed connections throw ClosedError.
 */
export class TcpServer<S = Record<string, unknown>> {
  readonly stats: TcpServerStats = {
    connectionsAccepted: 0,
    connectionsRefused: 0,
    connectionsOpen: 0,
    framesIn: 0,
    framesOut: 0,
    unknownMsgid: 0,
    protocolErrors: 0,
    handlerErrors: 0,
    slowPeerCuts: 0,
    idleTimeouts: 0,
    handshakeTimeouts: 0,
    headerTimeouts: 0,
    perIpRefused: 0,
  };

  private readonly options: TcpServerOptions<S>;
  private readonly logger: Logger;
  private readonly owner: ConnectionOwner<S>;
  private readonly conns = new Map<number, TcpConnection<S>>();
  /** Open connections per remote address (max_conn_per_ip). */
  private readonly perIp = new Map<string, number>();
  private readonly maxPerIp: number;
  private readonly cutLog: LogLimiter<CutKind>;
  private server: Server | undefined;
  private state: ServerState = 'idle';
  private listening: Promise<{ host: string; port: number }> | undefined;
  private atLimit = false;
  private serverClosed = false;
  private closed: Promise<void> | undefined;
  private resolveClosed: (() => void) | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(options: TcpServerOptions<S>) {
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.cutLog = new LogLimiter<CutKind>(this.logger);
    this.maxPerIp = options.maxConnectionsPerIp ?? DEFAULT_MAX_CONN_PER_IP;
    const stats = this.stats;
    const observer: DispatchObserver<TcpConnection<S>> = {
      unknownMsgid(msgid, conn) {
        stats.unknownMsgid += 1;
        trace?.(`conn ${conn.id}: unknown msgid ${msgid} skipped`);
      },
      protocolError(err: ProtocolError, _msgid, conn) {
        conn.protocolViolation(err);
      },
      handlerError(err, msgid, conn) {
        stats.handlerErrors += 1;
        conn.handlerFailed(err, msgid);
      },
    };
    this.owner = {
      dispatcher: options.dispatcher,
      observer,
      counters: stats,
      logger: this.logger,
      maxOutboundBytes: options.maxOutboundBytes,
      idleTimeoutMs: options.idleTimeoutMs ?? 0,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      headerTimeoutMs: options.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS,
      cutLog: this.cutLog,
      readWhileClosing: options.readWhileClosing ?? false,
      lingerMs: options.lingerMs ?? DEFAULT_LINGER_MS,
      connectionClosed: (conn, reason) => this.connectionClosed(conn, reason),
    };
  }

  /** Open connections (a snapshot is not taken: do not close connections while iterating). */
  connections(): IterableIterator<TcpConnection<S>> {
    return this.conns.values();
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** The bound address, once listening. */
  address(): { host: string; port: number } | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  /** Starts listening. Idempotent (returns the same promise); rejects with ClosedError after close. */
  listen(): Promise<{ host: string; port: number }> {
    if (this.closed) return Promise.reject(new ClosedError('server is closed'));
    if (this.listening) return this.listening;
    const server = createServer({ allowHalfOpen: false });
    this.server = server;
    server.on('connection', (socket) => this.onConnection(socket));
    server.on('close', () => {
      this.serverClosed = true;
      this.maybeClosed();
    });
    this.listening = new Promise((resolve, reject) => {
      const onListenError = (err: Error): void => {
        if (this.state === 'idle') this.state = 'closed';
        this.serverClosed = true;
        this.maybeClosed();
        reject(err);
      };
      server.once('error', onListenError);
      const onListening = (): void => {
        server.off('error', onListenError);
        // Accept errors (EMFILE, ...) must not crash the process: log them, keep serving.
        server.on('error', (err) => this.logger.error({ err }, 'tcp server error'));
        if (this.state !== 'idle') {
          // close()/destroy() was called while binding.
          server.close();
          reject(new ClosedError('server closed while starting to listen'));
          return;
        }
        this.state = 'listening';
        const addr = this.address() ?? { host: this.options.path ?? '', port: 0 };
        this.logger.info({ host: addr.host, port: addr.port, inherited }, 'tcp server listening');
        resolve(addr);
      };
      // Under `lars up` the socket may be held by the master across restarts (inherited-sockets.ts).
      // A Unix socket path (the bus, lars shm) is never inherited.
      const handle =
        this.options.path === undefined
          ? takeInheritedTcpHandle(this.options.host, this.options.port)
          : undefined;
      const inherited = handle !== undefined;
      if (handle) server.listen(handle, onListening);
      else if (this.options.path !== undefined) server.listen({ path: this.options.path }, onListening);
      else server.listen({ host: this.options.host, port: this.options.port }, onListening);
    });
    return this.listening;
  }

  /** Graceful shutdown; see the class comment. Resolves when every connection is closed. */
  close(graceMs: number = DEFAULT_CLOSE_GRACE_MS): Promise<void> {
    if (this.closed) return this.closed;
    const done = this.beginShutdown();
    const all = [...this.conns.values()];
    const closedErr = new ClosedError('server is shutting down');
    if (all.length <= STAGGER_MIN_CONNECTIONS) {
      for (const c of all) c.close(closedErr, graceMs);
    } else {
      const waveSize = Math.ceil(all.length / STAGGER_WAVES);
      const step = graceMs / 2 / STAGGER_WAVES;
      for (let w = 0; w * waveSize < all.length; w++) {
        const wave = all.slice(w * waveSize, (w + 1) * waveSize);
        this.after(w * step, () => {
          for (const c of wave) c.close(closedErr, graceMs);
        });
      }
    }
    this.after(graceMs, () => {
      for (const c of this.conns.values()) c.destroy(new ClosedError('server grace period expired'));
    });
    this.maybeClosed();
    return done;
  }

  /** Abortive shutdown: every connection is destroyed now. Resolves when their sockets are gone. */
  destroy(err?: Error): Promise<void> {
    const done = this.beginShutdown();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const reason = err ?? new ClosedError('server destroyed');
    for (const c of this.conns.values()) c.destroy(reason);
    this.maybeClosed();
    return done;
  }

  private beginShutdown(): Promise<void> {
    if (this.closed) return this.closed;
    this.closed = new Promise<void>((resolve) => {
      this.resolveClosed = resolve;
    });
    this.stopAccepting();
    return this.closed;
  }

  private stopAccepting(): void {
    const wasListening = this.state === 'listening';
    this.state = 'closing';
    if (wasListening && this.server) {
      this.server.close();
    } else if (!this.listening) {
      this.serverClosed = true;
    }
    // If listen() is still binding, its callback sees state 'closing' and closes the server.
  }

  private after(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }

  private maybeClosed(): void {
    if (this.state !== 'closing' || !this.serverClosed || this.conns.size > 0) return;
    this.state = 'closed';
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.logger.info({}, 'tcp server closed');
    this.resolveClosed?.();
  }

  private onConnection(socket: Socket): void {
    if (this.state !== 'listening') {
      socket.destroy();
      return;
    }
    if (this.conns.size >= this.options.maxConnections) {
      this.stats.connectionsRefused += 1;
      if (!this.atLimit) {
        // Logged once per crossing of the limit, not once per refused connection.
        this.atLimit = true;
        this.logger.warn(
          { limit: this.options.maxConnections },
          'connection limit reached: refusing new connections',
        );
      }
      socket.on('error', ignore);
      socket.destroy();
      return;
    }
    const ip = socket.remoteAddress ?? '';
    const fromIp = this.perIp.get(ip) ?? 0;
    if (fromIp >= this.maxPerIp) {
      this.stats.perIpRefused += 1;
      this.cutLog.warn(
        'max_conn_per_ip',
        { remote: ip, limit: this.maxPerIp },
        'connection refused: too many connections from one address (max_conn_per_ip)',
      );
      socket.on('error', ignore);
      socket.destroy();
      return;
    }
    this.perIp.set(ip, fromIp + 1);
    const conn = new TcpConnection<S>(socket, this.owner, nextTransportId());
    this.conns.set(conn.id, conn);
    this.stats.connectionsAccepted += 1;
    this.stats.connectionsOpen = this.conns.size;
    trace?.(`conn ${conn.id} accepted from ${conn.remote.address}:${conn.remote.port}`);
    try {
      if (this.options.createState) conn.state = this.options.createState(conn);
      this.options.onConnectionStart?.(conn);
    } catch (err) {
      this.logger.error({ conn: conn.id, err }, 'onConnectionStart failed: closing the connection');
      conn.destroy(err instanceof Error ? err : undefined);
    }
  }

  private connectionClosed(conn: TcpConnection<S>, reason: Error | undefined): void {
    this.conns.delete(conn.id);
    const left = (this.perIp.get(conn.remote.address) ?? 1) - 1;
    if (left > 0) this.perIp.set(conn.remote.address, left);
    else this.perIp.delete(conn.remote.address);
    this.stats.connectionsOpen = this.conns.size;
    if (this.atLimit && this.conns.size < this.options.maxConnections) {
      this.atLimit = false;
      this.logger.info({ limit: this.options.maxConnections }, 'below the connection limit again');
    }
    try {
      this.options.onConnectionClose?.(conn, reason);
    } catch (err) {
      this.logger.error({ conn: conn.id, err }, 'onConnectionClose failed');
    }
    this.maybeClosed();
  }
}

function ignore(): void {}
