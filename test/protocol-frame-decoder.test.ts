import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { encodeFrame, FrameDecoder, HEADER_LEN, MAX_BODY_LEN, type Frame } from '../src/protocol/index.js';
import { ErrorCode } from '../src/errors.js';

function header(msgid: number, msglen: number): Buffer {
  const b = Buffer.alloc(HEADER_LEN);
  b.writeInt32LE(msgid, 0);
  b.writeInt32LE(msglen, 4);
  return b;
}

const plain = (fs: Frame[]) => fs.map((f) => ({ msgid: f.msgid, body: Buffer.from(f.body).toString('hex') }));

describe('FrameDecoder', () => {
  const frames = [
    encodeFrame(1, Buffer.from([8, 1, 16, 2])),
    encodeFrame(4, Buffer.alloc(0)),
    encodeFrame(2, Buffer.alloc(300, 7)),
    encodeFrame(-5, Buffer.from('hello')),
    encodeFrame(8, Buffer.from([1])),
  ];
  const stream = Buffer.concat(frames);
  const expected = [
    { msgid: 1, body: '08011002' },
    { msgid: 4, body: '' },
    { msgid: 2, body: Buffer.alloc(300, 7).toString('hex') },
    { msgid: -5, body: Buffer.from('hello').toString('hex') },
    { msgid: 8, body: '01' },
  ];

  it('decodes a coalesced stream in one push', () => {
    expect(plain(new FrameDecoder().push(stream))).toEqual(expected);
  });

  it('decodes the stream split at every offset', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder();
      const got = [...plain(d.push(stream.subarray(0, cut))), ...plain(d.push(stream.subarray(cut)))];
      expect(got, `split at ${cut}`).toEqual(expected);
      expect(d.buffered).toBe(0);
    }
  });

  it('decodes the stream split at every pair of offsets', () => {
    for (let a = 0; a <= stream.length; a += 3) {
      for (let b = a; b <= stream.length; b += 7) {
        const d = new FrameDecoder();
        const got = [
          ...plain(d.push(stream.subarray(0, a))),
          ...plain(d.push(stream.subarray(a, b))),
          ...plain(d.push(stream.subarray(b))),
        ];
        expect(got).toEqual(expected);
      }
    }
  });

  it('decodes the stream one byte at a time', () => {
    const d = new FrameDecoder();
    const got = [];
    for (const byte of stream) got.push(...plain(d.push(Buffer.from([byte]))));
    expect(got).toEqual(expected);
  });

  it('copies split bodies so later pushes do not change them', () => {
    const d = new FrameDecoder();
    const f = encodeFrame(3, Buffer.from('abcdef'));
    const first = Buffer.from(f.subarray(0, 10));
    d.push(first);
    const [frame] = d.push(Buffer.from(f.subarray(10)));
    first.fill(0);
    expect(Buffer.from(frame!.body).toString()).toBe('abcdef');
  });

  it('rejects a negative length as soon as the header is complete', () => {
    const d = new FrameDecoder();
    const h = header(1, -1);
    expect(d.push(h.subarray(0, 7))).toEqual([]);
    expect(d.failure).toBeUndefined();
    expect(d.push(h.subarray(7))).toEqual([]);
    expect(d.failure?.code).toBe(ErrorCode.FRAME_NEGATIVE_LENGTH);
  });

  it('rejects a too-large length without waiting for the body', () => {
    const d = new FrameDecoder();
    d.push(header(1, MAX_BODY_LEN + 1));
    expect(d.failure?.code).toBe(ErrorCode.FRAME_TOO_LARGE);
    expect(d.buffered).toBe(0);
  });

  it('accepts the largest body', () => {
    const body = Buffer.alloc(MAX_BODY_LEN, 1);
    const [f] = new FrameDecoder().push(Buffer.concat([header(9, MAX_BODY_LEN), body]));
    expect(f!.body.length).toBe(MAX_BODY_LEN);
  });

  it('returns the frames before a violation, then ignores input', () => {
    const d = new FrameDecoder();
    const got = d.push(Buffer.concat([frames[0]!, header(2, -9), frames[1]!]));
    expect(plain(got)).toEqual([expected[0]]);
    expect(d.failure?.code).toBe(ErrorCode.FRAME_NEGATIVE_LENGTH);
    expect(d.push(frames[0]!)).toEqual([]);
  });

  it('property: any chunking of valid frames yields the same frames', () => {
    const frameArb = fc.record({
      msgid: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      body: fc.uint8Array({ maxLength: 2000 }),
    });
    fc.assert(
      fc.property(
        fc.array(frameArb, { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (fs, cuts) => {
          const bytes = Buffer.concat(fs.map((f) => encodeFrame(f.msgid, f.body)));
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
          const d = new FrameDecoder();
          const got: Frame[] = [];
          let prev = 0;
          for (const p of [...points, bytes.length]) {
            got.push(...d.push(bytes.subarray(prev, p)));
            prev = p;
          }
          expect(plain(got)).toEqual(plain(fs.map((f) => ({ msgid: f.msgid, body: f.body }))));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: random and mutated bytes give frames or a protocol error, bounded memory', () => {
    const valid = Buffer.concat(frames);
    const mutated = fc
      .array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 10 })
      .map((muts) => {
        const b = Buffer.from(valid);
        for (const [i, v] of muts) b[i] = v;
        return b;
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 5000 }), mutated), fc.nat(64), (bytes, step) => {
        const d = new FrameDecoder();
        const chunk = step + 1;
        for (let i = 0; i < bytes.length; i += chunk) {
          for (const f of d.push(bytes.subarray(i, i + chunk))) {
            expect(f.body.length).toBeLessThanOrEqual(MAX_BODY_LEN);
          }
          expect(d.buffered).toBeLessThanOrEqual(HEADER_LEN + MAX_BODY_LEN);
        }
        if (d.failure) {
          expect([ErrorCode.FRAME_NEGATIVE_LENGTH, ErrorCode.FRAME_TOO_LARGE]).toContain(d.failure.code);
        }
      }),
      { numRuns: 500 },
    );
  });
});
