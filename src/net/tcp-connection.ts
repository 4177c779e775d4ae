import type { Socket } from 'node:net';
import { ClosedError, ConnectionError, ErrorCode, type ProtocolError, TimeoutError } from '../errors.js';
import type { LogLimiter } from '../log/log-limiter.js';
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
  /** Connections cut for not completing their first frame within the handshake timeout. */
  handshakeTimeouts: number;
  /** Connections cut for not completing a started frame within the header timeout. */
  headerTimeouts: number;
}

/** Kinds of connection cuts whose warnings are rate-limited (see LogLimiter). */
export type CutKind =
  'protocol_error' | 'slow_peer' | 'handshake_timeout' | 'header_timeout' | 'max_conn_per_ip';

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
  /** A new connection must complete its first frame within this; 0 disables. */
  readonly handshakeTimeoutMs: number;
  /** A started frame must complete within this; 0 disables. */
  readonly headerTimeoutMs: number;
  /** Warnings about cut connections go through here (bounded rate). */
  readonly cutLog: LogLimiter<CutKind>;
  /**
   * Keep reading and dispatching inbound frames after a graceful close() until the peer ends its
   * side (a reporter drains what its agents already sent); false = inbound is ignored once closing.
   */
  readonly readWhileClosing: boolean;
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
 * - Hostile peers (issue 11): a connection that has not completed its first frame within
 *   `handshakeTimeoutMs`, or that started a frame and did not complete it within `headerTimeoutMs`,
 *   is destroyed (TimeoutError; counted in `handshakeTimeouts` / `headerTimeouts`) and the buffer of
 *   its partial frame released. A quiet connection that has completed a frame and holds no partial
 *   frame is never cut for being quiet: agents hold long-lived quiet subscriptions. One timer per
 *   connection serves both deadlines; it is re-armed only when a partial frame starts.
 * - Warnings about cuts go through the server's LogLimiter: a flood of bad connections writes a
 *   line per minute per kind, the counters hold the numbers.
 */
export class TcpConnection<S = Record<string, unknown>> implements Transport {
  readonly id: number;
  readonly remote: RemoteAddress;
  /** Per-connection user state, created by the server's `createState` (default `{}`). */
  state: S;

