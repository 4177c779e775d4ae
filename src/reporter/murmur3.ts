/**
 * MurmurHash3, x86 32-bit variant (Austin Appleby's reference `MurmurHash3_x86_32`, public domain).
 * Pure functions; the results match the reference implementation bit for bit (unsigned 32-bit),
 * which the tests check against published vectors.
 *
 * Used by the reporter's consistent-hash ring (DESIGN §6); fast enough for one call per report.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function mixK1(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

function mixH1(h: number, k1: number): number {
  h ^= k1;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function fmix32(h: number, length: number): number {
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** murmur3_x86_32 of `data` with `seed`; returns an unsigned 32-bit integer. */
export function murmur3(data: Uint8Array, seed = 0): number {
  const len = data.length;
  const blocks = len & ~3;
  let h = seed | 0;
  for (let i = 0; i < blocks; i += 4) {
    const k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    h = mixH1(h, mixK1(k));
  }
  const tail = len & 3;
  if (tail > 0) {
    let k1 = data[blocks]!;
    if (tail > 1) k1 ^= data[blocks + 1]! << 8;
    if (tail > 2) k1 ^= data[blocks + 2]! << 16;
    h ^= mixK1(k1);
  }
  return fmix32(h, len);
}

/** murmur3_x86_32 of a UTF-8 string. */
export function murmur3String(text: string, seed = 0): number {
  return murmur3(Buffer.from(text, 'utf8'), seed);
}

/**
 * murmur3_x86_32 of two int32 values laid out little-endian (8 bytes): the same result as
 * `murmur3(bytes)` for those bytes, without allocating. The ring hashes (modid, cmdid) with it.
 */
export function murmur3Int32Pair(a: number, b: number, seed = 0): number {
  let h = seed | 0;
  h = mixH1(h, mixK1(a | 0));
  h = mixH1(h, mixK1(b | 0));
  return fmix32(h, 8);
}
