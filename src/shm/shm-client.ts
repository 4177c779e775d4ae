import { EventEmitter } from 'node:events';
import { ErrorCode, ShmError } from '../errors.js';
import { Backoff, type BackoffOptions } from '../net/backoff.js';
import { SessionKeeper, type ShmClientState } from './client-keeper.js';
import type { ShmSession } from './client-session.js';
import type { ShmHandle } from './handle.js';
import { blockOffset, classOfBlock, MAX_ALIGN } from './pool-layout.js';
import { resolveMode, type ShmModeSetting } from './pool-segment.js';
import type { HoldersReport, ReclaimResult, ShmMode, ShmStat } from './reports.js';
import { ScratchPool } from './scratch-pool.js';
import { ShmBuffer, type BufferOwner } from './shm-buffer.js';
import { defaultShmSocket, SHM_MODE_ENV } from './socket-path.js';
import {
  decodeHandlesPayload,
  decodeJsonPayload,
  decodeRecvPayload,
  decodeU32ListPayload,
  decodeU32Payload,
  MAX_HANDLES_PER_FRAME,
  MAX_TRANSFER_TARGETS,
  type ShmRequest,
  type TransferTarget,
} from './wire-codec.js';
import { ReclaimReason, ShmMsg } from './wire-ids.js';

export const DEFAULT_RECONNECT: Readonly<BackoffOptions> = { initialMs: 100, maxMs: 5_000, jitter: 0.2 };
export const DEFAULT_CONNECT_WAIT_MS = 5_000;
export type { ShmClientState };

export interface ShmClientOptions {
  /** Daemon socket; default LARS_SHM_SOCKET or <LARS_DATA_DIR|./lars-data>/shm/shm.sock. */
  socket?: string;
  /** auto (addon when it loads, else file), addon or file; default LARS_SHM_MODE or auto. */
  mode?: ShmModeSetting;
  /** Redial after the daemon went away (false: stay disconnected). */
  reconnect?: BackoffOptions | false;
  /** How long a call waits for a (re)connection before it fails with NOT_CONNECTED. */
  connectWaitMs?: number;
}

/**
 * Client of `lars shm` (import { ShmClient } from 'lars/shm'). Maps the pool once per daemon
 * generation (addon: zero-copy; file mode: /dev/shm file) and talks to the daemon over its Unix
 * socket. Events: 'state' (ShmClientState), 'notice' (ShmNotice: a batch this client sent was
 * released unreceived: ttl, or its addressee went away).
 *
 * When the daemon goes away every ShmBuffer becomes stale (the daemon released them), the mapping
 * is dropped, and the client redials with backoff; calls made meanwhile wait up to connectWaitMs.
 */
export class ShmClient extends EventEmitter implements BufferOwner {
  readonly socketPath: string;
  readonly mode: ShmMode;
  /** Why this client runs in file mode, when it does. */
  readonly modeReason: string | undefined;
  /** @internal File mode: reused process memory for ShmBuffer.bytes(). */
  readonly scratch = new ScratchPool();
  private readonly held = new Set<ShmBuffer>();
  private readonly keeper: SessionKeeper;

  private constructor(options: ShmClientOptions) {
    super();
    this.socketPath = options.socket ?? defaultShmSocket();
    const m = resolveMode(
      options.mode ?? ((process.env[SHM_MODE_ENV] as ShmModeSetting | undefined) || 'auto'),
    );
    this.mode = m.mode;
    this.modeReason = m.reason;
    this.keeper = new SessionKeeper({
      socketPath: this.socketPath,
      mode: this.mode,
      backoff: options.reconnect === false ? undefined : new Backoff(options.reconnect ?? DEFAULT_RECONNECT),
      waitMs: options.connectWaitMs ?? DEFAULT_CONNECT_WAIT_MS,
      onState: (state) => this.emit('state', state),
      onNotice: (n) => this.emit('notice', n),
      onLost: () => {
        // The daemon released everything this connection held.
        for (const b of this.held) b.markStale();
        this.held.clear();
      },
    });
  }

  /** Connects, identifies itself and maps the pool; rejects when the daemon cannot be reached. */
  static async connect(options: ShmClientOptions = {}): Promise<ShmClient> {
    const client = new ShmClient(options);
    await client.keeper.open();
    return client;
  }

  get state(): ShmClientState {
    return this.keeper.state;
  }

