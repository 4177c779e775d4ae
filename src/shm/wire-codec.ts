import { ErrorCode, ShmError } from '../errors.js';
import { HANDLE_BYTES, readHandle, writeHandle, type ShmHandle } from './handle.js';
import { ShmMsg, ShmStatus, type ShmMsgId } from './wire-ids.js';

/**
 * Bodies of the shm protocol: pure encoding and decoding, no I/O (STYLE §1). Frames themselves are
 * Lars frames (protocol/frame.ts, FrameDecoder); this file handles what is inside.
 *
 * Request body: u32 reqid, then the command's fields (little-endian):
 *   HELLO   u16 version, i32 pid (declared; used only to start a file-mode proof)
 *   PROVE   (nothing)
 *   ALLOC   u32 size, u32 align (0 = natural), u16 count
 *   FREE    u16 n, n x handle           ADDREF  u16 n, n x handle
 *   SEND    i32 to (pid), u32 ttlMs (0 = default), u16 n, n x handle
 *   RECV    u32 batchId
 *   STAT, HOLDERS (nothing)             RECLAIM i32 pid, u8 reason (1 killme, 2 manual)
 *   TRANSFER i32 fromPid, u8 flags (1 keep), u32 ttlMs, handle, u16 n, n x (i32 pid, u32 tag)
 *   CANCEL  u32 tag (0 = none), u16 n, n x u32 batchId
 * Reply body: u32 reqid, i32 status, then on success the command's result (ALLOC: u16 n + handles;
 * SEND: u32 batchId; TRANSFER: u16 n + n x u32 batchId; CANCEL: u32 count; RECV: i32 fromPid, u16 n + handles; PROVE: i32 pid; HELLO, STAT, HOLDERS,
 * RECLAIM: UTF-8 JSON; FREE, ADDREF: nothing) and on failure a UTF-8 message.
 * NOTICE body: UTF-8 JSON (ShmNotice).
 *
 * Decoders throw ShmError(SHM_INVALID_ARGUMENT) for a body that is short, long or inconsistent; the
 * daemon answers that as an error reply and keeps the connection.
 */

export type ShmRequest =
  | { cmd: typeof ShmMsg.HELLO; version: number; pid: number }
  | { cmd: typeof ShmMsg.PROVE }
  | { cmd: typeof ShmMsg.ALLOC; size: number; align: number; count: number }
  | { cmd: typeof ShmMsg.FREE; handles: ShmHandle[] }
  | { cmd: typeof ShmMsg.ADDREF; handles: ShmHandle[] }
  | { cmd: typeof ShmMsg.SEND; to: number; ttlMs: number; handles: ShmHandle[] }
  | { cmd: typeof ShmMsg.RECV; batchId: number }
  | { cmd: typeof ShmMsg.STAT }
  | { cmd: typeof ShmMsg.HOLDERS }
  | { cmd: typeof ShmMsg.RECLAIM; pid: number; reason: number }
  | {
      cmd: typeof ShmMsg.TRANSFER;
      fromPid: number;
      keep: boolean;
      ttlMs: number;
      handle: ShmHandle;
      to: TransferTarget[];
    }
  | { cmd: typeof ShmMsg.CANCEL; tag: number; batchIds: number[] };

/** One addressee of a TRANSFER: its pid and a tag the relay may later CANCEL by (0 = none). */
export interface TransferTarget {
  pid: number;
  tag: number;
}

export interface ShmReply {
  reqid: number;
  status: number;
  /** Result bytes on success, the UTF-8 message on failure. A view into the frame body. */
  payload: Buffer;
}

/** A notice the daemon sends unasked: a batch this connection sent was released without a recv. */
export interface ShmNotice {
  kind: 'batch-released';
  batchId: number;
  to: number;
  blocks: number;
  reason: string;
}

/** Most handles one frame can carry (65527-byte body). */
export const MAX_HANDLES_PER_FRAME = 4000;
/** Most addressees of one TRANSFER (and batch ids of one CANCEL). */
export const MAX_TRANSFER_TARGETS = 4096;
/** TRANSFER flag: the relayed process keeps its reference (the addressees get new ones). */
export const TRANSFER_KEEP = 1;
/** Most blocks one ALLOC may ask for. */
export const MAX_ALLOC_COUNT = 1024;

