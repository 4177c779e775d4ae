import { describe, expect, it } from 'vitest';
import type { RouteSnapshot } from '../src/dns/route-snapshot.js';
import { SnapshotBuilder } from '../src/dns/route-snapshot-builder.js';
import { decodeMessage, encodeRouteBody, MAX_BODY_LEN, MsgId, toWireIp } from '../src/protocol/index.js';

const row = (modid: number, cmdid: number, ip: number, port: number) => ({ modid, cmdid, ip, port });

describe('SnapshotBuilder', () => {
  it('answers each route with the body encodeRouteBody writes, rows in any order', async () => {
    const b = new SnapshotBuilder();
    // Routes interleaved, across chunks, with an address from 128.0.0.0 up (negative on the wire).
    b.add([row(1, 1, 0x0a000001, 80), row(2, 7, 0xc0a80001, 81), row(1, 1, 0x0a000002, 0)]);
    b.add([row(2, 7, 0x0a000003, 82), row(1, 1, 0x0a000003, 83)]);
    b.setWeights([
      { ...row(2, 7, 0xc0a80001, 81), weight: 5 },
      { ...row(1, 1, 0x0a000001, 80), weight: 1 },
    ]);
    const s = await b.build(9);
    expect(s.version).toBe(9);
    expect(s.routeCount).toBe(2);
    expect(s.hostCount).toBe(5);
    expect(s.responseBody(1, 1)).toEqual(
      encodeRouteBody(1, 1, [
        { ip: 0x0a000001, port: 80 },
        { ip: 0x0a000002, port: 0 },
        { ip: 0x0a000003, port: 83 },
      ]).body,
    );
    expect(s.responseBody(2, 7)).toEqual(
      encodeRouteBody(2, 7, [
        { ip: toWireIp(0xc0a80001), port: 81, weight: 5 },
        { ip: 0x0a000003, port: 82 },
      ]).body,
    );
    expect(s.oversized.size).toBe(0);
  });

  it('answers a route too big for one frame with the truncated body and marks it oversized', async () => {
    const b = new SnapshotBuilder();
    const n = 10_000; // about 11 bytes a host: well past one frame
    b.add(Array.from({ length: n }, (_, i) => row(3, 3, 0x0a000000 + i, 1000 + (i % 50_000))));
    const s = await b.build(1);
    const body = s.responseBody(3, 3);
    expect(body.length).toBeLessThanOrEqual(MAX_BODY_LEN);
    expect(decodeMessage(MsgId.GetRouteResponse, body).total_hosts).toBe(n);
    expect([...s.oversized]).toEqual(['3:3']);
  });

  describe('over a previous snapshot (issue 17: a full reload that finds nothing changed)', () => {
    const rows = [row(1, 1, 0x0a000001, 80), row(1, 1, 0x0a000002, 81), row(2, 2, 0xc0a80001, 82)];
    const weight = { ...row(1, 1, 0x0a000002, 81), weight: 3 };
    const build = (r: typeof rows, version: number, previous?: RouteSnapshot, w = weight) => {
      const b = new SnapshotBuilder();
      b.add(r);
      b.setWeights([w]);
      return b.build(version, previous);
    };

    it('keeps the previous bodies when every route encodes the same', async () => {
      const first = await build(rows, 1);
      const next = await build(rows, 2, first);
      expect(next.version).toBe(2);
      expect(next.responseBody(1, 1)).toBe(first.responseBody(1, 1));
      expect(next.responseBody(2, 2)).toBe(first.responseBody(2, 2));
      expect(next.hostCount).toBe(3);
      expect(await first.diff(next)).toEqual([]);
    });

    it.each([
      ['a port', [row(1, 1, 0x0a000001, 80), row(1, 1, 0x0a000002, 81), row(2, 2, 0xc0a80001, 99)], weight],
      ['a host', [row(1, 1, 0x0a000001, 80), row(1, 1, 0x0a000002, 81)], weight],
      ['a route', [...rows, row(3, 3, 0x0a000009, 83)], weight],
      ['a weight', rows, { ...weight, weight: 4 }],
      ['host order', [rows[1]!, rows[0]!, rows[2]!], weight],
    ])('builds new bodies when %s changed', async (_what, changed, w) => {
      const first = await build(rows, 1);
      const next = await build(changed, 2, first, w);
      const fresh = await build(changed, 2, undefined, w);
      for (const key of ['1:1', '2:2', '3:3']) {
        const [m, c] = key.split(':').map(Number) as [number, number];
        expect(next.responseBody(m, c)).toEqual(fresh.responseBody(m, c));
      }
      expect(next.hostCount).toBe(fresh.hostCount);
      expect((await first.diff(next)).length).toBeGreaterThan(0);
    });
  });
});
