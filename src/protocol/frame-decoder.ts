import type { ProtocolError } from '../errors.js';
import { checkBodyLength, HEADER_LEN, MAX_BODY_LEN, type Frame } from './frame.js';

/**
 * Streaming frame decoder for TCP: a pure state machine, no I/O. Feed it bytes in any split or
 * coalescing; it returns the complete frames. A header whose msglen is negative or larger than
 * 65527 is rejected as soon as the header is complete: the decoder then records `failure` and
 * ignores all further input (the caller closes the connection).
 *
 * Memory is bounded: at most one partial frame (8 + 65527 bytes) is buffered, and a partial body
 * only takes about twice the bytes that actually arrived (it grows as they come), so a peer that
 * sends headers announcing 64 KB and then stalls costs a few KB each, not 64 KB (issue 11).
 * `reset()` releases it; a server calls it when it cuts a connection.
 *
 * Bodies of frames that lie wholly inside one pushed chunk are views into that chunk (no copy);
 * a frame split across chunks is assembled into its own buffer.
 */
export class FrameDecoder {
  private header = Buffer.alloc(HEADER_LEN);
  private headerFill = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;
  /** msglen of the partial frame; `body` grows towards it. */
  private bodyLen = 0;
  private msgid = 0;
  private _failure: ProtocolError | undefined;

  /** The protocol violation that stopped the decoder, if any. */
  get failure(): ProtocolError | undefined {
    return this._failure;
  }

  /** Bytes received of an incomplete frame (its header included once the body has started). */
  get buffered(): number {
    return this.body === undefined ? this.headerFill : HEADER_LEN + this.bodyFill;
  }

  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    if (this._failure) return frames;
    let pos = 0;
    const len = chunk.length;
    while (pos < len) {
      if (this.body === undefined) {
        // Fast path: a whole header (and maybe the whole body) sits in this chunk.
        if (this.headerFill === 0 && len - pos >= HEADER_LEN) {
          const msgid = readInt32LE(chunk, pos);
          const msglen = readInt32LE(chunk, pos + 4);
          if (!this.accept(msgid, msglen)) return frames;
          pos += HEADER_LEN;
          if (len - pos >= msglen) {
            frames.push({ msgid, body: chunk.subarray(pos, pos + msglen) });
            pos += msglen;
            continue;
          }
          this.startBody(msgid, msglen, len - pos);
          continue;
        }
        const take = Math.min(HEADER_LEN - this.headerFill, len - pos);
        this.header.set(chunk.subarray(pos, pos + take), this.headerFill);
        this.headerFill += take;
        pos += take;
        if (this.headerFill < HEADER_LEN) break;
        const msgid = this.header.readInt32LE(0);
        const msglen = this.header.readInt32LE(4);
        this.headerFill = 0;
        if (!this.accept(msgid, msglen)) return frames;
        if (msglen === 0) {
          frames.push({ msgid, body: EMPTY });
          continue;
        }
        this.startBody(msgid, msglen, len - pos);
        continue;
      }
      const take = Math.min(this.bodyLen - this.bodyFill, len - pos);
      if (this.bodyFill + take > this.body.length) this.grow(this.bodyFill + take);
      const body = this.body;
      body.set(chunk.subarray(pos, pos + take), this.bodyFill);
      this.bodyFill += take;
      pos += take;
      if (this.bodyFill === this.bodyLen) {
        frames.push({ msgid: this.msgid, body });
        this.body = undefined;
        this.bodyFill = 0;
      }
    }
    return frames;
  }

  /** Forgets any partial frame and any failure (e.g. when a client reconnects). */
  reset(): void {
    this.headerFill = 0;
    this.body = undefined;
    this.bodyFill = 0;
    this._failure = undefined;
  }

  private accept(msgid: number, msglen: number): boolean {
    const bad = checkBodyLength(msgid, msglen);
    if (bad) {
      this._failure = bad;
      this.headerFill = 0;
      this.body = undefined;
      this.bodyFill = 0;
      return false;
    }
    return true;
  }

  /** `available`: bytes of the current chunk after the header (what can be stored at once). */
  private startBody(msgid: number, msglen: number, available: number): void {
    // msglen <= MAX_BODY_LEN was checked in accept(): the allocation is bounded.
    this.msgid = msgid;
    this.bodyLen = Math.min(msglen, MAX_BODY_LEN);
    this.body = Buffer.allocUnsafe(Math.min(this.bodyLen, Math.max(available, FIRST_PARTIAL_BYTES)));
    this.bodyFill = 0;
  }

  /** Doubles the partial body (at least to `need`, at most to msglen), keeping what arrived. */
  private grow(need: number): void {
    const old = this.body as Buffer;
    const next = Buffer.allocUnsafe(Math.min(this.bodyLen, Math.max(need, old.length * 2)));
    old.copy(next, 0, 0, this.bodyFill);
    this.body = next;
  }
}

const EMPTY = new Uint8Array(0);
/** First allocation for a body that did not arrive whole; it doubles as more arrives. */
const FIRST_PARTIAL_BYTES = 1024;

function readInt32LE(b: Uint8Array, off: number): number {
  return (
    (b[off] as number) |
    ((b[off + 1] as number) << 8) |
    ((b[off + 2] as number) << 16) |
    ((b[off + 3] as number) << 24)
  );
}
