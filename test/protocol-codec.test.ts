import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  codecs,
  decodeMessage,
  encodeFrame,
  encodeRouteBody,
  MAX_DATAGRAM_BODY_LEN,
  encodeMessage,
  fromWireIp,
  ipToNumber,
  ipToWire,
  MAX_BODY_LEN,
  MsgId,
  numberToIp,
  parseDatagram,
  parsePort,
  wireToIp,
} from '../src/protocol/index.js';
import { ErrorCode, LarsError } from '../src/errors.js';
import { FIELD_COUNT } from '../src/protocol/messages.js';
import protobuf from 'protobufjs';
import { fileURLToPath } from 'node:url';

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    return (e as LarsError).code;
  }
  return undefined;
};

describe('IPv4 wire encoding', () => {
  it('matches INET_ATON and travels as int32', () => {
    expect(ipToNumber('192.168.1.177')).toBe(3232235953);
    expect(ipToWire('192.168.1.177')).toBe(-1062731343);
    expect(wireToIp(-1062731343)).toBe('192.168.1.177');
    expect(fromWireIp(-1062731343)).toBe(3232235953);
    expect(ipToNumber('127.0.0.1')).toBe(2130706433);
    expect(ipToWire('255.255.255.255')).toBe(-1);
    expect(numberToIp(0)).toBe('0.0.0.0');
    expect(ipToWire('128.0.0.0')).toBe(-(2 ** 31));
  });

  it('round-trips every address through the protobuf field', () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        const body = encodeMessage(MsgId.GetHostResponse, {
          seq: 1,
          modid: 1,
          cmdid: 1,
          retcode: 0,
          host: { ip: ipToWire(ip), port: 1 },
        });
        const m = decodeMessage(MsgId.GetHostResponse, body);
        expect(wireToIp(m.host!.ip)).toBe(ip);
      }),
    );
  });

  it.each(['1.2.3', '1.2.3.256', '01.2.3.4', 'a.b.c.d', '', ' 1.2.3.4', '1.2.3.4.5'])('rejects %j', (ip) => {
    expect(codeOf(() => ipToNumber(ip))).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it('validates ports', () => {
    expect(parsePort('8888')).toBe(8888);
    expect(parsePort(0, 'port', true)).toBe(0);
    for (const bad of ['0', '65536', '-1', '80x', '1.5', ''])
      expect(codeOf(() => parsePort(bad))).toBe(ErrorCode.INVALID_ARGUMENT);
  });
});

