import type { Socket } from 'node:net';
import { ConnectionError, ErrorCode, type LarsError } from '../../errors.js';
import { FrameDecoder, type FrameVisitor } from '../../protocol/frame-decoder.js';
import { BusMsgId } from '../wire/msg-id.js';
import { Control } from '../wire/control.js';
import { OutBuffer } from '../wire/out-buffer.js';
import type { BusEngine } from './bus-engine.js';
import type { PeerCreds, Proc } from './proc.js';

/** How long an ended connection may stay half-open (peer not closing) before it is destroyed. */
const END_LINGER_MS = 2_000;

/**
 * One client connection of the bus daemon. The 'data' handler only feeds the frame decoder, whose
 * visitor hands each frame (as offsets into the chunk, no copy) to the engine. Output is staged in
 * an OutBuffer and written once per event-loop turn for every connection that got something
 * (BusEngine.flushAll), so a burst of publishes costs one write per destination, not one per message.
 *
 * Outbound accounting for the slow-consumer policy: `pendingMsgs` = staged messages + messages in
 * writes the socket has not completed; `pendingBytes` = staged bytes + the socket's writableLength.
 */
export class BusConn {
  proc: Proc | undefined;
  readonly out = new OutBuffer();
  /** Proc numbers whose name this connection has been told (PROC_NAME before their first message). */
  readonly known = new Set<number>();
  dirty = false;
  /** No more output is accepted (ending or destroyed). */
  closed = false;
  /** Last published subject of this connection, raw and decoded (publishers repeat subjects). */
  readonly lastSubjBytes = Buffer.allocUnsafe(256);
  lastSubjLen = -1;
  lastSubj = '';
  /** Slow-consumer episode: start (bus clock) or -1, and messages dropped in it. */
  episodeStartMs = -1;
  episodeDropped = 0;
  violationLogged = false;
  closeReason: Error | undefined;
  /** Shared-memory hand-offs of this connection waiting for lars shm (BusEngine.gate). */
  gated = 0;
  /** Data frames that arrived while gated, run in order afterwards (views of their chunks). */
  readonly held: { msgid: number; buf: Uint8Array; start: number; len: number }[] = [];
  /** Shared-memory batches were made for this connection (cancelled when it closes). */
  shmTagged = false;

  private readonly decoder: FrameDecoder;
  private readonly visitor: FrameVisitor;
  private inflightMsgs = 0;
  private readonly writes: { buf: Buffer; msgs: number }[] = [];
  private readonly afterWrite: (err?: Error | null) => void;
  private lingerTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: Socket,
    private readonly engine: BusEngine,
    readonly id: number,
    readonly creds: PeerCreds | undefined,
  ) {
    this.decoder = new FrameDecoder({ maxBodyLen: engine.settings.maxFrame });
    this.visitor = (msgid, buf, start, len) => engine.onFrame(this, msgid, buf, start, len);
    this.afterWrite = () => this.written();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => {
      this.closeReason ??= err;
    });
    socket.on('close', () => this.onClose());
  }

  get pendingMsgs(): number {
    return this.out.msgs + this.inflightMsgs;
  }

  get pendingBytes(): number {
    return this.out.used + this.socket.writableLength;
  }

  /** Stages a control frame (protobuf body) and schedules the write. */
  sendControl(msgid: number, body: Uint8Array): void {
    if (this.closed) return;
    this.out.appendFrame(msgid, body);
    this.engine.markDirty(this);
  }

  sendErr(op: number, id: number, err: LarsError, subject = ''): void {
    this.sendControl(
      BusMsgId.Err,
      Control.err.encode({ op, id, code: err.code, message: err.message, subject }),
    );
  }

  /** Writes what is staged (one write); called once per turn by the engine. */
  flush(): void {
    this.dirty = false;
    // A destroyed socket keeps its staged messages: the 'close' handler counts them as dropped.
    if (this.closed || this.socket.destroyed) return;
    const msgs = this.out.msgs;
    const buf = this.out.take();
    if (buf === undefined) return;
    this.inflightMsgs += msgs;
    this.writes.push({ buf, msgs });
    this.socket.write(buf, this.afterWrite);
  }

  /**
   * Graceful close: what is staged still goes out, then the socket ends; destroyed if the peer does
   * not close its side within a linger time.
   */
  end(reason?: Error): void {
    if (this.closed) return;
    this.closeReason ??= reason;
    this.flush();
    this.closed = true;
    this.socket.end();
    this.lingerTimer = setTimeout(() => this.destroy(), END_LINGER_MS);
    this.lingerTimer.unref();
  }

  /** Abrupt close: staged and unwritten messages are dropped (counted as `disconnect`). */
  destroy(reason?: Error): void {
    this.closeReason ??= reason;
    if (!this.closed || !this.socket.destroyed) {
      this.closed = true;
      this.socket.destroy();
    }
  }

  private onData(chunk: Buffer): void {
    const engine = this.engine;
    engine.heard(this, chunk.length);
    this.decoder.visit(chunk, this.visitor);
    const failure = this.decoder.failure;
    if (failure && !this.closed) engine.framingViolation(this, failure);
  }

  private written(): void {
    const w = this.writes.shift();
    if (!w) return;
    this.inflightMsgs -= w.msgs;
    this.out.recycle(w.buf);
    if (this.episodeStartMs >= 0) this.engine.slow.maybeEnd(this);
  }

  private onClose(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    this.closed = true;
    const lost = this.out.msgs + this.inflightMsgs;
    this.out.clear();
    this.inflightMsgs = 0;
    this.engine.connectionClosed(this, this.closeReason, lost);
  }
}

export function slowPeerError(conn: BusConn, deadlineMs: number): ConnectionError {
  return new ConnectionError(
    ErrorCode.SLOW_PEER,
    `connection ${conn.id}${conn.proc ? ` (${conn.proc.name})` : ''} dropped messages for ${deadlineMs} ms: cut`,
  );
}
