import type { Socket } from 'node:net';
import { ErrorCode, ProtocolError } from '../errors.js';
import { HEADER_LEN, MAX_BODY_LEN } from '../protocol/frame.js';

/** First size of the per-socket staging buffer; it grows on demand (bounded by the outbound cap). */
const INITIAL_STAGING_BYTES = 16 * 1024;
/** Above this many staged bytes the staging buffer itself is handed to the socket instead of copied. */
const HAND_OVER_BYTES = 64 * 1024;

/**
 * The outbound side of one TCP socket: frames are written straight into a staging buffer (header and
 * body, no per-frame Buffer) and go to the kernel in one `socket.write` per batch.
 *
 * Batching contract: between `beginBatch()` and the matching `endBatch()` (the endpoint wraps the
 * handling of one 'data' chunk in them) frames only accumulate; `endBatch()` writes them with one
 * syscall. A frame appended outside a batch (timers, async handlers) schedules a flush on
 * `process.nextTick`, so replies produced in one tick still leave together.
 *
 * Outbound bound: `pendingBytes` = staged bytes + `socket.writableLength` (bytes the kernel has not
 * taken yet). `append` returns false, without flushing, once that exceeds `maxOutboundBytes`; the
 * owner then applies its slow-peer policy (it cuts the connection). We do not pause producers on
 * `write() === false`: the cap is the backpressure, and a stalled peer cannot make us buffer more
 * than `maxOutboundBytes` (+ one frame).
 */
export class FrameWriter {
  private staging: Buffer = Buffer.allocUnsafe(INITIAL_STAGING_BYTES);
  private staged = 0;
  private batchDepth = 0;
  private flushScheduled = false;
  private dead = false;

  constructor(
    private readonly socket: Socket,
    private readonly maxOutboundBytes: number,
  ) {}

  /** Bytes accepted but not yet taken by the kernel. */
  get pendingBytes(): number {
    return this.staged + this.socket.writableLength;
  }

  /**
   * Stages one frame. Throws ProtocolError(MESSAGE_TOO_LARGE) for a body over 65527 bytes (a bug in
   * the caller, nothing was staged). Returns false when the outbound cap is exceeded.
   */
  append(msgid: number, body: Uint8Array): boolean {
    const bodyLen = body.length;
    if (bodyLen > MAX_BODY_LEN) {
      throw new ProtocolError(
        ErrorCode.MESSAGE_TOO_LARGE,
        `message body of ${bodyLen} bytes exceeds the ${MAX_BODY_LEN}-byte frame limit (msgid ${msgid})`,
      );
    }
    if (this.dead) return false;
    const need = HEADER_LEN + bodyLen;
    let at = this.staged;
    if (at + need > this.staging.length) this.grow(at + need);
    const buf = this.staging;
    buf.writeInt32LE(msgid, at);
    buf.writeInt32LE(bodyLen, at + 4);
    at += HEADER_LEN;
    if (bodyLen <= 32) {
      // Copying a few bytes by hand beats the native set() call for the small messages we carry most.
      for (let i = 0; i < bodyLen; i++) buf[at + i] = body[i] as number;
    } else {
      buf.set(body, at);
    }
    this.staged = at + bodyLen;
    if (this.staged + this.socket.writableLength > this.maxOutboundBytes) return false;
    if (this.batchDepth === 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(flushOnTick, this);
    }
    return true;
  }

  beginBatch(): void {
    this.batchDepth += 1;
  }

  endBatch(): void {
    this.batchDepth -= 1;
    if (this.batchDepth === 0) this.flush();
  }

  /** Hands staged frames to the socket (one write). No-op when nothing is staged or after discard. */
  flush(): void {
    this.flushScheduled = false;
    const n = this.staged;
    if (n === 0 || this.dead) return;
    let out: Buffer;
    if (n >= HAND_OVER_BYTES) {
      out = this.staging.subarray(0, n);
      this.staging = Buffer.allocUnsafe(INITIAL_STAGING_BYTES);
    } else {
      // Small batches are copied into a pooled buffer so the staging buffer can be reused at once.
      out = Buffer.allocUnsafe(n);
      this.staging.copy(out, 0, 0, n);
    }
    this.staged = 0;
    this.socket.write(out);
  }

  /** Drops staged frames and refuses new ones (the connection is being destroyed). */
  discard(): void {
    this.dead = true;
    this.staged = 0;
  }

  private grow(min: number): void {
    let size = this.staging.length * 2;
    while (size < min) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.staging.copy(next, 0, 0, this.staged);
    this.staging = next;
  }
}

function flushOnTick(writer: FrameWriter): void {
  writer.flush();
}
