import type { ProtocolError } from '../errors.js';
import { checkBodyLength, HEADER_LEN, MAX_BODY_LEN, type Frame } from './frame.js';

/**
 * Receives each complete frame: its body is `buf[start, start + len)`. `buf` is the pushed chunk
 * (no copy) when the frame lies wholly inside it, else a buffer of the frame's own. The visitor
 * must not throw (a throw leaves the rest of the chunk undecoded) and must copy what it keeps.
 */
export type FrameVisitor = (msgid: number, buf: Uint8Array, start: number, len: number) => void;

export interface FrameDecoderOptions {
  /** Largest accepted body. Default 65527 (DESIGN §2); the bus allows more for its payloads. */
  maxBodyLen?: number;
}

/**
 * Streaming frame decoder for stream sockets: a pure state machine, no I/O. Feed it bytes in any
 * split or coalescing; it returns (push) or visits (visit) the complete frames. A header whose msglen
 * is negative or larger than the limit is rejected as soon as the header is complete: the decoder
 * then records `failure` and ignores all further input (the caller closes the connection).
 *
 * Memory is bounded: at most one partial frame (8 + maxBodyLen) is buffered, and a partial body
 * only takes about twice the bytes that actually arrived (it grows as they come), so a peer that
 * sends headers announcing 64 KB and then stalls costs a few KB each, not 64 KB (issue 11).
 * `reset()` releases it; a server calls it when it cuts a connection.
 *
 * visit() allocates nothing for frames that lie wholly inside one chunk (the hot path of the bus);
 * push() returns Frame objects whose bodies are views into the chunk when they can be.
 */
export class FrameDecoder {
  readonly maxBodyLen: number;
  private header = Buffer.alloc(HEADER_LEN);
  private headerFill = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;
  /** msglen of the partial frame; `body` grows towards it. */
  private bodyLen = 0;
  private msgid = 0;
  private _failure: ProtocolError | undefined;

  constructor(options: FrameDecoderOptions = {}) {
    this.maxBodyLen = options.maxBodyLen ?? MAX_BODY_LEN;
  }

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
    this.visit(chunk, (msgid, buf, start, len) => {
      frames.push({
        msgid,
        body: start === 0 && len === buf.length ? buf : buf.subarray(start, start + len),
      });
    });
    return frames;
  }

  /** Calls `visitor` for each frame completed by `chunk`, in order. */
  visit(chunk: Uint8Array, visitor: FrameVisitor): void {
    if (this._failure) return;
    let pos = 0;
    const len = chunk.length;
    while (pos < len) {
      if (this.body === undefined) {
        // Fast path: a whole header (and maybe the whole body) sits in this chunk.
        if (this.headerFill === 0 && len - pos >= HEADER_LEN) {
          const msgid = readInt32LE(chunk, pos);
          const msglen = readInt32LE(chunk, pos + 4);
          if (!this.accept(msgid, msglen)) return;
          pos += HEADER_LEN;
          if (len - pos >= msglen) {
            const start = pos;
            pos += msglen;
            visitor(msgid, chunk, start, msglen);
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
        if (!this.accept(msgid, msglen)) return;
        if (msglen === 0) {
          visitor(msgid, EMPTY, 0, 0);
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
        this.body = undefined;
        this.bodyFill = 0;
        visitor(this.msgid, body, 0, body.length);
      }
    }
  }

  /** Forgets any partial frame and any failure (e.g. when a client reconnects). */
  reset(): void {
    this.headerFill = 0;
    this.body = undefined;
    this.bodyFill = 0;
    this._failure = undefined;
  }

  private accept(msgid: number, msglen: number): boolean {
    const bad = checkBodyLength(msgid, msglen, this.maxBodyLen);
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
    // msglen <= maxBodyLen was checked in accept(): the allocation is bounded.
    this.msgid = msgid;
    this.bodyLen = Math.min(msglen, this.maxBodyLen);
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

const EMPTY = Buffer.alloc(0);
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
