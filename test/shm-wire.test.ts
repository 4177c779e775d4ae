import fc from 'fast-check';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ShmError } from '../src/errors.js';
import { encodeFrame, FrameDecoder } from '../src/protocol/index.js';
import { holdersReply } from '../src/shm/daemon/core-reports.js';
import { decodeHandle, encodeHandle } from '../src/shm/handle.js';
import { defaultShmSocket, shmSocketFor } from '../src/shm/socket-path.js';
import { checkHeader, HEADER_BYTES, layoutPool, writeHeader } from '../src/shm/pool-layout.js';
import { SCRATCH_MAX_BYTES, SCRATCH_PER_SIZE, ScratchPool } from '../src/shm/scratch-pool.js';
import { formatClasses, humanSize, parseClasses, parseSize } from '../src/shm/size-classes.js';
import {
  decodeRecvPayload,
  decodeReply,
  decodeRequest,
  encodeErrorReply,
  encodeRecvPayload,
  encodeRequest,
  requestId,
  type ShmRequest,
} from '../src/shm/wire-codec.js';
import { codeStatus, ShmMsg, ShmStatus, statusCode } from '../src/shm/wire-ids.js';

const h = (block: number, gen = 1): { pool: number; block: number; gen: number; len: number } => ({
  pool: 7,
  block,
  gen,
  len: 4096 + block,
});

const SAMPLES: ShmRequest[] = [
  { cmd: ShmMsg.HELLO, version: 1, pid: 4242 },
  { cmd: ShmMsg.PROVE },
  { cmd: ShmMsg.ALLOC, size: 1 << 20, align: 64, count: 3 },
  { cmd: ShmMsg.FREE, handles: [h(1), h(2, 9)] },
  { cmd: ShmMsg.ADDREF, handles: [h(3)] },
  { cmd: ShmMsg.SEND, to: 99, ttlMs: 30_000, handles: [h(4), h(5), h(4)] },
  { cmd: ShmMsg.RECV, batchId: 0xfffffff0 },
  { cmd: ShmMsg.STAT },
  { cmd: ShmMsg.HOLDERS },
  { cmd: ShmMsg.RECLAIM, pid: 1234, reason: 2 },
];