  /** This process's pid as the daemon knows it, and the pool generation it serves. */
  get pid(): number {
    return this.keeper.session?.pid ?? 0;
  }

  get generation(): number {
    return this.keeper.session?.info.pool.generation ?? 0;
  }

  /** Allocates one block of at least `size` bytes (align: a power of two up to 4096). */
  async alloc(size: number, options: { align?: number } = {}): Promise<ShmBuffer> {
    return (await this.allocMany(size, 1, options))[0]!;
  }

  /** Allocates `count` blocks of `size` bytes in one request. */
  async allocMany(size: number, count: number, options: { align?: number } = {}): Promise<ShmBuffer[]> {
    const align = options.align ?? 0;
    if (!Number.isInteger(size) || size < 1 || size > 0xffffffff)
      this.invalid(`size ${size} must be a positive integer`);
    if (!Number.isInteger(align) || align < 0 || align > MAX_ALIGN)
      this.invalid(`align ${align} must be a power of two up to ${MAX_ALIGN}`);
    if (!Number.isInteger(count) || count < 1 || count > 0xffff)
      this.invalid(`count ${count} must be 1..65535`);
    const s = await this.keeper.ready();
    const handles = decodeHandlesPayload(await s.link.request({ cmd: ShmMsg.ALLOC, size, align, count }));
    return handles.map((h) => this.adopt(s, h, true));
  }

  /** Hands the references of `bufs` to process `to` (they leave this client); resolves with the batch id. */
  async send(bufs: readonly ShmBuffer[], options: { to: number; ttlMs?: number }): Promise<number> {
    if (bufs.length === 0 || bufs.length > MAX_HANDLES_PER_FRAME)
      this.invalid(`send takes 1..${MAX_HANDLES_PER_FRAME} buffers`);
    if (new Set(bufs).size !== bufs.length)
      this.invalid('the same ShmBuffer appears twice (addref gives a second reference)');
    const ttlMs = options.ttlMs ?? 0;
    if (!Number.isInteger(options.to) || options.to <= 0) this.invalid(`to: ${options.to} is not a pid`);
    if (!Number.isInteger(ttlMs) || ttlMs < 0 || ttlMs > 0xffffffff)
      this.invalid(`ttlMs ${ttlMs} must be a non-negative integer`);
    const s = await this.keeper.ready();
    for (const b of bufs) {
      b.check();
      b.flush();
    }
    const req: ShmRequest = { cmd: ShmMsg.SEND, to: options.to, ttlMs, handles: bufs.map((b) => b.handle) };
    const batchId = decodeU32Payload(await s.link.request(req));
    for (const b of bufs) b.markSent();
    return batchId;
  }

  /** Takes the references of a batch addressed to this process. */
  async recv(batchId: number): Promise<ShmBuffer[]> {
    if (!Number.isInteger(batchId) || batchId < 1 || batchId > 0xffffffff)
      this.invalid(`batch id ${batchId} is not valid`);
    const s = await this.keeper.ready();
    const { handles } = decodeRecvPayload(await s.link.request({ cmd: ShmMsg.RECV, batchId }));
    return handles.map((h) => this.adopt(s, h, false));
  }

  /** One more reference to the block of `buf`, as a buffer of its own (released separately). */
  async addref(buf: ShmBuffer): Promise<ShmBuffer> {
    buf.check();
    const s = await this.keeper.ready();
    await s.link.request({ cmd: ShmMsg.ADDREF, handles: [buf.handle] });
    return this.adopt(s, buf.handle, false);
  }

  /**
   * For relays (the bus): moves one reference that process `fromPid` holds to `handle` into one
   * batch per addressee (more references for a fan-out; none: the reference is released); `keep`
   * leaves `fromPid` its reference. Resolves with the batch ids, in the order of `to`.
   */
  async transfer(
    fromPid: number,
    handle: ShmHandle,
    to: readonly TransferTarget[],
    options: { keep?: boolean; ttlMs?: number } = {},
  ): Promise<number[]> {
    if (to.length > MAX_TRANSFER_TARGETS)
      this.invalid(`transfer takes at most ${MAX_TRANSFER_TARGETS} addressees`);
    const s = await this.keeper.ready();
    const req: ShmRequest = {
      cmd: ShmMsg.TRANSFER,
      fromPid,
      keep: options.keep === true,
      ttlMs: options.ttlMs ?? 0,
      handle,
      to: [...to],
    };
    return decodeU32ListPayload(await s.link.request(req));
  }