function invalid(what: string): never {
  throw new ShmError(ErrorCode.SHM_INVALID_ARGUMENT, what);
}

function asBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

function handlesSize(n: number): number {
  return 2 + n * HANDLE_BYTES;
}

function putHandles(out: Buffer, at: number, handles: readonly ShmHandle[]): number {
  out.writeUInt16LE(handles.length, at);
  at += 2;
  for (const h of handles) {
    writeHandle(out, at, h);
    at += HANDLE_BYTES;
  }
  return at;
}

function takeHandles(b: Buffer, at: number, what: string): ShmHandle[] {
  if (b.length < at + 2) invalid(`${what}: body too short for a handle count`);
  const n = b.readUInt16LE(at);
  if (n === 0) invalid(`${what}: no handles`);
  if (n > MAX_HANDLES_PER_FRAME) invalid(`${what}: ${n} handles, at most ${MAX_HANDLES_PER_FRAME}`);
  if (b.length !== at + handlesSize(n))
    invalid(`${what}: body of ${b.length} bytes does not hold ${n} handles`);
  const out: ShmHandle[] = [];
  for (let i = 0, p = at + 2; i < n; i++, p += HANDLE_BYTES) out.push(readHandle(b, p));
  return out;
}

/** Encodes a request body (reqid + fields). */
export function encodeRequest(reqid: number, req: ShmRequest): Buffer {
  switch (req.cmd) {
    case ShmMsg.HELLO: {
      const b = Buffer.allocUnsafe(10);
      b.writeUInt32LE(reqid >>> 0, 0);
      b.writeUInt16LE(req.version, 4);
      b.writeInt32LE(req.pid, 6);
      return b;
    }
    case ShmMsg.ALLOC: {
      const b = Buffer.allocUnsafe(14);
      b.writeUInt32LE(reqid >>> 0, 0);
      b.writeUInt32LE(req.size >>> 0, 4);
      b.writeUInt32LE(req.align >>> 0, 8);
      b.writeUInt16LE(req.count, 12);
      return b;
    }
    case ShmMsg.FREE:
    case ShmMsg.ADDREF: {
      const b = Buffer.allocUnsafe(4 + handlesSize(req.handles.length));
      b.writeUInt32LE(reqid >>> 0, 0);
      putHandles(b, 4, req.handles);
      return b;
    }
    case ShmMsg.SEND: {
      const b = Buffer.allocUnsafe(12 + handlesSize(req.handles.length));
      b.writeUInt32LE(reqid >>> 0, 0);
      b.writeInt32LE(req.to, 4);
      b.writeUInt32LE(req.ttlMs >>> 0, 8);
      putHandles(b, 12, req.handles);
      return b;
    }
    case ShmMsg.RECV: {
      const b = Buffer.allocUnsafe(8);
      b.writeUInt32LE(reqid >>> 0, 0);
      b.writeUInt32LE(req.batchId >>> 0, 4);
      return b;
    }
    case ShmMsg.RECLAIM: {
      const b = Buffer.allocUnsafe(9);
      b.writeUInt32LE(reqid >>> 0, 0);
      b.writeInt32LE(req.pid, 4);
      b.writeUInt8(req.reason, 8);
      return b;
    }
    case ShmMsg.TRANSFER: {
      const b = Buffer.allocUnsafe(31 + req.to.length * 8);
      b.writeUInt32LE(reqid >>> 0, 0);
      b.writeInt32LE(req.fromPid, 4);
      b.writeUInt8(req.keep ? TRANSFER_KEEP : 0, 8);
      b.writeUInt32LE(req.ttlMs >>> 0, 9);
      writeHandle(b, 13, req.handle);
      b.writeUInt16LE(req.to.length, 29);
      let p = 31;
      for (const t of req.to) {
        b.writeInt32LE(t.pid, p);
        b.writeUInt32LE(t.tag >>> 0, p + 4);
        p += 8;
      }
      return b;
    }
    case ShmMsg.CANCEL: {
      const b = Buffer.allocUnsafe(10 + req.batchIds.length * 4);
      b.writeUInt32LE(reqid >>> 0, 0);
      b.writeUInt32LE(req.tag >>> 0, 4);
      b.writeUInt16LE(req.batchIds.length, 8);
      req.batchIds.forEach((id, i) => b.writeUInt32LE(id >>> 0, 10 + i * 4));
      return b;
    }
    case ShmMsg.PROVE:
    case ShmMsg.STAT:
    case ShmMsg.HOLDERS: {
      const b = Buffer.allocUnsafe(4);
      b.writeUInt32LE(reqid >>> 0, 0);
      return b;
    }
  }
}

