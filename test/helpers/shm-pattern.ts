/** Deterministic bytes from a seed (xorshift), so both sides can check content without sending it. */
export function pattern(seed: number, len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