describe('message codecs', () => {
  it('round-trip every message id with plain objects', () => {
    const samples = {
      [MsgId.GetRouteRequest]: { modid: 1, cmdid: 2 },
      [MsgId.GetRouteResponse]: {
        modid: 1,
        cmdid: 2,
        host: [
          { ip: -1062731343, port: 80 },
          { ip: 1, port: 2 },
        ],
      },
      [MsgId.ReportStatusRequest]: {
        modid: 3,
        cmdid: 4,
        caller: ipToWire('10.0.0.1'),
        results: [{ ip: -5, port: 9, succ: 4000000000, err: 1, overload: true }],
        ts: 1700000000,
      },
      [MsgId.GetHostRequest]: { seq: 4294967295, modid: 5, cmdid: 6 },
      [MsgId.GetHostResponse]: { seq: 7, modid: 5, cmdid: 6, retcode: 3, host: undefined },
      [MsgId.ReportRequest]: { modid: 1, cmdid: 1, host: { ip: 2, port: 3 }, retcode: 1, timecost_ms: 1234 },
      [MsgId.ApiGetRouteRequest]: { modid: 0, cmdid: 0 },
      [MsgId.ApiGetRouteResponse]: { modid: 9, cmdid: 9, host: [{ ip: 5, port: 6, weight: 3 }] },
      [MsgId.RegisterRequest]: {
        seq: 1,
        modid: -1,
        cmdid: 2,
        host: { ip: -1062731343, port: 7777, weight: 3 },
        ttl_s: 10,
        pid: 4242,
        pid_start: 2 ** 40 + 7,
        pid_ns: 4026531836,
      },
      [MsgId.RegisterResponse]: {
        seq: 1,
        retcode: 2,
        host: { ip: 1, port: 2 },
        ttl_s: 10,
        reason: 'too many registrations',
        watched: true,
      },
      [MsgId.DeregisterRequest]: {
        seq: 2,
        modid: 1,
        cmdid: 2,
        host: { ip: 1, port: 2 },
        ttl_s: 0,
        pid: 0,
        pid_start: 0,
        pid_ns: 0,
      },
      [MsgId.DeregisterResponse]: {
        seq: 2,
        retcode: 0,
        host: undefined,
        ttl_s: 0,
        reason: '',
        watched: false,
      },
      [MsgId.LeaseBatch]: {
        agent: '10.0.0.1:8888',
        renew: [{ modid: 1, cmdid: 2, host: { ip: -5, port: 80, weight: 2 }, ttl_s: 10 }],
        remove: [{ modid: 1, cmdid: 3, host: { ip: 6, port: 81 }, ttl_s: 0 }],
      },
    } as const;
    for (const [id, msg] of Object.entries(samples)) {
      const msgid = Number(id) as keyof typeof codecs;
      const decoded = decodeMessage(msgid, encodeMessage(msgid, msg as never));
      expect(decoded, `msgid ${id}`).toEqual(msg);
    }
  });

  it('weight (HostInfo field 3) is absent when 0, so all-weight-1 routes encode as before', () => {
    const plain = encodeMessage(MsgId.GetRouteResponse, { modid: 1, cmdid: 1, host: [{ ip: 1, port: 2 }] });
    const zero = encodeMessage(MsgId.GetRouteResponse, {
      modid: 1,
      cmdid: 1,
      host: [{ ip: 1, port: 2, weight: 0 }],
    });
    expect(Buffer.from(zero)).toEqual(Buffer.from(plain));
    // An original peer's decoder skips field 3 of HostInfo: 0x18 0x03 is "field 3, varint 3".
    const weighted = encodeMessage(MsgId.GetRouteResponse, {
      modid: 0,
      cmdid: 0,
      host: [{ ip: 1, port: 2, weight: 3 }],
    });
    expect(Buffer.from(weighted).toString('hex')).toBe('1a06080110021803');
  });

  it('is wire-compatible with hand-built protobuf bytes', () => {
    // GetHostRequest{seq=1, modid=2, cmdid=3}: field 1 varint 1, field 2 varint 2, field 3 varint 3.
    const body = Uint8Array.from([0x08, 0x01, 0x10, 0x02, 0x18, 0x03]);
    expect(decodeMessage(MsgId.GetHostRequest, body)).toEqual({ seq: 1, modid: 2, cmdid: 3 });
    // HostInfo ip=-1 is encoded as a 10-byte varint (int32 negative, sign-extended).
    const host = encodeMessage(MsgId.GetRouteResponse, { modid: 0, cmdid: 0, host: [{ ip: -1, port: 1 }] });
    expect(Buffer.from(host).toString('hex')).toBe('1a0d08ffffffffffffffffff011001');
  });

  it('rejects a body that does not decode with LARS_ERR_BAD_BODY', () => {
    expect(codeOf(() => decodeMessage(MsgId.GetRouteResponse, Uint8Array.from([0x1a, 0x05, 0x08])))).toBe(
      ErrorCode.BAD_BODY,
    );
  });

  it('a known field with the wrong wire type is a bad body, not an all-zero message', () => {
    // GetHostRequest field 2 (modid) sent length-delimited: protobufjs would skip it as unknown.
    const wrong = Uint8Array.from([0x08, 0x01, 0x12, 0x01, 0x07, 0x18, 0x03]);
    expect(codeOf(() => decodeMessage(MsgId.GetHostRequest, wrong))).toBe(ErrorCode.BAD_BODY);
    // Nested: ReportRequest.host (field 3) whose ip (field 1) is a fixed32.
    const nested = Uint8Array.from([0x1a, 0x05, 0x0d, 0x01, 0x02, 0x03, 0x04]);
    expect(codeOf(() => decodeMessage(MsgId.ReportRequest, nested))).toBe(ErrorCode.BAD_BODY);
    // A repeated message field (GetRouteResponse.host) sent as a varint.
    expect(codeOf(() => decodeMessage(MsgId.GetRouteResponse, Uint8Array.from([0x18, 0x01])))).toBe(
      ErrorCode.BAD_BODY,
    );
    // ReportStatusRequest.results[0].overload (field 5) as a fixed64.
    const stats = Uint8Array.from([0x22, 0x09, 0x29, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(codeOf(() => decodeMessage(MsgId.ReportStatusRequest, stats))).toBe(ErrorCode.BAD_BODY);
    // Unknown field numbers stay allowed (newer peers add fields): skipped.
    const newer = Uint8Array.from([0x08, 0x01, 0x10, 0x02, 0x18, 0x03, 0xa2, 0x06, 0x01, 0x00]);
    expect(decodeMessage(MsgId.GetHostRequest, newer)).toEqual({ seq: 1, modid: 2, cmdid: 3 });
  });

  it('encodeRouteBody keeps a route to one answer: the hosts that fit, and total_hosts', () => {
    const hosts = Array.from({ length: 5000 }, (_, i) => ({
      ip: ipToWire(`200.0.${i >> 8}.${i & 255}`),
      port: 1 + i,
      // Some hosts carry a weight (field 3): the size estimate must count it.
      ...(i % 3 === 0 ? { weight: 1 + (i % 500) } : {}),
    }));
    const small = encodeRouteBody(1, 2, hosts.slice(0, 10), MAX_DATAGRAM_BODY_LEN);
    expect(small.truncated).toBe(false);
    expect(decodeMessage(MsgId.GetRouteResponse, small.body)).toEqual({
      modid: 1,
      cmdid: 2,
      host: hosts.slice(0, 10),
    });
    for (const limit of [MAX_DATAGRAM_BODY_LEN, MAX_BODY_LEN, 1000]) {
      const { body, truncated } = encodeRouteBody(1, 2, hosts, limit);
      const m = decodeMessage(MsgId.GetRouteResponse, body);
      expect([truncated, body.length <= limit, m.total_hosts]).toEqual([true, true, 5000]);
      expect(m.host).toEqual(hosts.slice(0, m.host.length));
      // As many as fit: one more host would not.
      const more = encodeMessage(MsgId.GetRouteResponse, {
        modid: 1,
        cmdid: 2,
        host: hosts.slice(0, m.host.length + 1),
        total_hosts: 5000,
      });
      expect(more.length).toBeGreaterThan(limit);
    }
  });

  it('FIELD_COUNT matches proto/lars.proto (fields numbered 1..N)', () => {
    const root = protobuf.loadSync(fileURLToPath(new URL('../proto/lars.proto', import.meta.url)));
    for (const [name, count] of Object.entries(FIELD_COUNT)) {
      const ids = root
        .lookupType(`lars.${name}`)
        .fieldsArray.map((f) => f.id)
        .sort((a, b) => a - b);
      expect([name, ids]).toEqual([name, Array.from({ length: count }, (_, i) => i + 1)]);
    }
    const all = Object.keys((root.lookup('lars') as protobuf.Namespace).nested ?? {});
    expect(all.sort()).toEqual(Object.keys(FIELD_COUNT).sort());
  });

  it('property: random bodies decode or raise LARS_ERR_BAD_BODY, never anything else', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.keys(codecs).map(Number)),
        fc.uint8Array({ maxLength: 200 }),
        (id, bytes) => {
          try {
            decodeMessage(id as keyof typeof codecs, bytes);
          } catch (e) {
            expect((e as LarsError).code).toBe(ErrorCode.BAD_BODY);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('frames and datagrams', () => {
  it('encodes header little-endian with the body length only', () => {
    const f = encodeFrame(4, Uint8Array.from([1, 2, 3]));
    expect([...f]).toEqual([4, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3]);
  });

  it('refuses to frame a body over the limit', () => {
    expect(codeOf(() => encodeFrame(1, new Uint8Array(MAX_BODY_LEN + 1)))).toBe(ErrorCode.MESSAGE_TOO_LARGE);
  });

  it('parses exactly one frame per datagram', () => {
    const f = encodeFrame(4, Uint8Array.from([8, 1]));
    expect(parseDatagram(f).msgid).toBe(4);
    expect(codeOf(() => parseDatagram(f.subarray(0, 5)))).toBe(ErrorCode.DATAGRAM_SIZE);
    expect(codeOf(() => parseDatagram(f.subarray(0, 9)))).toBe(ErrorCode.DATAGRAM_SIZE);
    expect(codeOf(() => parseDatagram(Buffer.concat([f, f])))).toBe(ErrorCode.DATAGRAM_SIZE);
    const neg = Buffer.from(f);
    neg.writeInt32LE(-2, 4);
    expect(codeOf(() => parseDatagram(neg))).toBe(ErrorCode.FRAME_NEGATIVE_LENGTH);
  });
});
