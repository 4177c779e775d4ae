import { HEADER_LEN } from '../../protocol/frame.js';
import { BusMsgId } from './msg-id.js';

/**
 * Flat layout of the bus's data frames (PUB, MSG, REQ, REP), little-endian, after the Lars frame
 * header [i32 msgid][i32 msglen]:
 *
 *     u32 id          PUB: 0; MSG: subscription id; REQ/REP: request id
 *     u32 aux         client->bus REQ: timeout ms; bus->client MSG/REQ: sender's proc number
 *     u8  flags       REP: ReplyStatus; otherwise 0
 *     u8  subjLen     subject bytes (ASCII), 0 for REP
 *     ..  subject
 *     u16 hdrLen
 *     ..  headers     k\0v\0k\0v\0 (UTF-8)
 *     u8  payloadKind 0 inline; 1 shared-memory buffer (issue 14)
 *     ..  payload     inline bytes, or for kind 1:
 *                     client->bus: handle {u32 pool, u32 block, u32 gen, u32 len}, u8 options (1 keep)
 *                     bus->client: handle, u32 batch id (the receiver takes it from lars shm: RECV)
 *
 * No protobuf on the hot path: the bus forwards a publisher's body byte for byte and only patches
 * `id` and `aux` for each receiver. Everything here is pure (no I/O), so it is tested without sockets.
 */
export const DataOffset = { ID: 0, AUX: 4, FLAGS: 8, SUBJ_LEN: 9, SUBJ: 10 } as const;

/** Smallest valid body: id, aux, flags, subjLen, hdrLen, payloadKind. */
export const DATA_MIN_BODY = 13;

export const PayloadKind = { INLINE: 0, SHM: 1 } as const;

/** Size of a shared-memory handle (payloadKind 1): pool, block, generation, length. */
export const SHM_HANDLE_BYTES = 16;
/** A kind-1 payload from a client: the handle and one options byte. */
export const SHM_PUB_PAYLOAD_BYTES = SHM_HANDLE_BYTES + 1;
/** A kind-1 payload from the bus: the handle and the batch id the receiver takes. */
export const SHM_MSG_PAYLOAD_BYTES = SHM_HANDLE_BYTES + 4;
/** Options byte of a client's kind-1 payload: the sender keeps its reference. */
export const SHM_OPT_KEEP = 1;

/** REP `flags`: how a request ended. The bus creates every status but OK and HANDLER_ERROR. */
export const ReplyStatus = {
  OK: 0,
  NO_RESPONDERS: 1,
  CLOSED: 2,
  OVERLOADED: 3,
  HANDLER_ERROR: 4,
  INVALID: 5,
  TOO_LARGE: 6,
  NOT_REGISTERED: 7,
  /** The shared-memory hand-off failed (lars shm refused or is down); detail "CODE: message". */
  SHM_FAILED: 8,
} as const;
export type ReplyStatus = (typeof ReplyStatus)[keyof typeof ReplyStatus];

/** Offsets of one data frame's parts inside the buffer it arrived in (filled by parseDataFrame). */
export class DataFields {
  subjStart = 0;
  subjLen = 0;
  hdrStart = 0;
  hdrLen = 0;
  kind = 0;
  payloadStart = 0;
  end = 0;
}

/**
 * Locates the parts of the data frame body `buf[start, start + len)` into `out` (reused by the
 * caller: no allocation). Returns false when the lengths inside do not fit the body.
 */
export function parseDataFrame(buf: Uint8Array, start: number, len: number, out: DataFields): boolean {
  if (len < DATA_MIN_BODY) return false;
  const end = start + len;
  const subjLen = buf[start + DataOffset.SUBJ_LEN] as number;
  const subjStart = start + DataOffset.SUBJ;
  let p = subjStart + subjLen;
  if (p + 3 > end) return false;
  const hdrLen = (buf[p] as number) | ((buf[p + 1] as number) << 8);
  const hdrStart = p + 2;
  p = hdrStart + hdrLen;
  if (p + 1 > end) return false;
  out.subjStart = subjStart;
  out.subjLen = subjLen;
  out.hdrStart = hdrStart;
  out.hdrLen = hdrLen;
  out.kind = buf[p] as number;
  out.payloadStart = p + 1;
  out.end = end;
  return true;
}

/** Bytes a data frame takes on the wire, header included. */
export function dataFrameLength(subjLen: number, hdrLen: number, payloadLen: number): number {
  return HEADER_LEN + DATA_MIN_BODY + subjLen + hdrLen + payloadLen;
}

export function readU32(b: Uint8Array, off: number): number {
  return (
    ((b[off] as number) | ((b[off + 1] as number) << 8) | ((b[off + 2] as number) << 16)) +
    (b[off + 3] as number) * 0x1000000
  );
}

export function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}

/** Copies up to a few dozen bytes by hand: cheaper than a native copy call for small runs. */
export function copyBytes(
  src: Uint8Array,
  srcStart: number,
  dst: Uint8Array,
  dstStart: number,
  n: number,
): void {
  if (n <= 48) {
    for (let i = 0; i < n; i++) dst[dstStart + i] = src[srcStart + i] as number;
  } else {
    dst.set(src.subarray(srcStart, srcStart + n), dstStart);
  }
}

