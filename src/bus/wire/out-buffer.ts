import { HEADER_LEN } from '../../protocol/frame.js';
import { writeU32 } from './data-frame.js';

/** First size of a staging buffer; it grows on demand (callers bound what they stage). */
const INITIAL_BYTES = 64 * 1024;
/** Buffers up to this size are kept for reuse after their write completed. */
const RECYCLE_MAX_BYTES = 1 << 20;
const MAX_SPARES = 4;

/**
 * Staging for outbound frames, shared by the bus daemon (one per connection) and the client: frames
 * are written straight into one buffer (no Buffer per frame) and handed to the socket once per
 * event-loop turn. Pure bookkeeping, no I/O: the owner decides when to `take()` and write.
 *
 * take() hands the staged bytes over without copying and continues in a spare buffer; the owner
 * gives the written buffer back with recycle() from its write callback, so a steady stream of
 * flushes allocates nothing.
 */
export class OutBuffer {
  /** Staged bytes. */
  used = 0;
  /** Staged data messages (the owner's count: what `commit(…, msgs)` added). */
  msgs = 0;
  private buf: Buffer;
  private readonly spares: ArrayBuffer[] = [];

  constructor(initialBytes = INITIAL_BYTES) {
    this.buf = Buffer.allocUnsafeSlow(initialBytes);
  }

  /** Makes room for `n` more bytes and returns the buffer to write them into at `used`. */
  reserve(n: number): Buffer {
    const need = this.used + n;
    if (need > this.buf.length) this.grow(need);
    return this.buf;
  }

  /** Marks the bytes up to `end` (written after reserve()) as staged, with `msgs` data messages. */
  commit(end: number, msgs: number): void {
    this.used = end;
    this.msgs += msgs;
  }

  /** Stages one frame with an opaque body (control frames). */
  appendFrame(msgid: number, body: Uint8Array): void {
    const buf = this.reserve(HEADER_LEN + body.length);
    const at = this.used;
    writeU32(buf, at, msgid);
    writeU32(buf, at + 4, body.length);
    buf.set(body, at + HEADER_LEN);
    this.used = at + HEADER_LEN + body.length;
  }

  /** Stages raw bytes (whole frames encoded elsewhere). */
  appendBytes(bytes: Uint8Array): void {
    const buf = this.reserve(bytes.length);
    buf.set(bytes, this.used);
    this.used += bytes.length;
  }

  /** The staged bytes, handed over (the caller owns them); staging continues in another buffer. */
  take(): Buffer | undefined {
    const n = this.used;
    if (n === 0) return undefined;
    const out = this.buf.subarray(0, n);
    const spare = this.spares.pop();
    this.buf = spare
      ? Buffer.from(spare)
      : Buffer.allocUnsafeSlow(Math.min(this.buf.length, RECYCLE_MAX_BYTES));
    this.used = 0;
    this.msgs = 0;
    return out;
  }

  /** Gives back a buffer returned by take() once the socket is done with it. */
  recycle(written: Buffer): void {
    const ab = written.buffer as ArrayBuffer;
    if (ab.byteLength <= RECYCLE_MAX_BYTES && this.spares.length < MAX_SPARES && written.byteOffset === 0)
      this.spares.push(ab);
  }

  /** Drops everything staged. */
  clear(): void {
    this.used = 0;
    this.msgs = 0;
  }

  private grow(min: number): void {
    let size = this.buf.length * 2;
    while (size < min) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    this.buf.copy(next, 0, 0, this.used);
    this.buf = next;
  }
}
