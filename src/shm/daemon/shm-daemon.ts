import { EventEmitter } from 'node:events';
import { chmodSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { ClosedError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log/silent.js';
import { socketPeerCred } from '../../native/index.js';
import { TcpServer } from '../../net/tcp-server.js';
import { AdminHttp, type Health } from '../../service/admin-http.js';
import { HEADER_BYTES, layoutPool, writeHeader, type PoolLayout } from '../pool-layout.js';
import {
  createSegment,
  resolveMode,
  unlinkSegment,
  type PoolSegment,
  type ShmModeSetting,
} from '../pool-segment.js';
import type { ShmMode } from '../reports.js';
import { formatClasses, humanSize, type SizeClass } from '../size-classes.js';
import { ShmMsg, type ReclaimReasonName } from '../wire-ids.js';
import {
  checkShmSpace,
  nextGeneration,
  prepareSocketPath,
  segmentName,
  socketTag,
  sweepOrphanSegments,
} from './daemon-files.js';
import { ProofBook } from './peer-proof.js';
import { processExists, processName } from './process-info.js';
import { ShmCore } from './shm-core.js';
import { shmMetrics } from './shm-metrics.js';
import { ShmProtocol, type ShmConnection, type ShmConnState } from './shm-protocol.js';

export const DEFAULT_QUOTA_PERCENT = 25;
export const DEFAULT_MAX_BATCHES_PER_PROC = 1024;
export const DEFAULT_BATCH_TTL_MS = 30_000;
export const DEFAULT_MAX_BATCH_TTL_MS = 600_000;
export const DEFAULT_SHM_MAX_CONNECTIONS = 1024;
/** Outbound cap per connection: replies are small; a client that does not read them is cut. */
export const SHM_MAX_OUTBOUND_BYTES = 4 * 1024 * 1024;

export interface ShmDaemonOptions {
  socketPath: string;
  classes: readonly SizeClass[];
  mode?: ShmModeSetting;
  quotaPercent?: number;
  maxBatchesPerProc?: number;
  defaultTtlMs?: number;
  maxTtlMs?: number;
  maxConnections?: number;
  /** Admin HTTP (/healthz, /metrics, /holders); omitted = none. */
  http?: { host: string; port: number };
  logger?: Logger;
}

export interface ShmDaemonInfo {
  socket: string;
  mode: ShmMode;
  /** Why the daemon runs in file mode, when it does. */
  modeReason?: string;
  generation: number;
  poolName: string;
  poolSize: number;
  httpPort?: number;
}

/** What a release event reports (blocks freed because a connection closed or was reclaimed). */
export interface ShmReleaseEvent {
  pid: number;
  reason: ReclaimReasonName;
  blocks: number;
  bytes: number;
}

/**
 * `lars shm` (DESIGN §10, issue 12): owns the pool segment and every reference count; serves
 * clients on a Unix stream socket (0600 in a 0700 directory) on one thread. Peer identity comes from
 * the kernel (SO_PEERCRED) in addon mode and from a file proof in file mode (peer-proof.ts).
 * Emits 'release' (ShmReleaseEvent) when a connection's holdings are released on close or reclaim.
 *
 * close(): stop accepting, close every connection (releasing what it held), unlink the segment and
 * the socket. destroy(): the same without the grace period. Both idempotent.
 */
export class ShmDaemon extends EventEmitter {
  private readonly log: Logger;
  private readonly layout: PoolLayout;
  private core: ShmCore | undefined;
  private server: TcpServer<ShmConnState> | undefined;
  private admin: AdminHttp | undefined;
  private segment: PoolSegment | undefined;
  private proofs: ProofBook | undefined;
  private info: ShmDaemonInfo | undefined;
  private refusedPeers = 0;
  private closing: Promise<void> | undefined;
  /** Set once our socket exists at socketPath: only then is it ours to remove. */
  private ownsSocket = false;

  constructor(private readonly options: ShmDaemonOptions) {
    super();
    this.log = options.logger ?? silentLogger;
    this.layout = layoutPool(options.classes);
  }

  /** The core (state and counters); defined once started. */
  get state(): ShmCore | undefined {
    return this.core;
  }

  /** Creates the pool and serves; on any failure what was created is removed again. */
  async start(): Promise<ShmDaemonInfo> {
    if (this.closing) throw new ClosedError('shm daemon is closed');
    try {
      return await this.open();
    } catch (err) {
      await this.destroy();
      throw err;
    }
  }

  private async open(): Promise<ShmDaemonInfo> {
    const o = this.options;
    const { mode, reason } = resolveMode(o.mode ?? 'auto');
    if (reason && o.mode !== 'file')
      this.log.warn({ reason }, 'native addon unavailable: running in /dev/shm file mode');
    await prepareSocketPath(o.socketPath);
    checkShmSpace(this.layout.size);
    const uid = process.getuid!();
    const { generation, removed } = nextGeneration(o.socketPath, uid);
    removed.push(...sweepOrphanSegments(uid));
    if (removed.length)
      this.log.info({ removed }, 'unlinked segments of earlier generations and of dead daemons');
    const poolName = segmentName(uid, socketTag(o.socketPath), generation);
    this.segment = createSegment(poolName, this.layout.size, mode);
    // process.exit() (e.g. an orphaned supervised child) skips close(): still remove the names.
    process.on('exit', this.exitCleanup);
    const header = Buffer.alloc(HEADER_BYTES);
    writeHeader(this.layout, generation, header);
    this.segment.write(0, header);

    const core = new ShmCore({
      layout: this.layout,
      generation,
      poolName,
      mode,
      quotaBytes: Math.floor(
        ((o.quotaPercent ?? DEFAULT_QUOTA_PERCENT) / 100) * (this.layout.size - HEADER_BYTES),
      ),
      maxBatchesPerProc: o.maxBatchesPerProc ?? DEFAULT_MAX_BATCHES_PER_PROC,
      defaultTtlMs: o.defaultTtlMs ?? DEFAULT_BATCH_TTL_MS,
      maxTtlMs: o.maxTtlMs ?? DEFAULT_MAX_BATCH_TTL_MS,
      processExists,
      processName,
    });
    core.onRelease = (e) => this.released(e);
    this.core = core;
    this.proofs = new ProofBook(dirname(o.socketPath));
    const protocol = new ShmProtocol(core, this.proofs);
    this.server = this.createServer(core, protocol, mode);
    const previousUmask = process.umask(0o177); // the socket is born 0600
    try {
      await this.server.listen();
      this.ownsSocket = true;
    } finally {
      process.umask(previousUmask);
    }
    chmodSync(o.socketPath, 0o600);

    this.info = {
      socket: o.socketPath,
      mode,
      ...(reason ? { modeReason: reason } : {}),
      generation,
      poolName,
      poolSize: this.layout.size,
    };
    if (o.http) {
      this.admin = new AdminHttp({
        host: o.http.host,
        port: o.http.port,
        registry: shmMetrics(core, protocol.stats, this.server.stats, mode),
        health: () => this.health(),
        routes: { 'GET /holders': () => core.holders() },
      });
      this.info.httpPort = (await this.admin.listen()).port;
    }
    this.log.info(
      { ...this.info, classes: formatClasses(this.options.classes), pool: humanSize(this.layout.size) },
      'shm daemon serving',
    );
    return { ...this.info };
  }

  health(): Health {
    const core = this.core;
    if (!core || !this.info) return { status: 'failing', reason: 'not started' };
    const classes = core.layout.classes.map((c) => ({
      size: c.size,
      total: c.count,
      free: core.blocks.freeCount(c.index),
    }));
    const exhausted = classes.filter((c) => c.free === 0).map((c) => c.size);
    return {
      status: this.closing ? 'failing' : exhausted.length ? 'degraded' : 'ok',
      mode: this.info.mode,
      ...(this.info.modeReason ? { modeReason: this.info.modeReason } : {}),
      generation: this.info.generation,
      socket: this.info.socket,
      pool: this.info.poolName,
      connections: core.connections,
      processes: core.procs.size,
      batchesInflight: core.batches.size,
      classes,
      ...(exhausted.length ? { exhausted } : {}),
    };
  }

  close(graceMs = 2_000): Promise<void> {
    this.closing ??= this.shutdown((s) => s.close(graceMs));
    return this.closing;
  }

  destroy(): Promise<void> {
    this.closing ??= this.shutdown((s) => s.destroy(new ClosedError('shm daemon destroyed')));
    return this.closing;
  }

  private readonly exitCleanup = (): void => {
    if (this.segment) unlinkSegment(this.segment.name);
    if (this.ownsSocket) rmSync(this.options.socketPath, { force: true });
  };

  private async shutdown(stop: (s: TcpServer<ShmConnState>) => Promise<void>): Promise<void> {
    process.off('exit', this.exitCleanup);
    if (this.server) await stop(this.server);
    await this.admin?.close();
    this.core?.close();
    this.proofs?.clear();
    if (this.segment) {
      this.segment.close();
      unlinkSegment(this.segment.name);
    }
    if (this.ownsSocket) rmSync(this.options.socketPath, { force: true });
    this.log.info({}, 'shm daemon stopped');
  }

  private createServer(core: ShmCore, protocol: ShmProtocol, mode: ShmMode): TcpServer<ShmConnState> {
    const myUid = process.getuid!();
    return new TcpServer<ShmConnState>({
      host: '',
      port: 0,
      path: this.options.socketPath,
      maxConnections: this.options.maxConnections ?? DEFAULT_SHM_MAX_CONNECTIONS,
      maxOutboundBytes: SHM_MAX_OUTBOUND_BYTES,
      logger: this.log,
      dispatcher: protocol,
      createState: (conn) => ({
        peer: core.attach(conn.id, {
          notify: (n) => {
            if (!conn.closed) conn.sendRaw(ShmMsg.NOTICE, Buffer.from(JSON.stringify(n)));
          },
          kill: (reason) => conn.destroy(new ClosedError(reason)),
        }),
      }),
      onConnectionStart: (conn) => this.identify(conn, mode, myUid),
      onConnectionClose: (conn) => {
        core.detach(conn.state.peer);
        this.proofs?.drop(conn.id);
      },
    });
  }

  /** Addon mode: the kernel says who connected; a process of another (non-root) uid is refused. */
  private identify(conn: ShmConnection, mode: ShmMode, myUid: number): void {
    if (mode !== 'addon') return; // file mode: HELLO + PROVE
    const cred = socketPeerCred(conn.socket);
    if (!cred) return; // no credentials: the client falls back to the file proof
    if (cred.uid !== myUid && cred.uid !== 0) {
      this.refusedPeers += 1;
      if (this.refusedPeers === 1)
        this.log.warn({ pid: cred.pid, uid: cred.uid }, 'refusing a client of another uid');
      conn.destroy(new ClosedError(`uid ${cred.uid} is not allowed`));
      return;
    }
    this.core!.verify(conn.state.peer, cred.pid);
  }

  private released(e: ShmReleaseEvent): void {
    if (e.reason === 'disconnect') {
      this.log.info(
        { pid: e.pid, blocks: e.blocks, bytes: e.bytes },
        `[${e.pid}] process quit, released ${e.blocks} blocks (${humanSize(e.bytes)})`,
      );
    } else {
      this.log.warn(
        { pid: e.pid, reason: e.reason, blocks: e.blocks, bytes: e.bytes },
        `[${e.pid}] reclaimed (${e.reason}): ${e.blocks} blocks`,
      );
    }
    this.emit('release', e);
  }
}