/** The reqid of a request body, or undefined when the body is too short to carry one. */
export function requestId(body: Uint8Array): number | undefined {
  return body.byteLength >= 4 ? asBuffer(body).readUInt32LE(0) : undefined;
}

function exact(b: Buffer, len: number, what: string): void {
  if (b.length !== len) invalid(`${what}: body of ${b.length} bytes, expected ${len}`);
}

/**
 * Decodes a request body of command `msgid` (reqid already read by `requestId`). Throws
 * ShmError(SHM_INVALID_ARGUMENT) for a malformed body, ShmError(SHM_UNKNOWN_COMMAND) for an
 * unknown msgid.
 */
export function decodeRequest(msgid: number, body: Uint8Array): ShmRequest {
  const b = asBuffer(body);
  switch (msgid) {
    case ShmMsg.HELLO:
      exact(b, 10, 'HELLO');
      return { cmd: ShmMsg.HELLO, version: b.readUInt16LE(4), pid: b.readInt32LE(6) };
    case ShmMsg.PROVE:
      exact(b, 4, 'PROVE');
      return { cmd: ShmMsg.PROVE };
    case ShmMsg.ALLOC:
      exact(b, 14, 'ALLOC');
      return {
        cmd: ShmMsg.ALLOC,
        size: b.readUInt32LE(4),
        align: b.readUInt32LE(8),
        count: b.readUInt16LE(12),
      };
    case ShmMsg.FREE:
      return { cmd: ShmMsg.FREE, handles: takeHandles(b, 4, 'FREE') };
    case ShmMsg.ADDREF:
      return { cmd: ShmMsg.ADDREF, handles: takeHandles(b, 4, 'ADDREF') };
    case ShmMsg.SEND:
      if (b.length < 12) invalid(`SEND: body of ${b.length} bytes is too short`);
      return {
        cmd: ShmMsg.SEND,
        to: b.readInt32LE(4),
        ttlMs: b.readUInt32LE(8),
        handles: takeHandles(b, 12, 'SEND'),
      };
    case ShmMsg.RECV:
      exact(b, 8, 'RECV');
      return { cmd: ShmMsg.RECV, batchId: b.readUInt32LE(4) };
    case ShmMsg.STAT:
      exact(b, 4, 'STAT');
      return { cmd: ShmMsg.STAT };
    case ShmMsg.HOLDERS:
      exact(b, 4, 'HOLDERS');
      return { cmd: ShmMsg.HOLDERS };
    case ShmMsg.RECLAIM:
      exact(b, 9, 'RECLAIM');
      return { cmd: ShmMsg.RECLAIM, pid: b.readInt32LE(4), reason: b.readUInt8(8) };
    case ShmMsg.TRANSFER:
      return decodeTransfer(b);
    case ShmMsg.CANCEL: {
      if (b.length < 10) invalid(`CANCEL: body of ${b.length} bytes is too short`);
      const n = b.readUInt16LE(8);
      if (n > MAX_TRANSFER_TARGETS) invalid(`CANCEL: ${n} batch ids, at most ${MAX_TRANSFER_TARGETS}`);
      exact(b, 10 + n * 4, 'CANCEL');
      const batchIds: number[] = [];
      for (let i = 0; i < n; i++) batchIds.push(b.readUInt32LE(10 + i * 4));
      return { cmd: ShmMsg.CANCEL, tag: b.readUInt32LE(4), batchIds };
    }
    default:
      throw new ShmError(ErrorCode.SHM_UNKNOWN_COMMAND, `unknown command 0x${(msgid >>> 0).toString(16)}`);
  }
}

