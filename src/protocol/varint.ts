/**
 * Protobuf varints written in place, byte-for-byte as protobufjs writes them, for the hand-written
 * encoders (hot-codec.ts, route-body-writer.ts) that must not allocate per message (issue 17).
 */

/** Writes a varint of a uint32 / int32 (negative: 10 bytes) at `at`; returns the new offset. */
export function writeVarint(b: Uint8Array, at: number, v: number, signed: boolean): number {
  if (signed && v < 0) {
    // Sign-extended to 64 bits: the low 32 bits in 5 groups, then 0xff... up to 10 bytes.
    let lo = v >>> 0;
    for (let i = 0; i < 4; i++) {
      b[at++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    // Bits 28-31 of the value and 32-34 of the sign extension (all ones).
    b[at++] = (lo & 0x0f) | 0x70 | 0x80;
    for (let i = 0; i < 4; i++) b[at++] = 0xff;
    b[at++] = 0x01;
    return at;
  }
  let u = v >>> 0;
  while (u >= 0x80) {
    b[at++] = (u & 0x7f) | 0x80;
    u >>>= 7;
  }
  b[at++] = u;
  return at;
}

/** Bytes a varint of `v` takes (as writeVarint writes it). */
export function varintLen(v: number, signed: boolean): number {
  if (signed && v < 0) return 10;
  const u = v >>> 0;
  return u < 0x80 ? 1 : u < 0x4000 ? 2 : u < 0x200000 ? 3 : u < 0x10000000 ? 4 : 5;
}

/** Writes a one-byte `tag` and the varint of `v`, or nothing when `v` is 0 (proto3 default). */
export function writeField(b: Uint8Array, at: number, tag: number, v: number, signed: boolean): number {
  if (v === 0) return at;
  b[at] = tag;
  return writeVarint(b, at + 1, v, signed);
}

/** Bytes writeField writes. */
export function fieldLen(v: number, signed: boolean): number {
  return v === 0 ? 0 : 1 + varintLen(v, signed);
}
