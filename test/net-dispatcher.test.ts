import { describe, expect, it } from 'vitest';
import { ErrorCode, ProtocolError } from '../src/errors.js';
import {
  Dispatcher,
  memoryPair,
  type DispatchObserver,
  type MemoryTransport,
  type Transport,
} from '../src/net/index.js';
import { encodeMessage, MsgId, type Codec, type GetHostRequest } from '../src/protocol/index.js';
import { Latch } from './helpers/latch.js';

interface Seen {
  unknown: number[];
  protocol: string[];
  handler: unknown[];
}

function observer<C = unknown>(): DispatchObserver<C> & { seen: Seen } {
  const seen: Seen = { unknown: [], protocol: [], handler: [] };
  return {
    seen,
    unknownMsgid: (msgid) => seen.unknown.push(msgid),
    protocolError: (err) => seen.protocol.push(err.code),
    handlerError: (err) => seen.handler.push(err),
  };
}

const ADMIN_POLL = 1000;
const textCodec: Codec<string> = {
  encode: (s) => Buffer.from(s, 'utf8'),
  decode: (b) => {
    if (b.length === 0) throw new ProtocolError(ErrorCode.BAD_BODY, 'empty text');
    return Buffer.from(b).toString('utf8');
  },
};

describe('Dispatcher', () => {
  it('decodes known msgids with the protocol codec and passes the context', () => {
    const got: [GetHostRequest, string][] = [];
    const d = new Dispatcher<string>().on(MsgId.GetHostRequest, (m, ctx) => {
      got.push([m, ctx]);
    });
    const obs = observer();
    d.dispatch(
      MsgId.GetHostRequest,
      encodeMessage(MsgId.GetHostRequest, { seq: 7, modid: 1, cmdid: 2 }),
      'ctx-a',
      obs,
    );
    expect(got).toEqual([[{ seq: 7, modid: 1, cmdid: 2 }, 'ctx-a']]);
    expect(obs.seen).toEqual({ unknown: [], protocol: [], handler: [] });
  });

  it('routes by msgid: each id reaches its own handler only', () => {
    const calls: string[] = [];
    const d = new Dispatcher<null>()
      .on(MsgId.GetRouteRequest, (m) => void calls.push(`route ${m.modid}/${m.cmdid}`))
      .on(MsgId.ReportRequest, (m) => void calls.push(`report ${m.retcode}`));
    const obs = observer();
    d.dispatch(
      MsgId.ReportRequest,
      encodeMessage(MsgId.ReportRequest, { modid: 1, cmdid: 1, retcode: 3 }),
      null,
      obs,
    );
    d.dispatch(
      MsgId.GetRouteRequest,
      encodeMessage(MsgId.GetRouteRequest, { modid: 5, cmdid: 6 }),
      null,
      obs,
    );
    expect(calls).toEqual(['report 3', 'route 5/6']);
  });

  it('supports extra msgids with a custom codec and raw bodies', () => {
    const calls: unknown[] = [];
    const d = new Dispatcher<null>()
      .onCodec(ADMIN_POLL, textCodec, (s) => void calls.push(s))
      .onRaw(2000, (body, _ctx, msgid) => void calls.push([msgid, Buffer.from(body).toString('hex')]));
    const obs = observer();
    d.dispatch(ADMIN_POLL, Buffer.from('poll now'), null, obs);
    d.dispatch(2000, Buffer.from([1, 2, 255]), null, obs);
    expect(calls).toEqual(['poll now', [2000, '0102ff']]);
  });

  it('reports unknown msgids and bad bodies to the observer without throwing', () => {
    const d = new Dispatcher<null>()
      .on(MsgId.GetHostRequest, () => {})
      .onCodec(ADMIN_POLL, textCodec, () => {});
    const obs = observer();
    d.dispatch(99, Buffer.alloc(3), null, obs);
    d.dispatch(MsgId.GetHostRequest, Buffer.from([0xff, 0xff, 0xff]), null, obs);
    d.dispatch(ADMIN_POLL, Buffer.alloc(0), null, obs);
    expect(obs.seen.unknown).toEqual([99]);
    expect(obs.seen.protocol).toEqual([ErrorCode.BAD_BODY, ErrorCode.BAD_BODY]);
  });

  it('separates handler bugs from protocol violations, sync and async', async () => {
    const d = new Dispatcher<null>()
      .onRaw(1, () => {
        throw new TypeError('bug');
      })
      .onRaw(2, () => {
        throw new ProtocolError(ErrorCode.BAD_BODY, 'declared bad');
      })
      .onRaw(3, () => Promise.reject(new RangeError('async bug')))
      .onRaw(4, () => {
        // An oversized reply is our own bug, not the peer's violation.
        throw new ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, 'reply too large');
      });
    const obs = observer();
    for (const id of [1, 2, 3, 4]) d.dispatch(id, Buffer.alloc(0), null, obs);
    await Promise.resolve();
    await Promise.resolve();
    expect(obs.seen.protocol).toEqual([ErrorCode.BAD_BODY]);
    expect(obs.seen.handler.map((e) => (e as Error).name)).toEqual([
      'TypeError',
      'ProtocolError',
      'RangeError',
    ]);
  });

  it('refuses a second handler for one msgid and off() makes it unknown', () => {
    const d = new Dispatcher<null>().on(MsgId.GetHostRequest, () => {});
    expect(() => d.on(MsgId.GetHostRequest, () => {})).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
    expect(() => d.onRaw(2 ** 31, () => {})).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
    d.off(MsgId.GetHostRequest);
    const obs = observer();
    d.dispatch(MsgId.GetHostRequest, Buffer.alloc(0), null, obs);
    expect(obs.seen.unknown).toEqual([MsgId.GetHostRequest]);
  });
});

describe('memoryPair (in-memory Transport)', () => {
  it('runs one protocol implementation written against Transport', async () => {
    // "Protocol code": an echo service that only knows the Transport interface.
    const serverSide = new Dispatcher<Transport>().on(MsgId.GetHostRequest, (m, t) => {
      t.send(MsgId.GetHostResponse, { seq: m.seq, modid: m.modid, cmdid: m.cmdid, retcode: 0 });
    });
    const replies: number[] = [];
    const done = new Latch(2, 'replies');
    const clientSide = new Dispatcher<MemoryTransport>().on(MsgId.GetHostResponse, (m) => {
      replies.push(m.seq);
      done.countDown();
    });
    const [client, server] = memoryPair(clientSide, serverSide);
    client.send(MsgId.GetHostRequest, { seq: 1, modid: 2, cmdid: 3 });
    client.send(MsgId.GetHostRequest, { seq: 2, modid: 2, cmdid: 3 });
    await done.wait();
    expect(replies).toEqual([1, 2]);
    expect(server.stats.framesIn).toBe(2);
  });

  it('closes both ends on a protocol violation and send after close throws ClosedError', async () => {
    const [a, b] = memoryPair(
      new Dispatcher(),
      new Dispatcher<MemoryTransport>().on(MsgId.GetHostRequest, () => {}),
    );
    a.sendRaw(MsgId.GetHostRequest, Buffer.from([0xff, 0xff]));
    await Promise.resolve();
    await Promise.resolve();
    expect(b.stats.protocolErrors).toBe(1);
    expect(b.closeReason).toMatchObject({ code: ErrorCode.BAD_BODY });
    expect(a.closed).toBe(true);
    expect(() => a.send(MsgId.GetHostRequest, { seq: 1, modid: 1, cmdid: 1 })).toThrow(
      expect.objectContaining({ code: ErrorCode.CLOSED }),
    );
  });
});
