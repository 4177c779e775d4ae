import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeGetHostDatagram,
  decodeReportDatagram,
  encodeGetHostResponseFrame,
  MAX_HOT_RESPONSE_LEN,
  type HotGetHost,
  type HotReport,
} from '../src/protocol/hot-codec.js';
import { decodeMessage, encodeFrame, encodeMessage, MsgId, RetCode } from '../src/protocol/index.js';

const int32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const uint32 = fc.integer({ min: 0, max: 0xffffffff });
const datagram = (msgid: number, body: Uint8Array) => encodeFrame(msgid, body);

describe('hot codec (issue 17): the same bytes and values as the generic codec', () => {
  it('decodes every GetHostRequest the generic encoder writes, negative ids included', () => {
    fc.assert(
      fc.property(uint32, int32, int32, (seq, modid, cmdid) => {
        const d = datagram(MsgId.GetHostRequest, encodeMessage(MsgId.GetHostRequest, { seq, modid, cmdid }));
        const out: HotGetHost = { seq: -1, modid: -1, cmdid: -1 };
        expect(decodeGetHostDatagram(d, d.length, out)).toBe(true);
        expect(out).toEqual({ seq, modid, cmdid });
      }),
    );
  });

  it('decodes every ReportRequest with a host as the generic decoder does', () => {
    fc.assert(
      fc.property(int32, int32, int32, int32, int32, uint32, (modid, cmdid, ip, port, retcode, t) => {
        const msg = { modid, cmdid, host: { ip, port }, retcode, timecost_ms: t };
        const d = datagram(MsgId.ReportRequest, encodeMessage(MsgId.ReportRequest, msg));
        const out: HotReport = { modid: 0, cmdid: 0, ip: 0, port: 0, retcode: 0, timecostMs: 0 };
        expect(decodeReportDatagram(d, d.length, out)).toBe(true);
        const g = decodeMessage(MsgId.ReportRequest, d.subarray(8));
        expect(out).toEqual({
          modid: g.modid,
          cmdid: g.cmdid,
          ip: g.host!.ip,
          port: g.host!.port,
          retcode: g.retcode,
          timecostMs: g.timecost_ms ?? 0,
        });
      }),
    );
  });

  it('writes GetHostResponse frames byte for byte like the generic encoder', () => {
    fc.assert(
      fc.property(uint32, int32, int32, fc.boolean(), int32, int32, (seq, modid, cmdid, ok, ip, port) => {
        const retcode = ok ? RetCode.SUCC : RetCode.NOEXIST;
        const generic = datagram(
          MsgId.GetHostResponse,
          encodeMessage(MsgId.GetHostResponse, {
            seq,
            modid,
            cmdid,
            retcode,
            ...(ok ? { host: { ip, port } } : {}),
          }),
        );
        const b = Buffer.alloc(MAX_HOT_RESPONSE_LEN);
        const n = encodeGetHostResponseFrame(b, seq, modid, cmdid, retcode, ok, ip, port);
        expect(b.subarray(0, n).toString('hex')).toBe(generic.toString('hex'));
      }),
    );
  });

  it('leaves anything unusual to the generic path', () => {
    const out: HotGetHost = { seq: 0, modid: 0, cmdid: 0 };
    const good = datagram(
      MsgId.GetHostRequest,
      encodeMessage(MsgId.GetHostRequest, { seq: 1, modid: 2, cmdid: 3 }),
    );
    expect(decodeGetHostDatagram(good, good.length, out)).toBe(true);
    // Size not matching the header, another msgid, an unknown field, a wrong wire type, a cut varint.
    expect(decodeGetHostDatagram(good, good.length - 1, out)).toBe(false);
    const asReport = Buffer.from(good);
    asReport[0] = MsgId.ReportRequest;
    expect(decodeGetHostDatagram(asReport, asReport.length, out)).toBe(false);
    const unknownField = datagram(MsgId.GetHostRequest, Buffer.from([0x08, 0x01, 0x20, 0x05]));
    expect(decodeGetHostDatagram(unknownField, unknownField.length, out)).toBe(false);
    const wrongType = datagram(MsgId.GetHostRequest, Buffer.from([0x0a, 0x01, 0x00]));
    expect(decodeGetHostDatagram(wrongType, wrongType.length, out)).toBe(false);
    const cut = datagram(MsgId.GetHostRequest, Buffer.from([0x08, 0x81]));
    expect(decodeGetHostDatagram(cut, cut.length, out)).toBe(false);
    // A report without a host is the generic path's to count.
    const r: HotReport = { modid: 0, cmdid: 0, ip: 0, port: 0, retcode: 0, timecostMs: 0 };
    const noHost = datagram(
      MsgId.ReportRequest,
      encodeMessage(MsgId.ReportRequest, { modid: 1, cmdid: 1, retcode: 0 }),
    );
    expect(decodeReportDatagram(noHost, noHost.length, r)).toBe(false);
    const hostOverrun = datagram(MsgId.ReportRequest, Buffer.from([0x1a, 0x09, 0x08, 0x01]));
    expect(decodeReportDatagram(hostOverrun, hostOverrun.length, r)).toBe(false);
  });
});
