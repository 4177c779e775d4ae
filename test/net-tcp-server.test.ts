import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, type LarsError } from '../src/errors.js';
import type { Logger } from '../src/log/logger.js';
import { FrameWriter } from '../src/net/frame-writer.js';
import {
  Dispatcher,
  TcpServer,
  type TcpConnection,
  type TcpServerOptions,
  type Transport,
} from '../src/net/index.js';
import {
  codecs,
  encodeFrame,
  encodeMessage,
  FrameDecoder,
  HEADER_LEN,
  MsgId,
  type Frame,
  type GetHostResponse,
} from '../src/protocol/index.js';
import { Latch, waitFor } from './helpers/latch.js';

// ---------- helpers ----------

/** A raw TCP peer: writes arbitrary bytes and decodes what the server sends. */
class RawPeer {
  readonly frames: Frame[] = [];
  bytesIn = 0;
  ended = false;
  closed = false;
  private readonly decoder = new FrameDecoder();
  private readonly closedLatch = new Latch(1, 'peer closed');

  private constructor(
    readonly socket: Socket,
    decode: boolean,
  ) {
    socket.on('error', () => {});
    socket.on('end', () => {
      this.ended = true;
    });
    socket.on('close', () => {
      this.closed = true;
      this.closedLatch.countDown();
    });
    if (decode) this.startReading();
  }

  static connect(port: number, opts: { decode?: boolean } = {}): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.off('error', reject);
        resolve(new RawPeer(s, opts.decode ?? true));
      });
      s.once('error', reject);
    });
  }

  startReading(): void {
    this.socket.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      for (const f of this.decoder.push(chunk))
        this.frames.push({ msgid: f.msgid, body: Buffer.from(f.body) });
    });
    this.socket.resume();
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  request(seq: number): void {
    this.write(
      encodeFrame(MsgId.GetHostRequest, encodeMessage(MsgId.GetHostRequest, { seq, modid: 1, cmdid: 2 })),
    );
  }

  async waitFrames(n: number): Promise<Frame[]> {
    await waitFor(() => this.frames.length >= n, 5000, `${n} frames`);
    return this.frames;
  }

  waitClosed(): Promise<void> {
    return this.closedLatch.wait();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function header(msgid: number, msglen: number): Buffer {
  const b = Buffer.alloc(HEADER_LEN);
  b.writeInt32LE(msgid, 0);
  b.writeInt32LE(msglen, 4);
  return b;
}

const seqs = (frames: Frame[]): number[] =>
  frames.map((f) => codecs[MsgId.GetHostResponse].decode(f.body).seq);

interface LogLine {
  level: string;
  msg: string | undefined;
}
function memoryLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: string) =>
    (_obj: object, msg?: string): void => {
      lines.push({ level, msg });
    };
  const logger: Logger = {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: () => logger,
  };
  return { logger, lines };
}

/** Echo service written against Transport: GetHostRequest -> GetHostResponse with the same seq. */
function echoDispatcher(): Dispatcher<Transport> {
  return new Dispatcher<Transport>().on(MsgId.GetHostRequest, (m, t) => {
    t.send(MsgId.GetHostResponse, { seq: m.seq, modid: m.modid, cmdid: m.cmdid, retcode: 0 });
  });
}

const servers: { destroy(): Promise<void> }[] = [];
const peers: RawPeer[] = [];

async function startServer<S = Record<string, unknown>>(
  opts: Partial<TcpServerOptions<S>> = {},
): Promise<{ server: TcpServer<S>; port: number }> {
  const server = new TcpServer<S>({
    host: '127.0.0.1',
    port: 0,
    maxConnections: 100,
    maxOutboundBytes: 1024 * 1024,
    dispatcher: echoDispatcher(),
    ...opts,
  });
  servers.push(server);
  const { port } = await server.listen();
  return { server, port };
}

async function peer(port: number, opts?: { decode?: boolean }): Promise<RawPeer> {
  const p = await RawPeer.connect(port, opts);
  peers.push(p);
  return p;
}

afterEach(async () => {
  vi.useRealTimers();
  for (const p of peers.splice(0)) p.destroy();
  await Promise.all(servers.splice(0).map((s) => s.destroy()));
});