/**
 * Writes a whole data frame (header and body) at `at` and returns the offset after it. The caller
 * made room (dataFrameLength) and validated `subject` (ASCII, at most 255 bytes).
 */
export function writeDataFrame(
  target: Buffer,
  at: number,
  msgid: number,
  id: number,
  aux: number,
  flags: number,
  subject: string,
  headers: Uint8Array | undefined,
  payload: Uint8Array,
  kind: number = PayloadKind.INLINE,
): number {
  const subjLen = subject.length;
  const hdrLen = headers === undefined ? 0 : headers.length;
  const bodyLen = DATA_MIN_BODY + subjLen + hdrLen + payload.length;
  writeU32(target, at, msgid);
  writeU32(target, at + 4, bodyLen);
  let p = at + HEADER_LEN;
  writeU32(target, p, id);
  writeU32(target, p + 4, aux);
  target[p + 8] = flags;
  target[p + 9] = subjLen;
  p += DataOffset.SUBJ;
  if (subjLen <= 32) {
    for (let i = 0; i < subjLen; i++) target[p + i] = subject.charCodeAt(i);
  } else {
    target.write(subject, p, 'latin1');
  }
  p += subjLen;
  target[p] = hdrLen & 0xff;
  target[p + 1] = hdrLen >>> 8;
  p += 2;
  if (hdrLen > 0) {
    target.set(headers as Uint8Array, p);
    p += hdrLen;
  }
  target[p] = kind;
  p += 1;
  copyBytes(payload, 0, target, p, payload.length);
  return p + payload.length;
}

/**
 * A kind-1 frame as the bus forwards it to one receiver: the sender's body up to the payload
 * (`payloadStart`: subject, headers, kind byte) with `id` and `aux` replaced, then the handle
 * (`handle`: the sender's 16 bytes) and the receiver's batch id.
 */
export function writeShmForward(
  target: Buffer,
  at: number,
  msgid: number,
  src: Uint8Array,
  start: number,
  payloadStart: number,
  id: number,
  aux: number,
  batchId: number,
): number {
  const head = payloadStart - start;
  const len = head + SHM_MSG_PAYLOAD_BYTES;
  writeU32(target, at, msgid);
  writeU32(target, at + 4, len);
  const p = at + HEADER_LEN;
  copyBytes(src, start, target, p, head + SHM_HANDLE_BYTES);
  writeU32(target, p, id);
  writeU32(target, p + 4, aux);
  writeU32(target, p + head + SHM_HANDLE_BYTES, batchId);
  return p + len;
}

/**
 * Copies the data frame body `src[start, start + len)` to `target` at `at` as a frame of `msgid`,
 * with `id` and `aux` replaced: how the bus forwards a publisher's bytes without re-encoding them.
 */
export function writeForward(
  target: Buffer,
  at: number,
  msgid: number,
  src: Uint8Array,
  start: number,
  len: number,
  id: number,
  aux: number,
): number {
  writeU32(target, at, msgid);
  writeU32(target, at + 4, len);
  const p = at + HEADER_LEN;
  copyBytes(src, start, target, p, len);
  writeU32(target, p, id);
  writeU32(target, p + 4, aux);
  return p + len;
}

/** A REP frame carrying only a status and an optional UTF-8 detail (bus-made failures). */
export function statusReplyLength(detail: string): number {
  return dataFrameLength(0, 0, Buffer.byteLength(detail));
}

export function writeStatusReply(
  target: Buffer,
  at: number,
  id: number,
  status: number,
  detail: string,
): number {
  const n = Buffer.byteLength(detail);
  const bodyLen = DATA_MIN_BODY + n;
  writeU32(target, at, BusMsgId.Rep);
  writeU32(target, at + 4, bodyLen);
  const p = at + HEADER_LEN;
  writeU32(target, p, id);
  writeU32(target, p + 4, 0);
  target[p + 8] = status;
  target[p + 9] = 0;
  target[p + 10] = 0;
  target[p + 11] = 0;
  target[p + 12] = PayloadKind.INLINE;
  if (n > 0) target.write(detail, p + 13, 'utf8');
  return p + 13 + n;
}

/** Encodes headers as k\0v\0...; returns an error message for a key or value that cannot be carried. */
export function encodeHeaders(headers: Readonly<Record<string, string>>): Buffer | string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(headers)) {
    if (k.length === 0) return 'header names must not be empty';
    if (typeof v !== 'string') return `header ${JSON.stringify(k)}: values must be strings`;
    if (k.includes('\0') || v.includes('\0')) return `header ${JSON.stringify(k)}: NUL is not allowed`;
    parts.push(k, v);
  }
  const buf = Buffer.from(parts.length ? parts.join('\0') + '\0' : '', 'utf8');
  if (buf.length > 0xffff) return `headers take ${buf.length} bytes, more than 65535`;
  return buf;
}

/** Decodes k\0v\0...; a trailing incomplete pair is ignored. */
export function decodeHeaders(buf: Uint8Array, start: number, len: number): Record<string, string> {
  const out: Record<string, string> = {};
  if (len === 0) return out;
  const text = Buffer.from(buf.buffer, buf.byteOffset + start, len).toString('utf8');
  // Every key and value ends with NUL: the last part (after the final NUL) is never data.
  const parts = text.split('\0');
  for (let i = 0; i + 2 < parts.length; i += 2) out[parts[i] as string] = parts[i + 1] as string;
  return out;
}
