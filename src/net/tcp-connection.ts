import type { Socket } from 'node:net';
import { ClosedError, ConnectionError, ErrorCode, type ProtocolError, TimeoutError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { tracer } from '../log/trace.js';
import { codecs, FrameDecoder, type Codec, type KnownMsgId, type MessageMap } from '../protocol/index.js';
import type { DispatchObserver, FrameDispatcher } from './dispatcher.js';
import { FrameWriter } from './frame-writer.js';
import type { RemoteAddress, Transport } from './transport.js';

const trace = tracer('net');

/** Counters a connection updates on its server's stats object (hot path: plain field increments). */
export interface ConnectionCounters {
  framesIn: number;
  framesOut: number;
  protocolErrors: number;
  slowPeerCuts: number;
  idleTimeouts: number;
}

/**
 * What a TcpConnection needs from the server that accepted it. Kept narrow so the connection is
 * testable and the server's internals stay private.
 */
export interface ConnectionOwner<S> {
  readonly dispatcher: FrameDispatcher<TcpConnection<S>>;
  readonly observer: DispatchObserver<TcpConnection<S>>;
  readonly counters: ConnectionCounters;
  readonly logger: Logger;
  readonly maxOutboundBytes: number;
  /** 0 disables the idle timeout. */
  readonly idleTimeoutMs: number;
  /** How long an ended connection may linger (peer not closing its side) before it is destroyed. */
  readonly lingerMs: number;
  /** Called exactly once per connection, after its socket is fully closed. */
  connectionClosed(conn: TcpConnection<S>, reason: Error | undefined): void;
}

/**
 * One accepted TCP connection. It is the Transport handed to handlers as `ctx`.
 *
 * Lifecycle: open -> closed (close() or destroy() called, or the socket went away) -> finished
 * (socket 'close' seen, owner notified once, with the first recorded reason).
 *
 * - `send()` / `sendRaw()` on a closed connection throw ClosedError (`closed` tells beforehand).
 *   A send that trips the slow-peer limit does not throw: the connection is cut and the reason
 *   (ConnectionError LARS_ERR_SLOW_PEER) reaches onConnectionClose.
 * - Slow-peer policy (STYLE §11): when staged + kernel-pending outbound bytes exceed
 *   `maxOutboundBytes`, the peer is not reading fast enough to be worth buffering for; the
 *   connection is destroyed at once (queued frames are discarded), `slowPeerCuts` is counted and
 *   one warning is logged for that connection. Other connections are untouched.
 * - Protocol violations (bad length in a header, a body that does not decode) destroy the
 *   connection, counted in `protocolErrors` and logged once for the connection (DESIGN §2).
 * - The idle timeout (if enabled) counts inbound traffic only: a peer that only reads is idle.
 */
export class TcpConnection<S = Record<string, unknown>> implements Transport {
  readonly id: number;
  readonly remote: RemoteAddress;
  /** Per-connection user state, created by the server's `createState` (default `{}`). */
  state: S;

  private readonly decoder = new FrameDecoder();
  private readonly writer: FrameWriter;
  private _closed = false;
  private finished = false;
  private reason: Error | undefined;
  private handlerErrorLogged = false;
  private lastInboundMs = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;

  constructor(
    /** The accepted socket (e.g. for SO_PEERCRED on a Unix socket); do not read or write it directly. */
    readonly socket: Socket,
    private readonly owner: ConnectionOwner<S>,
    id: number,
  ) {
    this.id = id;
    this.remote = {
      address: socket.remoteAddress ?? '',
      port: socket.remotePort ?? 0,
      family: socket.remoteFamily ?? '',
    };
    this.state = {} as S;
    this.writer = new FrameWriter(socket, owner.maxOutboundBytes);
    socket.setNoDelay(true);
    // The 'data' handler only feeds the decoder and hands complete frames to the dispatcher.
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => {
      this.reason ??= err;
    });
    socket.on('close', () => this.onSocketClose());
    if (owner.idleTimeoutMs > 0) {
      this.lastInboundMs = Date.now();
      this.idleTimer = setTimeout(checkIdle, owner.idleTimeoutMs, this);
      this.idleTimer.unref();
    }
  }

  /** True once no more frames can be sent (closing, cut or gone). */
  get closed(): boolean {
    return this._closed;
  }

  /** Outbound bytes accepted but not yet taken by the kernel. */
  get pendingOutboundBytes(): number {
    return this._closed ? 0 : this.writer.pendingBytes;
  }

  send<K extends KnownMsgId>(msgid: K, message: MessageMap[K]): void {
    if (this._closed) throw new ClosedError(`connection ${this.id} is closed`);
    this.push(msgid, (codecs[msgid] as Codec<MessageMap[K]>).encode(message));
  }

  sendRaw(msgid: number, body: Uint8Array): void {
    if (this._closed) throw new ClosedError(`connection ${this.id} is closed`);
    this.push(msgid, body);
  }

  /**
   * Graceful close: frames already queued are flushed, then the write side is ended. If the peer
   * does not close its side within `lingerMs` (default: the server's), the socket is destroyed.
   * Idempotent; `reason` (if any) is what onConnectionClose reports.
   */
  close(reason?: Error, lingerMs?: number): void {
    if (this._closed) return;
    this._closed = true;
    this.reason ??= reason;
    this.clearIdle();
    this.writer.flush();
    this.socket.end();
    this.lingerTimer = setTimeout(destroySocket, lingerMs ?? this.owner.lingerMs, this.socket);
    this.lingerTimer.unref();
    trace?.(`conn ${this.id} closing${reason ? ` (${reason.message})` : ''}`);
  }

  /** Abortive close: queued frames are discarded. Idempotent. */
  destroy(reason?: Error): void {
    if (this.finished) return;
    this._closed = true;
    this.reason ??= reason;
    this.clearIdle();
    this.writer.discard();
    this.socket.destroy();
  }

  /** Called by the server's dispatch observer: a violation closes this connection only. */
  protocolViolation(err: ProtocolError): void {
    if (this._closed) return;
    this.owner.counters.protocolErrors += 1;
    this.owner.logger.warn(
      {
        conn: this.id,
        remote: `${this.remote.address}:${this.remote.port}`,
        code: err.code,
        err: err.message,
      },
      'protocol violation: closing connection',
    );
    this.destroy(err);
  }

  /** Called by the server's dispatch observer; logs only the first handler failure per connection. */
  handlerFailed(err: unknown, msgid: number): void {
    if (this.handlerErrorLogged) return;
    this.handlerErrorLogged = true;
    this.owner.logger.error(
      { conn: this.id, msgid, err },
      'message handler failed (further failures on this connection are only counted)',
    );
  }

  private push(msgid: number, body: Uint8Array): void {
    if (this.writer.append(msgid, body)) {
      this.owner.counters.framesOut += 1;
      return;
    }
    this.cutSlowPeer();
  }

  private cutSlowPeer(): void {
    const pending = this.writer.pendingBytes;
    this.owner.counters.slowPeerCuts += 1;
    const err = new ConnectionError(
      ErrorCode.SLOW_PEER,
      `connection ${this.id} (${this.remote.address}:${this.remote.port}) cut: ${pending} outbound bytes pending, limit ${this.owner.maxOutboundBytes}`,
    );
    this.owner.logger.warn(
      { conn: this.id, pending, limit: this.owner.maxOutboundBytes },
      'slow peer: connection cut',
    );
    this.destroy(err);
  }

  private onData(chunk: Buffer): void {
    if (this._closed) return;
    if (this.idleTimer !== undefined) this.lastInboundMs = Date.now();
    const frames = this.decoder.push(chunk);
    const n = frames.length;
    if (n > 0) {
      const { dispatcher, observer, counters } = this.owner;
      const writer = this.writer;
      writer.beginBatch();
      for (let i = 0; i < n && !this._closed; i++) {
        const f = frames[i]!;
        counters.framesIn += 1;
        dispatcher.dispatch(f.msgid, f.body, this, observer);
      }
      writer.endBatch();
    }
    const failure = this.decoder.failure;
    if (failure !== undefined) this.protocolViolation(failure);
  }

  /** @internal Idle check, re-armed for the remaining time, so inbound traffic costs one Date.now() per chunk. */
  checkIdle(): void {
    this.idleTimer = undefined;
    if (this._closed) return;
    const idleMs = this.owner.idleTimeoutMs;
    const quietFor = Date.now() - this.lastInboundMs;
    if (quietFor >= idleMs) {
      this.owner.counters.idleTimeouts += 1;
      trace?.(`conn ${this.id} idle for ${quietFor} ms`);
      this.close(new TimeoutError(`connection ${this.id} idle: no inbound traffic for ${quietFor} ms`));
      return;
    }
    this.idleTimer = setTimeout(checkIdle, idleMs - quietFor, this);
    this.idleTimer.unref();
  }

  private clearIdle(): void {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
  }

  private onSocketClose(): void {
    if (this.finished) return;
    this.finished = true;
    this._closed = true;
    this.clearIdle();
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.writer.discard();
    trace?.(`conn ${this.id} closed${this.reason ? ` (${this.reason.message})` : ''}`);
    this.owner.connectionClosed(this, this.reason);
  }
}

function checkIdle<S>(conn: TcpConnection<S>): void {
  conn.checkIdle();
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}
