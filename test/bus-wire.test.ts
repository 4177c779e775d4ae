import { describe, expect, it } from 'vitest';
import {
  checkName,
  checkSubject,
  checkSubscription,
  Control,
  DataFields,
  dataFrameLength,
  decodeHeaders,
  encodeHeaders,
  OutBuffer,
  parseDataFrame,
  readU32,
  ReplyStatus,
  writeDataFrame,
  writeForward,
  writeStatusReply,
} from '../src/bus/wire/index.js';
import { BusMsgId } from '../src/bus/wire/msg-id.js';
import { ErrorCode, type LarsError } from '../src/errors.js';
import { FrameDecoder } from '../src/protocol/index.js';

describe('bus subjects', () => {
  it.each([
    ['a', true],
    ['a.b.c', true],
    ['svc.resize-v2_x', true],
    ['', false],
    ['.a', false],
    ['a.', false],
    ['a..b', false],
    ['a b', false],
    ['a.*', false],
    ['a.>', false],
    ['$BUS.x', false],
    ['é', false],
    ['a'.repeat(256), false],
    [Array.from({ length: 17 }, () => 'x').join('.'), false],
    [Array.from({ length: 16 }, () => 'x').join('.'), true],
  ])('publish subject %j valid: %s', (s, ok) => {
    expect(checkSubject(s) === undefined).toBe(ok);
  });

  it.each([
    ['a.*', true],
    ['*.b', true],
    ['a.>', true],
    ['>', true],
    ['*', true],
    ['a.>.b', false],
    ['a*', false],
    ['a.b*', false],
    ['>a', false],
    ['a.>>', false],
    ['$BUS.>', false],
  ])('subscription %j valid: %s', (s, ok) => {
    expect(checkSubscription(s) === undefined).toBe(ok);
  });

  it('names: printable ASCII, 1-64 bytes', () => {
    expect(checkName('vss', 'proc name')).toBeUndefined();
    expect(checkName('', 'proc name')).toMatch(/empty/);
    expect(checkName('a b', 'proc name')).toMatch(/printable/);
    expect(checkName('x'.repeat(65), 'proc name')).toMatch(/64/);
  });
});

describe('bus data frames', () => {
  it('writes and parses a frame with subject, headers and payload', () => {
    const hdr = encodeHeaders({ a: '1', trace: 'xyz' }) as Buffer;
    const payload = Buffer.from(
      'hello world, this payload is longer than forty-eight bytes to take the set() path',
    );
    const out = Buffer.alloc(dataFrameLength(7, hdr.length, payload.length));
    const end = writeDataFrame(out, 0, BusMsgId.Pub, 11, 22, 3, 'a.b.cde', hdr, payload);
    expect(end).toBe(out.length);
    expect(readU32(out, 0)).toBe(BusMsgId.Pub);
    expect(readU32(out, 4)).toBe(out.length - 8);
    const f = new DataFields();
    expect(parseDataFrame(out, 8, out.length - 8, f)).toBe(true);
    expect(readU32(out, 8)).toBe(11);
    expect(readU32(out, 12)).toBe(22);
    expect(out[16]).toBe(3);
    expect(out.toString('latin1', f.subjStart, f.subjStart + f.subjLen)).toBe('a.b.cde');
    expect(decodeHeaders(out, f.hdrStart, f.hdrLen)).toEqual({ a: '1', trace: 'xyz' });
    expect(f.kind).toBe(0);
    expect(out.subarray(f.payloadStart, f.end)).toEqual(payload);
  });

  it('forwards a body byte for byte, with only id and aux replaced', () => {
    const src = Buffer.alloc(dataFrameLength(3, 0, 5));
    writeDataFrame(src, 0, BusMsgId.Pub, 0, 0, 0, 'x.y', undefined, Buffer.from('12345'));
    const dst = Buffer.alloc(src.length + 10);
    const end = writeForward(dst, 10, BusMsgId.Msg, src, 8, src.length - 8, 0xfffffff0, 7);
    expect(end).toBe(dst.length);
    expect(readU32(dst, 10)).toBe(BusMsgId.Msg);
    expect(readU32(dst, 18)).toBe(0xfffffff0);
    expect(readU32(dst, 22)).toBe(7);
    expect(dst.subarray(26)).toEqual(src.subarray(16));
  });

  it('status replies carry the status and a UTF-8 detail', () => {
    const out = Buffer.alloc(100);
    const end = writeStatusReply(out, 0, 5, ReplyStatus.NO_RESPONDERS, 'no proc serves "x" — none');
    const f = new DataFields();
    expect(parseDataFrame(out, 8, end - 8, f)).toBe(true);
    expect(readU32(out, 0)).toBe(BusMsgId.Rep);
    expect(out[16]).toBe(ReplyStatus.NO_RESPONDERS);
    expect(out.toString('utf8', f.payloadStart, end)).toBe('no proc serves "x" — none');
  });

  it('rejects every truncation of a valid body and inconsistent lengths', () => {
    const hdr = encodeHeaders({ k: 'v' }) as Buffer;
    const out = Buffer.alloc(dataFrameLength(3, hdr.length, 0));
    writeDataFrame(out, 0, BusMsgId.Pub, 0, 0, 0, 'a.b', hdr, new Uint8Array(0));
    const f = new DataFields();
    const body = out.length - 8;
    for (let n = 0; n < body; n++) expect(parseDataFrame(out, 8, n, f), `length ${n}`).toBe(false);
    expect(parseDataFrame(out, 8, body, f)).toBe(true);
    const bad = Buffer.from(out);
    bad[8 + 9] = 200; // subject length beyond the body
    expect(parseDataFrame(bad, 8, body, f)).toBe(false);
  });

  it('headers refuse NUL and empty names', () => {
    expect(encodeHeaders({ '': 'x' })).toMatch(/empty/);
    expect(encodeHeaders({ a: 'x\0y' })).toMatch(/NUL/);
    expect(decodeHeaders(Buffer.from('a\0'), 0, 2)).toEqual({});
  });
});

