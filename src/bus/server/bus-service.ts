import { chmodSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Registry } from 'prom-client';
import { ClosedError, ConnectionError, ErrorCode } from '../../errors.js';
import { silentLogger, type Logger } from '../../log/silent.js';
import { socketPeerCred } from '../../native/peer-cred.js';
import { AdminHttp, type Health } from '../../service/admin-http.js';
import { BusMsgId } from '../wire/msg-id.js';
import { Control } from '../wire/control.js';
import { writeU32 } from '../wire/data-frame.js';
import { BusConn } from './bus-conn.js';
import { BusEngine } from './bus-engine.js';
import { NatsBridge } from '../bridge/nats-bridge.js';
import type { BridgeSettings } from '../bridge/bridge-settings.js';
import { busMetrics } from './bus-metrics.js';
import { procsJson, subsJson } from './queries.js';
import { busSettings, type BusSettings } from './settings.js';
import { prepareSocketPath, removeSocketFile, SOCKET_MODE, socketInode } from './socket-file.js';

export interface BusServiceOptions {
  socketPath: string;
  settings?: BusSettings;
  /** Admin HTTP (/healthz, /metrics, /procs, /subs) on 127.0.0.1; undefined = none. 0 = any free port. */
  httpPort?: number;
  logger?: Logger;
  /** Monotonic clock in ms (tests). */
  now?: () => number;
  /** Take the socket path over from a live bus (rolling restart under `lars up`); default refuse. */
  replace?: boolean;
  /** Socket of lars shm for shared-memory payloads (default LARS_SHM_SOCKET or the data directory's). */
  shmSocket?: string;
  /** `[bus.bridge]`: the bridge to NATS between hosts (none when undefined). */
  bridge?: BridgeSettings;
}

/** How often close() checks whether everything queued has been written during the linger. */
const LINGER_POLL_MS = 10;
/** After the linger, how long ended connections get to close before they are destroyed. */
const CLOSE_GRACE_MS = 500;

/**
 * `lars bus`: the daemon (DESIGN §9). Listens on a Unix stream socket (0600 in a 0700 directory),
 * reads each peer's pid/uid from the kernel (SO_PEERCRED), and runs a BusEngine; an admin HTTP port
 * serves /healthz, /metrics, /procs and /subs.
 *
 * close(): stop accepting, tell clients (NOTICE LAME_DUCK), stop taking publishes, let queued output
 * drain for at most linger_ms, fail pending requests with CLOSED, close. destroy(): at once.
 * Both idempotent; start() after either rejects with ClosedError.
 */
export class BusService {
  readonly engine: BusEngine;
  readonly registry: Registry;
  private readonly opts: BusServiceOptions;
  private readonly log: Logger;
  private server: Server | undefined;
  private admin: AdminHttp | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private socketPath = '';
  private socketIno = -1;
  private nextConnId = 1;
  private state: 'idle' | 'running' | 'closing' | 'closed' = 'idle';
  private closing: Promise<void> | undefined;

  constructor(options: BusServiceOptions) {
    this.opts = options;
    this.log = options.logger ?? silentLogger;
    this.engine = new BusEngine({
      settings: options.settings ?? busSettings(),
      logger: this.log,
      ...(options.now ? { now: options.now } : {}),
      ...(options.shmSocket ? { shmSocket: options.shmSocket } : {}),
    });
    this.registry = busMetrics(this.engine);
  }

  get settings(): BusSettings {
    return this.engine.settings;
  }

  get socket(): string {
    return this.socketPath;
  }

