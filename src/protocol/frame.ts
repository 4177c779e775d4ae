import { ErrorCode, ProtocolError } from '../errors.js';

/** Header: msgid int32 LE, then msglen int32 LE = body length (header excluded). */
export const HEADER_LEN = 8;
/** Largest body the original framework accepts: 65535 - 8. */
export const MAX_BODY_LEN = 65535 - HEADER_LEN;

export interface Frame {
  readonly msgid: number;
  /** The body bytes. May be a view into a larger buffer: copy it if you keep it past the callback. */
  readonly body: Uint8Array;
}

/** Builds one frame (header + body) in a fresh buffer. */
export function encodeFrame(msgid: number, body: Uint8Array): Buffer {
  if (body.length > MAX_BODY_LEN) {
    throw new ProtocolError(
      ErrorCode.MESSAGE_TOO_LARGE,
      `message body of ${body.length} bytes exceeds the ${MAX_BODY_LEN}-byte frame limit (msgid ${msgid})`,
    );
  }
  const out = Buffer.allocUnsafe(HEADER_LEN + body.length);
  out.writeInt32LE(msgid, 0);
  out.writeInt32LE(body.length, 4);
  out.set(body, HEADER_LEN);
  return out;
}

/**
 * Checks a header's msglen against `maxBodyLen` (the Lars limit unless a protocol built on the same
 * header, such as the bus, allows more); returns the ProtocolError to raise, or undefined when valid.
 */
export function checkBodyLength(
  msgid: number,
  msglen: number,
  maxBodyLen: number = MAX_BODY_LEN,
): ProtocolError | undefined {
  if (msglen < 0) {
    return new ProtocolError(
      ErrorCode.FRAME_NEGATIVE_LENGTH,
      `frame header (msgid ${msgid}) announces a negative body length ${msglen}`,
    );
  }
  if (msglen > maxBodyLen) {
    return new ProtocolError(
      ErrorCode.FRAME_TOO_LARGE,
      `frame header (msgid ${msgid}) announces ${msglen} body bytes, more than the ${maxBodyLen} allowed`,
    );
  }
  return undefined;
}

/**
 * Parses a whole UDP datagram: exactly one frame whose size is 8 + msglen (DESIGN §2).
 * Throws ProtocolError when the datagram is not exactly one valid frame.
 */
export function parseDatagram(datagram: Uint8Array): Frame {
  if (datagram.length < HEADER_LEN) {
    throw new ProtocolError(
      ErrorCode.DATAGRAM_SIZE,
      `datagram of ${datagram.length} bytes is shorter than the ${HEADER_LEN}-byte header`,
    );
  }
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  const msgid = view.getInt32(0, true);
  const msglen = view.getInt32(4, true);
  const bad = checkBodyLength(msgid, msglen);
  if (bad) throw bad;
  if (datagram.length !== HEADER_LEN + msglen) {
    throw new ProtocolError(
      ErrorCode.DATAGRAM_SIZE,
      `datagram of ${datagram.length} bytes does not match its header (8 + ${msglen})`,
    );
  }
  return { msgid, body: datagram.subarray(HEADER_LEN) };
}
