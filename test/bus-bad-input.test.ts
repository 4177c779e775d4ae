import { describe, expect, it } from 'vitest';
import { Control } from '../src/bus/wire/control.js';
import { dataFrameLength, readU32, ReplyStatus, writeDataFrame } from '../src/bus/wire/data-frame.js';
import { BusMsgId } from '../src/bus/wire/msg-id.js';
import { ErrorCode } from '../src/errors.js';
import { client, frame, RawBus, startBus } from './helpers/bus.js';

/** Bad input per DESIGN §9: framing violations close the connection; everything else is an error reply. */
function data(
  msgid: number,
  subject: string,
  payload: Uint8Array,
  opts: { id?: number; kind?: number } = {},
): Buffer {
  const out = Buffer.alloc(dataFrameLength(subject.length, 0, payload.length));
  writeDataFrame(out, 0, msgid, opts.id ?? 0, 0, 0, subject, undefined, payload);
  if (opts.kind !== undefined) out[8 + 10 + subject.length + 2] = opts.kind;
  return out.subarray(8);
}

function header(msgid: number, len: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeInt32LE(msgid, 0);
  h.writeInt32LE(len, 4);
  return h;
}

describe('bus bad input', () => {
  it.each([
    ['negative', -1, ErrorCode.FRAME_NEGATIVE_LENGTH],
    ['too large', (1 << 20) + 4096 + 1, ErrorCode.FRAME_TOO_LARGE],
  ])('a %s body length: ERR, connection closed, counted', async (_n, len, code) => {
    const bus = await startBus();
    const raw = await RawBus.open(bus.socket);
    raw.write(header(BusMsgId.Pub, len));
    await raw.waitClosed();
    expect(raw.errors().map((e) => [e.op, e.code])).toEqual([[0, code]]);
    expect(bus.svc.engine.stats.protocolErrors).toBe(1);
  });

  it('operations before HELLO: ERR / REP NOT_REGISTERED; the connection stays', async () => {
    const bus = await startBus();
    const raw = await RawBus.open(bus.socket);
    raw.send(BusMsgId.Sub, Control.sub.encode({ sid: 7, subject: 'x' }));
    raw.send(BusMsgId.Pub, data(BusMsgId.Pub, 'x', Buffer.from('p')));
    raw.send(BusMsgId.Req, data(BusMsgId.Req, 'x', Buffer.from('r'), { id: 42 }));
    await raw.roundTrip();
    expect(raw.errors().map((e) => [e.op, e.id, e.code])).toEqual([
      [BusMsgId.Sub, 7, ErrorCode.BUS_NOT_REGISTERED],
      [BusMsgId.Pub, 0, ErrorCode.BUS_NOT_REGISTERED],
    ]);
    const rep = await raw.next(BusMsgId.Rep);
    expect(readU32(rep.body, 0)).toBe(42);
    expect(rep.body[8]).toBe(ReplyStatus.NOT_REGISTERED);
  });

  it('unknown operations, undecodable bodies, bad subjects, oversized and malformed frames: one ERR each, connection stays', async () => {
    const bus = await startBus({ maxPayload: 1024, maxSubsPerConn: 2 });
    const raw = await RawBus.open(bus.socket);
    raw.hello('bad');
    raw.hello('again'); // a second HELLO on a registered connection
    raw.send(0x42aa, Buffer.from('??')); // unknown msgid in the bus range
    raw.send(BusMsgId.Sub, Buffer.from([0x0a, 0xff, 0xff])); // undecodable protobuf
    raw.send(BusMsgId.Sub, Control.sub.encode({ sid: 1, subject: 'a..b' }));
    raw.send(BusMsgId.Pub, data(BusMsgId.Pub, 'a.*', Buffer.from('x'))); // wildcard in a publish
    raw.send(BusMsgId.Pub, data(BusMsgId.Pub, '$BUS.x', Buffer.from('x'))); // reserved
    raw.send(BusMsgId.Pub, data(BusMsgId.Pub, 'big', Buffer.alloc(2000))); // over max_payload
    raw.send(BusMsgId.Pub, Buffer.from([1, 2, 3])); // malformed data frame
    raw.send(BusMsgId.Pub, data(BusMsgId.Pub, 'shm', Buffer.alloc(16), { kind: 1 })); // shm handles: not yet
    raw.send(BusMsgId.Serve, Control.serve.encode({ sid: 2, topic: 'svc.*' }));
    raw.send(BusMsgId.Sub, Control.sub.encode({ sid: 3, subject: 'ok.1' }));
    raw.send(BusMsgId.Sub, Control.sub.encode({ sid: 3, subject: 'ok.dup' })); // sid in use
    raw.send(BusMsgId.Sub, Control.sub.encode({ sid: 4, subject: 'ok.2' }));
    raw.send(BusMsgId.Sub, Control.sub.encode({ sid: 5, subject: 'ok.3' })); // over max_subs_per_conn
    raw.send(BusMsgId.Req, data(BusMsgId.Req, 'svc.>', Buffer.from('x'), { id: 9 }));
    await raw.roundTrip();
    expect(raw.closed).toBe(false);
    expect(raw.errors().map((e) => [e.op, e.code])).toEqual([
      [BusMsgId.Hello, ErrorCode.INVALID_ARGUMENT],
      [0x42aa, ErrorCode.INVALID_ARGUMENT],
      [BusMsgId.Sub, ErrorCode.BAD_BODY],
      [BusMsgId.Sub, ErrorCode.INVALID_ARGUMENT],
      [BusMsgId.Pub, ErrorCode.INVALID_ARGUMENT],
      [BusMsgId.Pub, ErrorCode.INVALID_ARGUMENT],
      [BusMsgId.Pub, ErrorCode.MESSAGE_TOO_LARGE],
      [BusMsgId.Pub, ErrorCode.BAD_BODY],
      [BusMsgId.Pub, ErrorCode.INVALID_ARGUMENT],
      [BusMsgId.Serve, ErrorCode.INVALID_ARGUMENT],
      [BusMsgId.Sub, ErrorCode.INVALID_ARGUMENT],
      [BusMsgId.Sub, ErrorCode.BUS_LIMIT],
    ]);
    const rep = await raw.next(BusMsgId.Rep);
    expect([readU32(rep.body, 0), rep.body[8]]).toEqual([9, ReplyStatus.INVALID]);
    const s = bus.svc.engine.stats;
    expect(s.dropped.too_large).toBe(1);
    expect(s.unknownMsgid).toBe(1);
    expect(s.protocolErrors).toBe(0);
    expect(s.internalErrors).toBe(0);
    expect(bus.svc.engine.sublist.count).toBe(2);
  });

  it('100,000 fuzzed frames never stop the bus', async () => {
    const bus = await startBus({ maxPayload: 4096, maxPendingMsgs: 10_000 });
    const rnd = mulberry32(13);
    const int = (n: number): number => Math.floor(rnd() * n);
    const subjects = [
      'a',
      'a.b',
      'a.b.c',
      'x.*',
      '>',
      'a.>',
      'svc.q',
      '',
      'a..b',
      '*',
      '$BUS.x',
      'é',
      'z'.repeat(300),
    ];
    const bodies = (): Buffer => {
      switch (int(9)) {
        case 0:
          return Buffer.from(Control.hello.encode({ name: `f${int(20)}`, takeover: rnd() < 0.2 }));
        case 1:
          return Buffer.from(
            Control.sub.encode({
              sid: int(50),
              subject: subjects[int(subjects.length)]!,
              queue: rnd() < 0.3 ? 'q' : '',
            }),
          );
        case 2:
          return Buffer.from(
            Control.serve.encode({
              sid: int(50),
              topic: subjects[int(subjects.length)]!,
              concurrency: int(3),
            }),
          );
        case 3:
        case 4: {
          const s = subjects[int(subjects.length)]!.slice(0, 255);
          return data(int(2) ? BusMsgId.Pub : BusMsgId.Req, s, Buffer.alloc(int(64), int(256)), {
            id: int(100),
          });
        }
        case 5:
          return Buffer.from(
            Control.queryProc.encode({ req_id: int(10), name: rnd() < 0.5 ? '' : `f${int(20)}` }),
          );
        default:
          return Buffer.from(Array.from({ length: int(40) }, () => int(256)));
      }
    };
    // UNREGISTER ends a session: rare, or most later frames would only test 'not registered'.
    const ids = Object.values(BusMsgId).filter((id) => id !== BusMsgId.Unregister);
    let sent = 0;
    let conns = 0;
    let raw = await RawBus.open(bus.socket);
    raw.socket.destroy();
    while (sent < 100_000) {
      if (raw.closed || rnd() < 0.002) {
        raw.socket.destroy();
        raw = await RawBus.open(bus.socket);
        conns++;
        // Most connections register and listen, so fuzzed publishes and requests are delivered too.
        if (rnd() < 0.8) {
          raw.hello(`fuzz${conns}`);
          raw.send(BusMsgId.Sub, Control.sub.encode({ sid: 1000, subject: '>' }));
          raw.send(BusMsgId.Serve, Control.serve.encode({ sid: 1001, topic: 'svc.q' }));
        }
      }
      const chunks: Buffer[] = [];
      for (let i = 0; i < 500; i++) {
        const body = bodies();
        // Mutate some bytes of valid bodies; pick any msgid, mostly the bus's own.
        if (rnd() < 0.3 && body.length > 0) body[int(body.length)] = int(256);
        const msgid =
          rnd() < 0.001
            ? BusMsgId.Unregister
            : rnd() < 0.9
              ? ids[int(ids.length)]!
              : int(0x7fffffff) - int(0x3fffffff);
        chunks.push(rnd() < 0.0005 ? header(msgid, rnd() < 0.5 ? -5 : 1 << 30) : frame(msgid, body));
        sent++;
      }
      raw.write(Buffer.concat(chunks));
      if (!raw.closed) await raw.roundTrip(int(1e9));
      raw.frames.length = 0;
    }
    raw.socket.destroy();
    expect(conns).toBeGreaterThan(10);
    // Still serving: a normal request/reply and publish/subscribe work; nothing failed inside.
    const server = await client(bus, 'after-fuzz-server');
    server.serve('svc.after', (r) => r.data);
    await server.flush();
    const caller = await client(bus, 'after-fuzz-caller');
    expect((await caller.request('svc.after', 'still here')).string()).toBe('still here');
    expect(bus.svc.engine.stats.internalErrors).toBe(0);
    expect(bus.svc.health().status).toBe('ok');
  });
});

/** A small seeded PRNG so a failing fuzz run can be replayed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