describe('bus frames on a stream', () => {
  it('decodes the same frames whatever the split, bodies up to the bus limit', () => {
    const bodies = [0, 13, 70_000, 5].map((n, i) => Buffer.alloc(n, i + 1));
    const stream = Buffer.concat(
      bodies.map((b, i) => {
        const h = Buffer.alloc(8);
        h.writeInt32LE(BusMsgId.Pub + i, 0);
        h.writeInt32LE(b.length, 4);
        return Buffer.concat([h, b]);
      }),
    );
    const expected = bodies.map((b, i) => `${BusMsgId.Pub + i}:${b.length}:${b[0] ?? ''}`);
    for (const split of [1, 7, 8, 9, 4096, 69_999, stream.length - 1]) {
      const d = new FrameDecoder({ maxBodyLen: (1 << 20) + 4096 });
      const got: string[] = [];
      const visit = (id: number, buf: Uint8Array, s: number, n: number): void =>
        void got.push(`${id}:${n}:${n ? buf[s] : ''}`);
      d.visit(stream.subarray(0, split), visit);
      d.visit(stream.subarray(split), visit);
      expect(got, `split at ${split}`).toEqual(expected);
    }
  });

  it('rejects a header over the limit as soon as it is read', () => {
    const d = new FrameDecoder({ maxBodyLen: 1000 });
    const h = Buffer.alloc(8);
    h.writeInt32LE(BusMsgId.Pub, 0);
    h.writeInt32LE(1001, 4);
    d.visit(h, () => {});
    expect(d.failure?.code).toBe(ErrorCode.FRAME_TOO_LARGE);
  });
});

describe('bus control frames and staging', () => {
  it('an undecodable control body is LARS_ERR_BAD_BODY', () => {
    let err: LarsError | undefined;
    try {
      Control.hello.decode(Buffer.from([0x0a, 0xff, 0xff, 0xff]));
    } catch (e) {
      err = e as LarsError;
    }
    expect(err?.code).toBe(ErrorCode.BAD_BODY);
  });

  it('OutBuffer hands staged bytes over and reuses written buffers', () => {
    const out = new OutBuffer(16);
    out.appendFrame(BusMsgId.Ping, Control.ping.encode({ req_id: 5 }));
    out.appendBytes(Buffer.alloc(40, 9)); // grows past 16
    const first = out.take()!;
    expect(first.length).toBe(8 + 2 + 40);
    expect(readU32(first, 0)).toBe(BusMsgId.Ping);
    expect(out.take()).toBeUndefined();
    out.recycle(first);
    out.appendBytes(Buffer.from([1, 2, 3]));
    const second = out.take()!;
    expect([...second]).toEqual([1, 2, 3]);
    out.appendBytes(Buffer.from([4]));
    // Staging continued in the recycled buffer: no allocation for a steady stream of flushes.
    expect(out.take()!.buffer).toBe(first.buffer);
  });
});