function decodeTransfer(b: Buffer): ShmRequest {
  if (b.length < 31) invalid(`TRANSFER: body of ${b.length} bytes is too short`);
  const flags = b.readUInt8(8);
  if ((flags & ~TRANSFER_KEEP) !== 0) invalid(`TRANSFER: unknown flags 0x${flags.toString(16)}`);
  const n = b.readUInt16LE(29);
  if (n > MAX_TRANSFER_TARGETS) invalid(`TRANSFER: ${n} addressees, at most ${MAX_TRANSFER_TARGETS}`);
  exact(b, 31 + n * 8, 'TRANSFER');
  const to: TransferTarget[] = [];
  for (let i = 0, p = 31; i < n; i++, p += 8) to.push({ pid: b.readInt32LE(p), tag: b.readUInt32LE(p + 4) });
  return {
    cmd: ShmMsg.TRANSFER,
    fromPid: b.readInt32LE(4),
    keep: (flags & TRANSFER_KEEP) !== 0,
    ttlMs: b.readUInt32LE(9),
    handle: readHandle(b, 13),
    to,
  };
}

/** A u16 count of u32 values (TRANSFER's batch ids). */
export function encodeU32ListPayload(values: readonly number[]): Buffer {
  const b = Buffer.allocUnsafe(2 + values.length * 4);
  b.writeUInt16LE(values.length, 0);
  values.forEach((v, i) => b.writeUInt32LE(v >>> 0, 2 + i * 4));
  return b;
}

export function decodeU32ListPayload(payload: Buffer): number[] {
  if (payload.length < 2) invalid('list reply too short');
  const n = payload.readUInt16LE(0);
  if (payload.length !== 2 + n * 4)
    invalid(`list reply of ${payload.length} bytes does not hold ${n} values`);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(payload.readUInt32LE(2 + i * 4));
  return out;
}

/** A reply body: reqid, status, payload. */
export function encodeReply(reqid: number, status: number, payload?: Uint8Array): Buffer {
  const n = payload?.byteLength ?? 0;
  const b = Buffer.allocUnsafe(8 + n);
  b.writeUInt32LE(reqid >>> 0, 0);
  b.writeInt32LE(status, 4);
  if (payload && n > 0) b.set(payload, 8);
  return b;
}

export function encodeErrorReply(reqid: number, status: number, message: string): Buffer {
  // A message can never push a reply past the frame limit.
  return encodeReply(reqid, status, Buffer.from(message.slice(0, 8000), 'utf8'));
}

export function encodeJsonReply(reqid: number, value: unknown): Buffer {
  return encodeReply(reqid, ShmStatus.OK, Buffer.from(JSON.stringify(value), 'utf8'));
}

export function decodeReply(body: Uint8Array): ShmReply {
  const b = asBuffer(body);
  if (b.length < 8) invalid(`reply of ${b.length} bytes is shorter than its 8-byte head`);
  return { reqid: b.readUInt32LE(0), status: b.readInt32LE(4), payload: b.subarray(8) };
}

export function encodeHandlesPayload(handles: readonly ShmHandle[]): Buffer {
  const b = Buffer.allocUnsafe(handlesSize(handles.length));
  putHandles(b, 0, handles);
  return b;
}

export function decodeHandlesPayload(payload: Buffer): ShmHandle[] {
  return takeHandles(payload, 0, 'reply');
}

export function encodeRecvPayload(fromPid: number, handles: readonly ShmHandle[]): Buffer {
  const b = Buffer.allocUnsafe(4 + handlesSize(handles.length));
  b.writeInt32LE(fromPid, 0);
  putHandles(b, 4, handles);
  return b;
}

export function decodeRecvPayload(payload: Buffer): { fromPid: number; handles: ShmHandle[] } {
  if (payload.length < 4) invalid('RECV reply too short');
  return { fromPid: payload.readInt32LE(0), handles: takeHandles(payload, 4, 'RECV reply') };
}

export function encodeU32Payload(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

export function decodeU32Payload(payload: Buffer): number {
  if (payload.length !== 4) invalid(`expected a 4-byte result, got ${payload.length}`);
  return payload.readUInt32LE(0);
}

export function encodeI32Payload(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32LE(v, 0);
  return b;
}

export function decodeI32Payload(payload: Buffer): number {
  if (payload.length !== 4) invalid(`expected a 4-byte result, got ${payload.length}`);
  return payload.readInt32LE(0);
}

export function decodeJsonPayload<T>(payload: Buffer): T {
  try {
    return JSON.parse(payload.toString('utf8')) as T;
  } catch (cause) {
    throw new ShmError(ErrorCode.SHM_INVALID_ARGUMENT, 'reply is not valid JSON', { cause });
  }
}

/** The msgid a request is sent with. */
export function requestMsgId(req: ShmRequest): ShmMsgId {
  return req.cmd;
}