// ---------- tests ----------

describe('TcpServer', () => {
  it('listens on port 0 and dispatches by msgid', async () => {
    const dispatcher = echoDispatcher().on(MsgId.GetRouteRequest, (m, t) => {
      t.send(MsgId.GetRouteResponse, { modid: m.modid, cmdid: m.cmdid, host: [{ ip: 1, port: 2 }] });
    });
    const { server, port } = await startServer({ dispatcher });
    expect(port).toBeGreaterThan(0);
    expect(server.address()).toEqual({ host: '127.0.0.1', port });
    const p = await peer(port);
    // Two frames coalesced in one write, in the order route, host.
    p.write(
      Buffer.concat([
        encodeFrame(MsgId.GetRouteRequest, encodeMessage(MsgId.GetRouteRequest, { modid: 9, cmdid: 8 })),
        encodeFrame(
          MsgId.GetHostRequest,
          encodeMessage(MsgId.GetHostRequest, { seq: 5, modid: 1, cmdid: 1 }),
        ),
      ]),
    );
    const frames = await p.waitFrames(2);
    expect(frames.map((f) => f.msgid)).toEqual([MsgId.GetRouteResponse, MsgId.GetHostResponse]);
    expect(codecs[MsgId.GetRouteResponse].decode(frames[0]!.body)).toEqual({
      modid: 9,
      cmdid: 8,
      host: [{ ip: 1, port: 2 }],
    });
    expect(seqs(frames.slice(1))).toEqual([5]);
    expect(server.stats).toMatchObject({
      framesIn: 2,
      framesOut: 2,
      connectionsAccepted: 1,
      connectionsOpen: 1,
    });
  });

  it('decodes frames split across writes', async () => {
    const { port } = await startServer();
    const p = await peer(port);
    const bytes = Buffer.concat(
      [1, 2, 3].map((seq) =>
        encodeFrame(MsgId.GetHostRequest, encodeMessage(MsgId.GetHostRequest, { seq, modid: 1, cmdid: 1 })),
      ),
    );
    let from = 0;
    for (const cut of [3, 11, 17, 30]) {
      p.write(bytes.subarray(from, cut));
      from = cut;
      await waitFor(() => true); // one event-loop turn between writes
    }
    p.write(bytes.subarray(from));
    expect(seqs(await p.waitFrames(3))).toEqual([1, 2, 3]);
  });

  it('runs start/close hooks once per connection and keeps per-connection state', async () => {
    const started: number[] = [];
    const closedWith: [number, Error | undefined, number][] = [];
    const closed = new Latch(2, 'closed hooks');
    const dispatcher = new Dispatcher<TcpConnection<{ count: number }>>().on(
      MsgId.GetHostRequest,
      (m, conn) => {
        conn.state.count += 1;
        conn.send(MsgId.GetHostResponse, { seq: conn.state.count, modid: conn.id, cmdid: 0, retcode: 0 });
      },
    );
    const { port } = await startServer<{ count: number }>({
      dispatcher,
      createState: () => ({ count: 0 }),
      onConnectionStart: (conn) => {
        started.push(conn.id);
        expect(conn.remote.address).toBe('127.0.0.1');
        expect(conn.remote.port).toBeGreaterThan(0);
      },
      onConnectionClose: (conn, reason) => {
        closedWith.push([conn.id, reason, conn.state.count]);
        closed.countDown();
      },
    });
    const a = await peer(port);
    const b = await peer(port);
    a.request(1);
    a.request(1);
    a.request(1);
    b.request(1);
    const fa = await a.waitFrames(3);
    const fb = await b.waitFrames(1);
    expect(seqs(fa)).toEqual([1, 2, 3]);
    expect(seqs(fb)).toEqual([1]);
    const idA = codecs[MsgId.GetHostResponse].decode(fa[0]!.body).modid;
    const idB = codecs[MsgId.GetHostResponse].decode(fb[0]!.body).modid;
    expect(started).toEqual([idA, idB]);
    expect(idA).not.toBe(idB);
    a.socket.end();
    b.socket.end();
    await closed.wait();
    expect(closedWith.sort((x, y) => x[0] - y[0])).toEqual([
      [idA, undefined, 3],
      [idB, undefined, 1],
    ]);
  });

  it('skips and counts unknown msgids; the connection stays open', async () => {
    const { server, port } = await startServer();
    const p = await peer(port);
    p.write(Buffer.concat([header(4242, 3), Buffer.from([1, 2, 3]), header(-7, 0)]));
    p.request(77);
    expect(seqs(await p.waitFrames(1))).toEqual([77]);
    expect(server.stats.unknownMsgid).toBe(2);
    expect(server.stats.protocolErrors).toBe(0);
    expect(p.closed).toBe(false);
  });

  it('closes only the violating connection (bad body, negative length, too-large length)', async () => {
    const reasons: string[] = [];
    const { logger, lines } = memoryLogger();
    const { server, port } = await startServer({
      logger,
      onConnectionClose: (_c, reason) => reasons.push((reason as LarsError | undefined)?.code ?? 'none'),
    });
    const good = await peer(port);
    const badBody = await peer(port);
    const negative = await peer(port);
    const tooLarge = await peer(port);
    badBody.write(Buffer.concat([header(MsgId.GetHostRequest, 3), Buffer.from([0xff, 0xff, 0xff])]));
    negative.write(header(MsgId.GetHostRequest, -1));
    tooLarge.write(header(MsgId.GetHostRequest, 65528));
    await Promise.all([badBody.waitClosed(), negative.waitClosed(), tooLarge.waitClosed()]);
    await waitFor(() => reasons.length === 3);
    expect(reasons.sort()).toEqual(
      [ErrorCode.BAD_BODY, ErrorCode.FRAME_NEGATIVE_LENGTH, ErrorCode.FRAME_TOO_LARGE].sort(),
    );
    expect(server.stats.protocolErrors).toBe(3);
    // Counted each; logged at a bounded rate (issue 11): the first line, the rest only counted.
    expect(lines.filter((l) => l.msg?.startsWith('protocol violation'))).toHaveLength(1);
    // The good connection is still served.
    good.request(1);
    good.request(2);
    expect(seqs(await good.waitFrames(2))).toEqual([1, 2]);
    expect(good.closed).toBe(false);
    expect(server.connectionCount).toBe(1);
  });

  it('counts handler failures without closing the connection', async () => {
    const dispatcher = echoDispatcher().onRaw(500, () => {
      throw new TypeError('handler bug');
    });
    const { logger, lines } = memoryLogger();
    const { server, port } = await startServer({ dispatcher, logger });
    const p = await peer(port);
    p.write(Buffer.concat([header(500, 0), header(500, 0)]));
    p.request(3);
    expect(seqs(await p.waitFrames(1))).toEqual([3]);
    expect(server.stats.handlerErrors).toBe(2);
    expect(lines.filter((l) => l.level === 'error')).toHaveLength(1);
  });

  it('refuses connections beyond maxConnections, counts them and logs once per crossing', async () => {
    const { logger, lines } = memoryLogger();
    const closed = new Latch(1, 'first connection closed');
    const { server, port } = await startServer({
      maxConnections: 2,
      logger,
      onConnectionClose: closed.countDown,
    });
    const a = await peer(port);
    const b = await peer(port);
    await waitFor(() => server.stats.connectionsOpen === 2);
    const c = await peer(port);
    const d = await peer(port);
    await Promise.all([c.waitClosed(), d.waitClosed()]);
    expect(server.stats.connectionsRefused).toBe(2);
    expect(lines.filter((l) => l.msg?.startsWith('connection limit reached'))).toHaveLength(1);
    // The accepted ones are unaffected.
    b.request(1);
    expect(seqs(await b.waitFrames(1))).toEqual([1]);
    // Below the limit again: a new connection is accepted.
    a.destroy();
    await closed.wait();
    const e = await peer(port);
    e.request(2);
    expect(seqs(await e.waitFrames(1))).toEqual([2]);
    expect(server.stats).toMatchObject({ connectionsAccepted: 3, connectionsRefused: 2, connectionsOpen: 2 });
  });

  it('cuts a slow peer whose outbound queue passes the limit; others are unaffected', async () => {
    const FLOOD = 600;
    const limit = 256 * 1024;
    const reasons: Error[] = [];
    const cut = new Latch(1, 'slow peer cut');
    const dispatcher = echoDispatcher().onRaw(FLOOD, (_body, conn) => {
      // Pushes 32 KiB frames, one per event-loop turn, until the connection is cut.
      const chunk = Buffer.alloc(32 * 1024, 1);
      let sent = 0;
      const pump = (): void => {
        if (conn.closed || sent > 100_000) return;
        conn.sendRaw(FLOOD, chunk);
        sent += 1;
        setImmediate(pump);
      };
      pump();
    });
    const { server, port } = await startServer({
      dispatcher,
      maxOutboundBytes: limit,
      onConnectionClose: (_c, reason) => {
        if (reason) reasons.push(reason);
        cut.countDown();
      },
    });
    const slow = await peer(port, { decode: false });
    slow.socket.pause();
    const healthy = await peer(port);
    slow.write(header(FLOOD, 0));
    await cut.wait(10_000);
    expect(reasons.map((r) => (r as LarsError).code)).toEqual([ErrorCode.SLOW_PEER]);
    expect(server.stats.slowPeerCuts).toBe(1);
    healthy.request(42);
    expect(seqs(await healthy.waitFrames(1))).toEqual([42]);
    expect(server.stats.connectionsOpen).toBe(1);
  });

  it('closes idle connections (inbound traffic only), with fake timers', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const closed = new Latch(1, 'idle close');
    let reason: Error | undefined;
    const { server, port } = await startServer({
      idleTimeoutMs: 1000,
      onConnectionClose: (_c, r) => {
        reason = r;
        closed.countDown();
      },
    });
    const p = await peer(port);
    await waitFor(() => server.stats.connectionsOpen === 1);
    vi.advanceTimersByTime(900);
    p.request(1);
    await p.waitFrames(1);
    vi.advanceTimersByTime(900); // 1800 since accept, 900 since the last inbound frame
    expect(server.stats.idleTimeouts).toBe(0);
    vi.advanceTimersByTime(100);
    expect(server.stats.idleTimeouts).toBe(1);
    await closed.wait();
    expect((reason as LarsError).code).toBe(ErrorCode.TIMEOUT);
    await p.waitClosed();
  });

  it('close() delivers replies already queued; destroy() does not wait for them', async () => {
    const BULK = 700;
    const FRAMES = 320; // 320 x 64 KiB = 20 MiB: far more than the kernel buffers of a paused peer
    const dispatcher = echoDispatcher().onRaw(BULK, (_b, conn) => {
      const body = Buffer.alloc(64 * 1024 - HEADER_LEN - 1, 2);
      for (let i = 0; i < FRAMES; i++) conn.sendRaw(BULK, body);
    });
    const total = FRAMES * 64 * 1024 - FRAMES;

    for (const mode of ['close', 'destroy'] as const) {
      const { server, port } = await startServer({ dispatcher, maxOutboundBytes: 64 * 1024 * 1024 });
      const p = await peer(port, { decode: false });
      p.socket.pause();
      p.write(header(BULK, 0));
      await waitFor(() => server.stats.framesOut === FRAMES);
      const done = mode === 'close' ? server.close(10_000) : server.destroy();
      p.startReading();
      await done;
      await p.waitClosed();
      if (mode === 'close') {
        expect(p.bytesIn).toBe(total);
        expect(p.ended).toBe(true);
      } else {
        expect(p.bytesIn).toBeLessThan(total);
      }
    }
  });

  it('close() with many connections ends them in waves over the first half of the grace period', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { server, port } = await startServer();
    const ps = await Promise.all(Array.from({ length: 20 }, () => peer(port)));
    await waitFor(() => server.stats.connectionsOpen === 20);
    const done = server.close(1000);
    vi.advanceTimersByTime(0); // wave 1 of 10
    await waitFor(() => ps.filter((p) => p.ended).length === 2, 5000, 'first wave ended');
    vi.advanceTimersByTime(50); // wave 2
    await waitFor(() => ps.filter((p) => p.ended).length === 4, 5000, 'second wave ended');
    expect(ps.filter((p) => p.ended)).toHaveLength(4);
    vi.advanceTimersByTime(450); // the remaining waves
    await done;
    expect(ps.every((p) => p.ended)).toBe(true);
    expect(server.stats.connectionsOpen).toBe(0);
  });

  it('close() and destroy() are idempotent; later calls fail with ClosedError', async () => {
    let conn: TcpConnection | undefined;
    const { server, port } = await startServer({ onConnectionStart: (c) => void (conn = c) });
    const p = await peer(port);
    await waitFor(() => conn !== undefined);
    const first = server.close(1000);
    expect(server.close()).toBe(first);
    await first;
    await server.destroy();
    await server.close();
    await p.waitClosed();
    expect(conn!.closed).toBe(true);
    expect(() => conn!.send(MsgId.GetHostResponse, { seq: 1, modid: 1, cmdid: 1, retcode: 0 })).toThrow(
      expect.objectContaining({ code: ErrorCode.CLOSED }),
    );
    await expect(server.listen()).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    // A fresh server can be closed before it ever listened.
    const idle = new TcpServer({
      host: '127.0.0.1',
      port: 0,
      maxConnections: 1,
      maxOutboundBytes: 1024,
      dispatcher: echoDispatcher(),
    });
    await idle.close();
    await idle.destroy();
  });

  it('rejects listen() on a port in use with the system error', async () => {
    const { port } = await startServer();
    const second = new TcpServer({
      host: '127.0.0.1',
      port,
      maxConnections: 1,
      maxOutboundBytes: 1024,
      dispatcher: echoDispatcher(),
    });
    await expect(second.listen()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await second.close();
  });
});

