import type { ShmBuffer } from '../../shm/shm-buffer.js';
import { decodeHeaders, type DataFields } from '../wire/data-frame.js';

/** Decodes a subject, reusing the previous string when the bytes repeat (subscriptions see few subjects). */
export class SubjectCache {
  private readonly bytes = Buffer.allocUnsafe(256);
  private len = -1;
  private last = '';

  decode(buf: Uint8Array, start: number, n: number): string {
    if (n === this.len) {
      const b = this.bytes;
      let i = 0;
      while (i < n && b[i] === buf[start + i]) i++;
      if (i === n) return this.last;
    }
    const s = Buffer.from(buf.buffer, buf.byteOffset + start, n).toString('latin1');
    for (let i = 0; i < n; i++) this.bytes[i] = buf[start + i] as number;
    this.len = n;
    this.last = s;
    return s;
  }
}

const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * One message as a subscriber, a responder (the request) or a requester (the reply) sees it. The
 * parts are decoded on first access from the bytes it arrived in: `data` is a view of those bytes
 * (no copy), valid as long as the message is referenced.
 *
 * A message sent as a shared-memory buffer (issue 14) carries it in `shm`: this process now holds
 * one reference to the sender's block (the same memory, never copied); `data` is `shm.bytes()`.
 * The receiver owns that reference: `msg.shm.release()` when done (or hand it on).
 */
export class BusMsg {
  /** Name of the proc that sent it ('' when the bus did not say). */
  readonly from: string;
  /** The shared-memory buffer this message carried, held by this process (undefined: inline bytes). */
  readonly shm: ShmBuffer | undefined;
  private readonly buf: Uint8Array;
  private readonly subjStart: number;
  private readonly subjLen: number;
  private readonly hdrStart: number;
  private readonly hdrLen: number;
  private readonly payloadStart: number;
  private readonly end: number;
  private readonly subjects: SubjectCache | undefined;
  private _subject: string | undefined;
  private _data: Uint8Array | undefined;
  private _headers: Readonly<Record<string, string>> | undefined;

  /** @internal Built by the client from a parsed data frame. */
  constructor(
    buf: Uint8Array,
    f: DataFields,
    from: string,
    subjects: SubjectCache | undefined,
    subject?: string,
    shm?: ShmBuffer,
  ) {
    this.shm = shm;
    this.buf = buf;
    this.subjStart = f.subjStart;
    this.subjLen = f.subjLen;
    this.hdrStart = f.hdrStart;
    this.hdrLen = f.hdrLen;
    this.payloadStart = f.payloadStart;
    this.end = f.end;
    this.from = from;
    this.subjects = subjects;
    this._subject = subject;
  }

  /** The subject it was published on (for a request: the topic; for a reply: the topic asked). */
  get subject(): string {
    if (this._subject === undefined) {
      this._subject = this.subjects
        ? this.subjects.decode(this.buf, this.subjStart, this.subjLen)
        : Buffer.from(this.buf.buffer, this.buf.byteOffset + this.subjStart, this.subjLen).toString('latin1');
    }
    return this._subject;
  }

  /** The payload bytes (for a shared-memory message: the block itself, see `shm`). */
  get data(): Uint8Array {
    if (this._data === undefined)
      this._data = this.shm ? this.shm.bytes() : this.buf.subarray(this.payloadStart, this.end);
    return this._data;
  }

  get headers(): Readonly<Record<string, string>> {
    if (this._headers === undefined)
      this._headers = this.hdrLen === 0 ? EMPTY_HEADERS : decodeHeaders(this.buf, this.hdrStart, this.hdrLen);
    return this._headers;
  }

  /** The payload as UTF-8 text. */
  string(): string {
    const d = this.data;
    return Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('utf8');
  }

  /** The payload parsed as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.string()) as T;
  }
}