describe('shm wire codec', () => {
  it('round-trips every request', () => {
    SAMPLES.forEach((req, i) => {
      const body = encodeRequest(1000 + i, req);
      expect(requestId(body)).toBe(1000 + i);
      expect(decodeRequest(req.cmd, body)).toEqual(req);
    });
  });

  it('decodes a stream of frames split at every offset', () => {
    const stream = Buffer.concat([
      ...SAMPLES.map((req, i) => encodeFrame(req.cmd, encodeRequest(i + 1, req))),
      encodeFrame(ShmMsg.REPLY, encodeErrorReply(77, ShmStatus.NOT_HELD, 'block 3 is not held')),
      encodeFrame(ShmMsg.REPLY, encodeErrorReply(78, ShmStatus.OK, '')),
    ]);
    const decodeAll = (chunks: Buffer[]): unknown[] => {
      const d = new FrameDecoder();
      const out: unknown[] = [];
      for (const c of chunks) {
        for (const f of d.push(c)) {
          const body = Buffer.from(f.body);
          out.push(
            f.msgid === ShmMsg.REPLY
              ? { reply: decodeReply(body).reqid }
              : { id: requestId(body), req: decodeRequest(f.msgid, body) },
          );
        }
      }
      expect(d.failure).toBeUndefined();
      return out;
    };
    const whole = decodeAll([stream]);
    expect(whole).toHaveLength(SAMPLES.length + 2);
    for (let cut = 1; cut < stream.length; cut++) {
      expect(decodeAll([stream.subarray(0, cut), stream.subarray(cut)])).toEqual(whole);
    }
    // And byte by byte.
    expect(decodeAll([...stream].map((b) => Buffer.from([b])))).toEqual(whole);
  });

  it('refuses malformed bodies with SHM_INVALID_ARGUMENT and unknown commands with SHM_UNKNOWN_COMMAND', () => {
    const bad = (msgid: number, body: Buffer): string => {
      try {
        decodeRequest(msgid, body);
      } catch (e) {
        expect(e).toBeInstanceOf(ShmError);
        return (e as ShmError).code;
      }
      return 'decoded';
    };
    const alloc = encodeRequest(1, SAMPLES[2]!);
    expect(bad(ShmMsg.ALLOC, alloc.subarray(0, 13))).toBe('LARS_ERR_SHM_INVALID_ARGUMENT');
    expect(bad(ShmMsg.ALLOC, Buffer.concat([alloc, Buffer.from([0])]))).toBe('LARS_ERR_SHM_INVALID_ARGUMENT');
    const free = encodeRequest(1, SAMPLES[3]!);
    free.writeUInt16LE(3, 4); // says 3 handles, carries 2
    expect(bad(ShmMsg.FREE, free)).toBe('LARS_ERR_SHM_INVALID_ARGUMENT');
    const none = Buffer.alloc(6);
    expect(bad(ShmMsg.FREE, none)).toBe('LARS_ERR_SHM_INVALID_ARGUMENT'); // zero handles
    expect(bad(0x4399, Buffer.alloc(4))).toBe('LARS_ERR_SHM_UNKNOWN_COMMAND');
    expect(requestId(Buffer.alloc(3))).toBeUndefined();
  });

  it('never throws anything but a ShmError for arbitrary bodies (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0x4300, max: 0x430f }),
        fc.uint8Array({ maxLength: 200 }),
        (msgid, bytes) => {
          try {
            decodeRequest(msgid, Buffer.from(bytes));
          } catch (e) {
            if (!(e instanceof ShmError)) throw e;
          }
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('maps every status to one LARS_ERR_SHM_* code and back', () => {
    for (const [name, status] of Object.entries(ShmStatus)) {
      if (status === 0) continue;
      const code = statusCode(status);
      expect(code).toBe(`LARS_ERR_SHM_${name}`);
      expect(codeStatus(code)).toBe(status);
    }
    expect(statusCode(999)).toBe('LARS_ERR_SHM_INVALID_ARGUMENT');
  });

  it('carries handles through other channels in 16 bytes', () => {
    const x = h(12345, 0xfffffffe);
    expect(decodeHandle(encodeHandle(x))).toEqual(x);
    expect(() => decodeHandle(Buffer.alloc(15))).toThrow(
      expect.objectContaining({ code: 'LARS_ERR_SHM_INVALID_ARGUMENT' }),
    );
    const recv = encodeRecvPayload(-5, [x, h(1)]);
    expect(decodeRecvPayload(recv)).toEqual({ fromPid: -5, handles: [x, h(1)] });
  });
});

describe('shm size classes and pool layout', () => {
  it('parses class specs and sizes with units', () => {
    expect(parseSize('4KiB')).toBe(4096);
    expect(parseSize('1.5MiB')).toBe(1.5 * 1024 * 1024);
    expect(parseSize('64k')).toBe(65536);
    expect(formatClasses(parseClasses('1MiB:64, 4KiB:4096'))).toBe('4KiB:4096,1MiB:64');
    expect(() => parseClasses('100:4')).toThrow(/multiple of 64/);
    expect(() => parseClasses('4KiB:0')).toThrow(/count/);
    expect(() => parseClasses('4KiB:1,4096:2')).toThrow(/twice/);
    expect(() => parseClasses('4KiB')).toThrow(/SIZE:COUNT/);
    expect(() => parseClasses('')).toThrow(/SIZE:COUNT/);
    expect(humanSize(25_269_084_160)).toBe('23.5 GiB');
  });

  it('aligns class regions to pages and blocks to their natural alignment', () => {
    const layout = layoutPool(parseClasses('64:3,4KiB:2,192:5,16MiB:1'));
    const [c64, c192, c4k, c16m] = layout.classes;
    expect(c64).toMatchObject({ offset: HEADER_BYTES, firstBlock: 0, align: 64 });
    expect(c192).toMatchObject({ offset: 8192, firstBlock: 3, align: 64 });
    expect(c4k).toMatchObject({ offset: 12288, firstBlock: 8, align: 4096 });
    expect(c16m).toMatchObject({ offset: 20480, firstBlock: 10, align: 4096 });
    expect(layout.size).toBe(20480 + 16 * 1024 * 1024);
    expect(layout.blocks).toBe(11);
  });

  it('writes a header that a client checks against the HELLO', () => {
    const layout = layoutPool(parseClasses('4KiB:2'));
    const header = Buffer.alloc(HEADER_BYTES);
    writeHeader(layout, 5, header);
    expect(() => checkHeader(header, layout, 5, '/x')).not.toThrow();
    expect(() => checkHeader(header, layout, 6, '/x')).toThrow(/generation 5, expected 6/);
    header[0] = 0;
    expect(() => checkHeader(header, layout, 5, '/x')).toThrow(/bad magic/);
  });
});

describe('shm file-mode scratch pool', () => {
  it('reuses buffers per size within its bounds', () => {
    const pool = new ScratchPool();
    const a = pool.take(4096);
    pool.give(a);
    // Identity checks as booleans: toBe on Buffers also deep-compares them (slow for 64 MiB).
    expect(pool.take(4096) === a).toBe(true);
    const many = Array.from({ length: SCRATCH_PER_SIZE + 2 }, () => pool.take(8192));
    for (const b of many) pool.give(b);
    const again = Array.from({ length: SCRATCH_PER_SIZE + 2 }, () => pool.take(8192));
    expect(again.filter((b) => many.includes(b))).toHaveLength(SCRATCH_PER_SIZE);
    for (const b of again) pool.give(b); // 4 kept: 32 KiB
    const huge = pool.take(SCRATCH_MAX_BYTES);
    pool.give(huge); // would pass the byte bound together with what is kept: not kept
    expect(pool.take(SCRATCH_MAX_BYTES) === huge).toBe(false);
  });
});

describe('shm socket path and reply bounds', () => {
  it('puts the socket of a long data directory under the temp directory, the same for everyone', () => {
    expect(shmSocketFor('/var/lib/lars')).toBe('/var/lib/lars/shm/shm.sock');
    const long = `/data/${'x'.repeat(100)}`;
    const s = shmSocketFor(long);
    expect(s.startsWith(join(tmpdir(), 'lars-shm-'))).toBe(true);
    expect(Buffer.byteLength(s)).toBeLessThanOrEqual(107);
    expect(shmSocketFor(long)).toBe(s);
    expect(shmSocketFor(`${long}y`)).not.toBe(s);
    expect(defaultShmSocket({ LARS_SHM_SOCKET: '/x/s.sock' })).toBe('/x/s.sock');
    expect(defaultShmSocket({ LARS_DATA_DIR: '/d' })).toBe('/d/shm/shm.sock');
  });

  it('cuts a HOLDERS reply to one frame, keeping the largest holders', () => {
    const holders = Array.from({ length: 2000 }, (_, i) => ({
      pid: i + 1,
      name: 'n'.repeat(15),
      connections: 1,
      blocks: 2000 - i,
      bytes: (2000 - i) * 4096,
      classes: [{ size: 4096, blocks: 2000 - i }],
      sent: { batches: 0, bytes: 0 },
    }));
    const reply = holdersReply(9, { generation: 1, holders, inBatches: { batches: 0, blocks: 0, bytes: 0 } });
    expect(reply.length).toBeLessThanOrEqual(65527);
    const r = decodeReply(reply);
    const report = JSON.parse(r.payload.toString()) as { holders: { pid: number }[]; truncated: boolean };
    expect(report.truncated).toBe(true);
    expect(report.holders[0]!.pid).toBe(1);
    expect(report.holders.length).toBeLessThan(2000);
  });
});