describe('FrameWriter batching', () => {
  function fakeSocket(): { socket: import('node:net').Socket; writes: Buffer[] } {
    const writes: Buffer[] = [];
    const socket = { writableLength: 0, write: (b: Buffer) => (writes.push(Buffer.from(b)), true) };
    return { socket: socket as unknown as import('node:net').Socket, writes };
  }

  it('writes all frames of a batch with one write', () => {
    const { socket, writes } = fakeSocket();
    const w = new FrameWriter(socket, 1 << 20);
    w.beginBatch();
    for (let seq = 0; seq < 100; seq++)
      w.append(
        MsgId.GetHostResponse,
        encodeMessage(MsgId.GetHostResponse, { seq, modid: 1, cmdid: 1, retcode: 0 }),
      );
    expect(writes).toHaveLength(0);
    w.endBatch();
    expect(writes).toHaveLength(1);
    const frames = new FrameDecoder().push(writes[0]!);
    expect(frames.map((f) => (codecs[MsgId.GetHostResponse].decode(f.body) as GetHostResponse).seq)).toEqual(
      Array.from({ length: 100 }, (_, i) => i),
    );
  });

  it('coalesces frames sent outside a batch on the next tick', async () => {
    const { socket, writes } = fakeSocket();
    const w = new FrameWriter(socket, 1 << 20);
    w.append(1, Buffer.from([1]));
    w.append(2, Buffer.alloc(40_000));
    w.append(3, Buffer.alloc(70_000 - 8).subarray(0, 65527));
    expect(writes).toHaveLength(0);
    await new Promise((r) => process.nextTick(r));
    expect(writes).toHaveLength(1);
    expect(new FrameDecoder().push(writes[0]!).map((f) => [f.msgid, f.body.length])).toEqual([
      [1, 1],
      [2, 40_000],
      [3, 65527],
    ]);
  });

  it('reports the outbound cap and refuses oversized bodies', () => {
    const { socket } = fakeSocket();
    const w = new FrameWriter(socket, 100);
    w.beginBatch();
    expect(w.append(1, Buffer.alloc(50))).toBe(true);
    expect(w.append(1, Buffer.alloc(50))).toBe(false);
    expect(() => w.append(1, Buffer.alloc(65528))).toThrow(
      expect.objectContaining({ code: ErrorCode.MESSAGE_TOO_LARGE }),
    );
  });
});