  private readonly decoder = new FrameDecoder();
  private readonly writer: FrameWriter;
  private _closed = false;
  /** Inbound frames are dispatched while true (see ConnectionOwner.readWhileClosing). */
  private reading = true;
  private finished = false;
  private reason: Error | undefined;
  private handlerErrorLogged = false;
  private lastInboundMs = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private readonly openedAtMs: number;
  private framesDone = false;
  /** Date.now() when the partial frame now held started; 0 = none held. */
  private partialSinceMs = 0;
  private guardTimer: NodeJS.Timeout | undefined;
  /** When guardTimer fires (ms since epoch); 0 = not armed. */
  private guardDueMs = 0;

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
    this.openedAtMs = owner.handshakeTimeoutMs > 0 ? Date.now() : 0;
    if (owner.handshakeTimeoutMs > 0) this.armGuard(this.openedAtMs + owner.handshakeTimeoutMs);
  }

  /** True once no more frames can be sent (closing, cut or gone). */
  get closed(): boolean {
    return this._closed;
  }

  /** Inbound bytes held for a frame not yet complete (0 once the connection is cut). */
  get bufferedInbound(): number {
    return this.decoder.buffered;
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
    if (!this.owner.readWhileClosing) this.reading = false;
    this.reason ??= reason;
    this.clearIdle();
    this.clearGuard();
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
    this.reading = false;
    this.reason ??= reason;
    this.clearIdle();
    this.clearGuard();
    this.writer.discard();
    // A half-received frame's buffer goes with the connection, not with the last reference to it.
    this.decoder.reset();
    this.socket.destroy();
  }

  /** Called by the server's dispatch observer: a violation closes this connection only. */
  protocolViolation(err: ProtocolError): void {
    if (!this.reading) return;
    this.owner.counters.protocolErrors += 1;
    this.owner.cutLog.warn(
      'protocol_error',
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
    this.owner.cutLog.warn(
      'slow_peer',
      { conn: this.id, remote: this.remote.address, pending, limit: this.owner.maxOutboundBytes },
      'slow peer: connection cut',
    );
    this.destroy(err);
  }

  private onData(chunk: Buffer): void {
    if (!this.reading) return;
    if (this.idleTimer !== undefined) this.lastInboundMs = Date.now();
    const frames = this.decoder.push(chunk);
    const n = frames.length;
    if (n > 0) {
      const { dispatcher, observer, counters } = this.owner;
      const writer = this.writer;
      writer.beginBatch();
      for (let i = 0; i < n && this.reading; i++) {
        const f = frames[i]!;
        counters.framesIn += 1;
        dispatcher.dispatch(f.msgid, f.body, this, observer);
      }
      writer.endBatch();
      this.framesDone = true;
    }
    const failure = this.decoder.failure;
    if (failure !== undefined) {
      this.protocolViolation(failure);
      return;
    }
    if (this.owner.headerTimeoutMs > 0 && !this._closed) this.trackPartial(n > 0);
  }

  /**
   * Header deadline bookkeeping after a chunk: a partial frame left over starts (or, when frames
   * completed in this chunk, restarts) the clock; none left stops it. Costs a Date.now() only for
   * chunks that end inside a frame.
   */
  private trackPartial(completedFrames: boolean): void {
    if (this.decoder.buffered === 0) {
      this.partialSinceMs = 0;
      return;
    }
    if (this.partialSinceMs !== 0 && !completedFrames) return;
    this.partialSinceMs = Date.now();
    this.armGuard(this.partialSinceMs + this.owner.headerTimeoutMs);
  }

  /** Makes sure the guard fires by `dueMs` (an earlier pending firing is kept). */
  private armGuard(dueMs: number): void {
    if (this.guardTimer !== undefined) {
      if (this.guardDueMs <= dueMs) return;
      clearTimeout(this.guardTimer);
    }
    this.guardDueMs = dueMs;
    this.guardTimer = setTimeout(checkGuard, Math.max(0, dueMs - Date.now()), this);
    this.guardTimer.unref();
  }

  /** @internal Handshake and header deadlines; re-armed only while one of them is pending. */
  checkGuard(): void {
    this.guardTimer = undefined;
    this.guardDueMs = 0;
    if (this._closed) return;
    const now = Date.now();
    const { handshakeTimeoutMs, headerTimeoutMs } = this.owner;
    let next = Infinity;
    if (handshakeTimeoutMs > 0 && !this.framesDone) {
      const due = this.openedAtMs + handshakeTimeoutMs;
      if (now >= due) return this.cutTimeout('handshake_timeout', now - this.openedAtMs);
      next = due;
    }
    if (headerTimeoutMs > 0 && this.partialSinceMs !== 0) {
      const due = this.partialSinceMs + headerTimeoutMs;
      if (now >= due) return this.cutTimeout('header_timeout', now - this.partialSinceMs);
      next = Math.min(next, due);
    }
    if (next !== Infinity) this.armGuard(next);
  }

  private cutTimeout(kind: 'handshake_timeout' | 'header_timeout', ageMs: number): void {
    const handshake = kind === 'handshake_timeout';
    if (handshake) this.owner.counters.handshakeTimeouts += 1;
    else this.owner.counters.headerTimeouts += 1;
    const what = handshake
      ? `no complete frame ${ageMs} ms after connecting (handshake_timeout ${this.owner.handshakeTimeoutMs} ms)`
      : `a frame started ${ageMs} ms ago is still incomplete (header_timeout ${this.owner.headerTimeoutMs} ms)`;
    this.owner.cutLog.warn(
      kind,
      { conn: this.id, remote: this.remote.address, buffered: this.decoder.buffered },
      handshake
        ? 'connection cut: no complete frame within handshake_timeout'
        : 'connection cut: a started frame did not complete within header_timeout',
    );
    this.destroy(
      new TimeoutError(`connection ${this.id} (${this.remote.address}:${this.remote.port}): ${what}`),
    );
  }

  private clearGuard(): void {
    if (this.guardTimer !== undefined) {
      clearTimeout(this.guardTimer);
      this.guardTimer = undefined;
      this.guardDueMs = 0;
    }
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
    this.reading = false;
    this.clearIdle();
    this.clearGuard();
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.writer.discard();
    this.decoder.reset();
    trace?.(`conn ${this.id} closed${this.reason ? ` (${this.reason.message})` : ''}`);
    this.owner.connectionClosed(this, this.reason);
  }
}

function checkIdle<S>(conn: TcpConnection<S>): void {
  conn.checkIdle();
}

function checkGuard<S>(conn: TcpConnection<S>): void {
  conn.checkGuard();
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}
