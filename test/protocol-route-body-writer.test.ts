import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeRouteBody, routeBodyLength, writeRouteBody } from '../src/protocol/index.js';

const int32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
// Zeros are frequent on purpose: proto3 leaves zero fields out.
const field = fc.oneof(fc.constant(0), int32);
const weight = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0xffffffff }));
const host = fc.record({ ip: field, port: field, weight });

describe('route body writer (issue 17): the bytes encodeRouteBody writes', () => {
  it('writes every route that fits one frame byte for byte like the generic encoder', () => {
    fc.assert(
      fc.property(field, field, fc.array(host, { maxLength: 40 }), (modid, cmdid, hosts) => {
        const flat = hosts.flatMap((h) => [h.ip, h.port]);
        const weights = hosts.map((h) => h.weight);
        const generic = encodeRouteBody(
          modid,
          cmdid,
          hosts.map((h) => (h.weight ? h : { ip: h.ip, port: h.port })),
        ).body;
        const len = routeBodyLength(modid, cmdid, flat, weights);
        expect(len).toBe(generic.length);
        // Written at an offset into a dirty buffer: nothing outside [at, end) is touched.
        const b = new Uint8Array(len + 10).fill(0xee);
        expect(writeRouteBody(b, 3, modid, cmdid, flat, weights)).toBe(3 + len);
        expect(Buffer.from(b.subarray(3, 3 + len))).toEqual(Buffer.from(generic));
        expect([...b.subarray(0, 3), ...b.subarray(3 + len)]).toEqual(new Array(10).fill(0xee));
      }),
    );
  });

  it('without weights writes what it writes with all weights 0', () => {
    fc.assert(
      fc.property(
        int32,
        int32,
        fc.array(fc.tuple(int32, int32), { maxLength: 20 }),
        (modid, cmdid, pairs) => {
          const flat = pairs.flat();
          const zeros = pairs.map(() => 0);
          const a = new Uint8Array(routeBodyLength(modid, cmdid, flat));
          const b = new Uint8Array(routeBodyLength(modid, cmdid, flat, zeros));
          writeRouteBody(a, 0, modid, cmdid, flat);
          writeRouteBody(b, 0, modid, cmdid, flat, zeros);
          expect(a).toEqual(b);
        },
      ),
    );
  });
});