  /** For relays: ends the unreceived batches this client made by transfer with `tag`, or listed. */
  async cancel(options: { tag?: number; batchIds?: readonly number[] }): Promise<number> {
    const s = await this.keeper.ready();
    const batchIds = [...(options.batchIds ?? [])].slice(0, MAX_TRANSFER_TARGETS);
    return decodeU32Payload(await s.link.request({ cmd: ShmMsg.CANCEL, tag: options.tag ?? 0, batchIds }));
  }

  async stat(): Promise<ShmStat> {
    const s = await this.keeper.ready();
    return {
      mode: this.mode,
      ...decodeJsonPayload<Omit<ShmStat, 'mode'>>(await s.link.request({ cmd: ShmMsg.STAT })),
    };
  }

  /** Which process holds how much of which class. */
  async holders(): Promise<HoldersReport> {
    const s = await this.keeper.ready();
    return decodeJsonPayload<HoldersReport>(await s.link.request({ cmd: ShmMsg.HOLDERS }));
  }

  /** Releases everything `pid` holds and cuts its connections (the bus's killme, or by hand). */
  async reclaim(pid: number, options: { reason?: 'manual' | 'killme' } = {}): Promise<ReclaimResult> {
    if (!Number.isInteger(pid) || pid <= 0) this.invalid(`pid ${pid} is not a pid`);
    const reason = options.reason === 'killme' ? ReclaimReason.KILLME : ReclaimReason.MANUAL;
    const s = await this.keeper.ready();
    return decodeJsonPayload<ReclaimResult>(await s.link.request({ cmd: ShmMsg.RECLAIM, pid, reason }));
  }

  /** Releases what this client holds, closes the connection and unmaps the pool. Idempotent. */
  async close(): Promise<void> {
    if (this.keeper.state === 'closed') return;
    const s = this.keeper.close();
    this.scratch.clear();
    if (!s) return;
    const handles = [...this.held].map((b) => b.handle);
    for (const b of this.held) b.markClosed();
    this.held.clear();
    for (let i = 0; i < handles.length; i += MAX_HANDLES_PER_FRAME) {
      s.link
        .request({ cmd: ShmMsg.FREE, handles: handles.slice(i, i + MAX_HANDLES_PER_FRAME) })
        .catch(() => {});
    }
    await s.link.end();
    s.segment.close();
  }

  /** Drops the connection at once (the daemon releases what it held) and unmaps the pool. */
  async destroy(): Promise<void> {
    if (this.keeper.state === 'closed') return;
    const s = this.keeper.close();
    this.scratch.clear();
    for (const b of this.held) b.markClosed();
    this.held.clear();
    if (!s) return;
    await s.link.destroy();
    s.segment.close();
  }

  // --- BufferOwner ------------------------------------------------------------------------------

  /** @internal */
  async freeBuffer(buf: ShmBuffer): Promise<void> {
    const s = this.keeper.session;
    if (!s || this.keeper.state !== 'ready' || buf.handle.pool !== s.info.pool.generation) return;
    try {
      await s.link.request({ cmd: ShmMsg.FREE, handles: [buf.handle] });
    } catch (err) {
      // A lost connection released it already; anything else is a real error.
      if ((err as ShmError).code !== ErrorCode.NOT_CONNECTED && (err as ShmError).code !== ErrorCode.CLOSED)
        throw err;
    }
  }

  /** @internal */
  forget(buf: ShmBuffer): void {
    this.held.delete(buf);
  }

  // --- internals --------------------------------------------------------------------------------

  private invalid(message: string): never {
    throw new ShmError(ErrorCode.SHM_INVALID_ARGUMENT, message);
  }

  private adopt(s: ShmSession, h: ShmHandle, fresh: boolean): ShmBuffer {
    const cls = classOfBlock(s.layout, h.block);
    if (!cls || h.len > cls.size)
      throw new ShmError(ErrorCode.SHM_INVALID_ARGUMENT, `daemon sent an invalid handle (block ${h.block})`);
    const buf = new ShmBuffer(
      this,
      h,
      s.segment,
      blockOffset(cls, h.block),
      cls.size,
      fresh && this.mode === 'file',
    );
    this.held.add(buf);
    return buf;
  }
}
