import { HEADER_LEN } from './frame.js';
import { MsgId } from './msg-id.js';
import { fieldLen, writeField } from './varint.js';

/**
 * A hand-written codec for the two datagrams that make up nearly all of an agent's traffic,
 * GetHostRequest and ReportRequest, and for the GetHostResponse it sends (issue 17). It reads and
 * writes in place: no message objects, no protobufjs Reader/Writer, nothing allocated per call, so a
 * busy host's agent spends its short wake-up slices answering rather than collecting garbage.
 *
 * It accepts only the plain shape every client sends (known field numbers with their wire types,
 * varints of at most 10 bytes, a complete frame); anything else makes the decoders return false and
 * the caller hands the datagram to the generic codec (messages.ts), which knows every edge case and
 * error (DESIGN §2). Encodings are byte-for-byte what the generic encoder writes (proto3: zero
 * fields left out), checked by test/protocol-hot-codec.test.ts.
 */

/** A decoded GetHostRequest (fields overwritten on each decode). */
export interface HotGetHost {
  seq: number;
  modid: number;
  cmdid: number;
}

/** A decoded ReportRequest with its host (fields overwritten on each decode). */
export interface HotReport {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
  retcode: number;
  /** 0 when absent (the generic path treats 0 as absent too). */
  timecostMs: number;
}

/** Read position shared by the varint reader (module-level: the decoders are not re-entrant, nor need to be). */
let pos = 0;
/** Set by readVarint32 when the varint ran past `end` or past 10 bytes. */
let bad = false;

/**
 * Reads a varint at `pos` and returns its low 32 bits as a signed int32 (what protobuf's int32 and
 * the bit pattern of uint32 fields are). Negative int32 values take 10 bytes on the wire.
 */
function readVarint32(b: Uint8Array, end: number): number {
  let result = 0;
  for (let shift = 0, i = 0; i < 10; i++, shift += 7) {
    if (pos >= end) break;
    const byte = b[pos++]!;
    if (shift < 32) result |= (byte & 0x7f) << shift;
    if (byte < 0x80) return result;
  }
  bad = true;
  return 0;
}

/** The datagram is one frame of `msgid` whose size matches its header. */
function frameOf(b: Uint8Array, len: number, msgid: number): boolean {
  if (len < HEADER_LEN) return false;
  if ((b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) !== msgid) return false;
  return (b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24)) === len - HEADER_LEN;
}

/** The msgid of a datagram of at least 8 bytes (int32 LE), or -1. */
export function hotMsgId(b: Uint8Array, len: number): number {
  return len < HEADER_LEN ? -1 : b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24);
}

/** Decodes a whole GetHostRequest datagram into `out`; false: leave it to the generic path. */
export function decodeGetHostDatagram(b: Uint8Array, len: number, out: HotGetHost): boolean {
  if (!frameOf(b, len, MsgId.GetHostRequest)) return false;
  pos = HEADER_LEN;
  bad = false;
  let seq = 0;
  let modid = 0;
  let cmdid = 0;
  while (pos < len) {
    const tag = b[pos++]!;
    // Tags 0x08, 0x10, 0x18: fields 1-3, varint. Anything else (unknown field, other wire type,
    // multi-byte tag) goes to the generic decoder, which knows what to skip and what to refuse.
    if (tag === 0x08) seq = readVarint32(b, len) >>> 0;
    else if (tag === 0x10) modid = readVarint32(b, len);
    else if (tag === 0x18) cmdid = readVarint32(b, len);
    else return false;
    if (bad) return false;
  }
  out.seq = seq;
  out.modid = modid;
  out.cmdid = cmdid;
  return true;
}

/**
 * Decodes a whole ReportRequest datagram into `out`; false: leave it to the generic path (also when
 * it carries no host: the generic path counts those).
 */
export function decodeReportDatagram(b: Uint8Array, len: number, out: HotReport): boolean {
  if (!frameOf(b, len, MsgId.ReportRequest)) return false;
  pos = HEADER_LEN;
  bad = false;
  let modid = 0;
  let cmdid = 0;
  let retcode = 0;
  let timecost = 0;
  let hasHost = false;
  let ip = 0;
  let port = 0;
  while (pos < len) {
    const tag = b[pos++]!;
    if (tag === 0x08) modid = readVarint32(b, len);
    else if (tag === 0x10) cmdid = readVarint32(b, len);
    else if (tag === 0x20) retcode = readVarint32(b, len);
    else if (tag === 0x28) timecost = readVarint32(b, len) >>> 0;
    else if (tag === 0x1a) {
      const n = readVarint32(b, len);
      const end = pos + n;
      if (bad || n < 0 || end > len) return false;
      // A repeated message field merges (last value wins per field): start from what is there.
      if (!hasHost) ip = port = 0;
      hasHost = true;
      while (pos < end) {
        const t = b[pos++]!;
        if (t === 0x08) ip = readVarint32(b, end);
        else if (t === 0x10) port = readVarint32(b, end);
        else if (t === 0x18) readVarint32(b, end);
        else return false;
        if (bad) return false;
      }
    } else return false;
    if (bad) return false;
  }
  if (!hasHost) return false;
  out.modid = modid;
  out.cmdid = cmdid;
  out.ip = ip;
  out.port = port;
  out.retcode = retcode;
  out.timecostMs = timecost;
  return true;
}

/** The longest GetHostResponse frame: header + 4 fields of up to 11 bytes + a 24-byte host. */
export const MAX_HOT_RESPONSE_LEN = 8 + 44 + 24;

/**
 * Writes a whole GetHostResponse frame (header included) at offset 0 of `b` (at least
 * MAX_HOT_RESPONSE_LEN bytes); `hasHost` false leaves the host out (retcode other than SUCC).
 * Returns the frame's length.
 */
export function encodeGetHostResponseFrame(
  b: Uint8Array,
  seq: number,
  modid: number,
  cmdid: number,
  retcode: number,
  hasHost: boolean,
  ip: number,
  port: number,
): number {
  let at = HEADER_LEN;
  at = writeField(b, at, 0x08, seq, false);
  at = writeField(b, at, 0x10, modid, true);
  at = writeField(b, at, 0x18, cmdid, true);
  at = writeField(b, at, 0x20, retcode, true);
  if (hasHost) {
    const inner = fieldLen(ip, true) + fieldLen(port, true);
    b[at++] = 0x2a;
    b[at++] = inner;
    at = writeField(b, at, 0x08, ip, true);
    at = writeField(b, at, 0x10, port, true);
  }
  const bodyLen = at - HEADER_LEN;
  b[0] = MsgId.GetHostResponse;
  b[1] = b[2] = b[3] = 0;
  b[4] = bodyLen & 0xff;
  b[5] = bodyLen >>> 8;
  b[6] = b[7] = 0;
  return at;
}