  async start(): Promise<{ socket: string; httpPort: number | undefined }> {
    if (this.state !== 'idle') throw new ClosedError('bus service is closed or already started');
    this.state = 'running';
    this.socketPath = await prepareSocketPath(this.opts.socketPath, this.log, this.opts.replace === true);
    const server = createServer({ allowHalfOpen: false }, (socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // The socket is created 0600 (umask around the synchronous bind of an exclusive listen), so
      // no other user can connect even for a moment; chmod again in case the umask was ignored.
      const old = process.umask(0o177);
      try {
        server.listen({ path: this.socketPath, exclusive: true }, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(old);
      }
    });
    chmodSync(this.socketPath, SOCKET_MODE);
    this.socketIno = socketInode(this.socketPath);
    this.sweepTimer = setInterval(() => this.engine.sweep(), this.settings.sweepMs);
    this.sweepTimer.unref();
    let httpPort: number | undefined;
    if (this.opts.httpPort !== undefined) {
      this.admin = new AdminHttp({
        host: '127.0.0.1',
        port: this.opts.httpPort,
        registry: this.registry,
        health: () => this.health(),
        routes: {
          'GET /procs': () => procsJson(this.engine.procs.all(), this.engine.now()),
          'GET /subs': () => subsJson(this.engine.procs.all(), this.engine.router),
        },
      });
      httpPort = (await this.admin.listen()).port;
    }
    this.startBridge();
    this.log.info({ socket: this.socketPath, httpPort, busId: this.engine.busId }, 'bus listening');
    return { socket: this.socketPath, httpPort };
  }

  /** The bridge joins this bus as a client once it listens, and reaches NATS in the background. */
  private startBridge(): void {
    const settings = this.opts.bridge;
    if (!settings) return;
    this.engine.setForwards(settings.forwards);
    const bridge = new NatsBridge({
      settings,
      busSocket: this.socketPath,
      ...(this.opts.shmSocket ? { shmSocket: this.opts.shmSocket } : {}),
      busId: this.engine.busId,
      log: this.log.child({ part: 'bridge' }),
    });
    this.engine.bridge = bridge;
    bridge.start();
  }

  health(): Health {
    const procs = this.engine.procs.counts();
    const bridge = this.engine.bridge;
    return {
      status: this.state === 'running' ? 'ok' : 'failing',
      socket: this.socketPath,
      connections: this.engine.conns.size,
      procs,
      subscriptions: this.engine.sublist.count,
      requestsInFlight: this.engine.router.pending.size,
      dropped: { ...this.engine.stats.dropped },
      shm: { transfers: this.engine.relay.transfers, failures: this.engine.relay.failures },
      ...(bridge
        ? {
            bridge: {
              state: bridge.state,
              url: bridge.settings.url,
              prefix: bridge.settings.prefix,
              ...bridge.counters,
            },
          }
        : {}),
    };
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown(false);
    return this.closing;
  }

  destroy(): Promise<void> {
    if (this.closing && this.state === 'closed') return this.closing;
    this.closing = this.shutdown(true);
    return this.closing;
  }

  private accept(socket: Socket): void {
    const engine = this.engine;
    if (this.state !== 'running' || engine.conns.size >= this.settings.maxConns) {
      engine.stats.connectionsRefused += 1;
      const err = new ConnectionError(
        ErrorCode.MAX_CONNECTIONS,
        this.state === 'running'
          ? `the bus is at max_conns (${this.settings.maxConns})`
          : 'the bus is shutting down',
      );
      socket.on('error', () => {});
      // Written, then destroyed: the peer's side need not be read for the socket to go away.
      socket.end(errFrame(err.code, err.message), () => socket.destroy());
      return;
    }
    const conn = new BusConn(socket, engine, this.nextConnId++, socketPeerCred(socket));
    engine.attach(conn);
  }

  private async shutdown(abrupt: boolean): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closing';
    const engine = this.engine;
    await engine.bridge?.close();
    // Stop accepting now; net.Server calls back only once every connection is gone (awaited last).
    const server = this.server;
    const serverClosed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined;
    if (server) removeSocketFile(this.socketPath, this.socketIno);
    if (!abrupt) {
      engine.startLameDuck();
      const deadline = performance.now() + this.settings.lingerMs;
      while (performance.now() < deadline && (engine.pendingOutBytes() > 0 || engine.router.pending.size > 0))
        await new Promise((r) => setTimeout(r, LINGER_POLL_MS));
      engine.failAllPending();
      const closed = [...engine.conns].map(
        (c) => new Promise<void>((r) => c.socket.once('close', () => r())),
      );
      for (const c of engine.conns) c.end(new ClosedError('the bus is shutting down'));
      const grace = new Promise<void>((r) => setTimeout(r, CLOSE_GRACE_MS).unref());
      await Promise.race([Promise.all(closed), grace]);
    }
    const gone = [...engine.conns].map((c) => new Promise<void>((r) => c.socket.once('close', () => r())));
    for (const c of [...engine.conns]) c.destroy(new ClosedError('the bus is shutting down'));
    await Promise.all(gone);
    await serverClosed;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await engine.relay.close();
    await this.admin?.close();
    this.state = 'closed';
    this.log.info(
      { ...engine.stats, dropped: engine.stats.dropped, requests: engine.stats.requests },
      'bus stopped',
    );
  }
}

/** A whole ERR frame (connection-level, op 0), for refusing a connection before a BusConn exists. */
function errFrame(code: string, message: string): Buffer {
  const body = Control.err.encode({ op: 0, id: 0, code, message });
  const out = Buffer.allocUnsafe(8 + body.length);
  writeU32(out, 0, BusMsgId.Err);
  writeU32(out, 4, body.length);
  out.set(body, 8);
  return out;
}
