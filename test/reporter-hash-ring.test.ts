import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../src/errors.js';
import { HashRing } from '../src/reporter/hash-ring.js';
import { murmur3, murmur3Int32Pair, murmur3String } from '../src/reporter/murmur3.js';

const KEYS = 100_000;

/** 100k distinct routes: 100 modids x 1000 cmdids, as a large deployment numbers them. */
function* routes(): Generator<[number, number]> {
  for (let i = 0; i < KEYS; i++) yield [1 + Math.floor(i / 1000), 1 + (i % 1000)];
}

describe('murmur3_x86_32', () => {
  it('matches the reference implementation', () => {
    // Vectors from Appleby's SMHasher / widely published test tables.
    expect(murmur3String('', 0)).toBe(0);
    expect(murmur3String('', 1)).toBe(0x514e28b7);
    expect(murmur3String('', 0xffffffff)).toBe(0x81f16f39);
    expect(murmur3(new Uint8Array([0, 0, 0, 0]), 0)).toBe(0x2362f9de);
    expect(murmur3(new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0)).toBe(0xf55b516b);
    expect(murmur3(new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0x5082edee)).toBe(0x2362f9de);
    expect(murmur3(new Uint8Array([0x21, 0x43, 0x65]), 0)).toBe(0x7e4a8634);
    expect(murmur3(new Uint8Array([0x21, 0x43]), 0)).toBe(0xa0f7b07a);
    expect(murmur3(new Uint8Array([0x21]), 0)).toBe(0x72661cf4);
    expect(murmur3String('hello', 0)).toBe(0x248bfa47);
    expect(murmur3String('The quick brown fox jumps over the lazy dog', 0)).toBe(0x2e4ff723);
  });

  it('hashes an int32 pair like the 8 little-endian bytes, without allocating', () => {
    for (const [a, b, seed] of [
      [0, 0, 0],
      [1, 2, 0],
      [-1, 0x7fffffff, 42],
      [-2147483648, 123456, 0xdeadbeef],
    ] as const) {
      const bytes = Buffer.alloc(8);
      bytes.writeInt32LE(a, 0);
      bytes.writeInt32LE(b, 4);
      expect(murmur3Int32Pair(a, b, seed)).toBe(murmur3(bytes, seed));
    }
  });
});

describe('HashRing', () => {
  it('spreads 100k routes over 3 writers within ±10% of a third each', () => {
    const ring = new HashRing(3);
    const counts = [0, 0, 0];
    for (const [m, c] of routes()) counts[ring.writerOf(m, c)]! += 1;
    for (const n of counts) {
      expect(n).toBeGreaterThanOrEqual((KEYS / 3) * 0.9);
      expect(n).toBeLessThanOrEqual((KEYS / 3) * 1.1);
    }
  });

  it('adding a writer moves about 1/N of the routes, all of them to the new writer', () => {
    const before = new HashRing(3);
    const after = new HashRing(4);
    let moved = 0;
    for (const [m, c] of routes()) {
      const a = before.writerOf(m, c);
      const b = after.writerOf(m, c);
      if (a !== b) {
        moved += 1;
        // Consistent hashing: a route only ever moves onto the new writer's points.
        expect(b).toBe(3);
      }
    }
    // Ideal is 1/4 of the routes.
    expect(moved / KEYS).toBeGreaterThan(0.2);
    expect(moved / KEYS).toBeLessThan(0.3);
  });

  it('is deterministic and total: same ring, same writer; every writer index is valid', () => {
    const a = new HashRing(5);
    const b = new HashRing(5);
    for (let i = 0; i < 10_000; i++) {
      const w = a.writerOf(i, -i);
      expect(w).toBe(b.writerOf(i, -i));
      expect(w).toBeGreaterThanOrEqual(0);
      expect(w).toBeLessThan(5);
    }
    // Wrap-around: a hash above the last point belongs to the first point's writer.
    expect(a.ownerOfHash(0xffffffff)).toBe(a.ownerOfHash(0));
    expect(new HashRing(1).writerOf(7, 8)).toBe(0);
  });

  it('rejects invalid sizes', () => {
    expect(() => new HashRing(0)).toThrow(InvalidArgumentError);
    expect(() => new HashRing(2, 0)).toThrow(InvalidArgumentError);
  });
});
