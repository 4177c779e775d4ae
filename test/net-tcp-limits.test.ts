import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, type LarsError } from '../src/errors.js';
import type { Logger } from '../src/log/logger.js';
import { Dispatcher, TcpServer, type TcpConnection, type TcpServerOptions } from '../src/net/index.js';
import { encodeFrame, encodeMessage, HEADER_LEN, MsgId } from '../src/protocol/index.js';
import { tcpServerMetrics } from '../src/service/metrics.js';
import { Latch, waitFor } from './helpers/latch.js';

/**
 * Connection limits of the networking core (issue 11): handshake and header timeouts (with fake
 * timers), connections per address, cuts counted by reason and logged at a bounded rate.
 */

interface LogLine {
  level: string;
  msg: string;
  obj: Record<string, unknown>;
}
function memoryLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, msg: msg ?? '', obj: obj as Record<string, unknown> });
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

const servers: TcpServer[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  vi.useRealTimers();
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.destroy()));
});

async function startServer(
  opts: Partial<TcpServerOptions<Record<string, unknown>>> = {},
): Promise<{ server: TcpServer; port: number; conns: TcpConnection[] }> {
  const conns: TcpConnection[] = [];
  const server = new TcpServer({
    host: '127.0.0.1',
    port: 0,
    maxConnections: 100,
    maxOutboundBytes: 1024 * 1024,
    dispatcher: new Dispatcher<TcpConnection>().on(MsgId.GetHostRequest, (m, c) =>
      c.send(MsgId.GetHostResponse, { seq: m.seq, modid: m.modid, cmdid: m.cmdid, retcode: 0 }),
    ),
    onConnectionStart: (c) => conns.push(c),
    ...opts,
  });
  servers.push(server);
  const { port } = await server.listen();
  return { server, port, conns };
}

/** A raw client; resolves once connected. `closed` resolves when the server ends it. */
function rawClient(port: number, localAddress?: string): Promise<{ socket: Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
    sockets.push(socket);
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', () => {});
    socket.once('connect', () => resolve({ socket, closed }));
    socket.once('error', reject);
  });
}

const request = (seq: number): Buffer =>
  encodeFrame(MsgId.GetHostRequest, encodeMessage(MsgId.GetHostRequest, { seq, modid: 1, cmdid: 2 }));

function header(msgid: number, msglen: number): Buffer {
  const b = Buffer.alloc(HEADER_LEN);
  b.writeInt32LE(msgid, 0);
  b.writeInt32LE(msglen, 4);
  return b;
}

describe('TcpServer connection limits', () => {
  it('cuts a connection that completes no frame within the handshake timeout; a quiet one that did stays', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const reasons: Array<Error | undefined> = [];
    const closed = new Latch(1, 'silent connection cut');
    const { server, port } = await startServer({
      handshakeTimeoutMs: 30_000,
      headerTimeoutMs: 10_000,
      onConnectionClose: (_c: unknown, r: Error | undefined) => {
        reasons.push(r);
        closed.countDown();
      },
    });
    const silent = await rawClient(port);
    const talker = await rawClient(port);
    const answered = new Latch(1, 'answer');
    talker.socket.once('data', () => answered.countDown());
    talker.socket.write(request(1));
    await answered.wait();
    await waitFor(() => server.stats.connectionsOpen === 2);

    vi.advanceTimersByTime(29_999);
    expect(server.stats.handshakeTimeouts).toBe(0);
    vi.advanceTimersByTime(1);
    expect(server.stats.handshakeTimeouts).toBe(1);
    await closed.wait();
    await silent.closed;
    expect((reasons[0] as LarsError).code).toBe(ErrorCode.TIMEOUT);
    expect(reasons[0]!.message).toMatch(/handshake_timeout 30000 ms/);

    // The talker completed a frame: hours of silence do not cut it.
    vi.advanceTimersByTime(3 * 3600_000);
    expect(server.stats.connectionsOpen).toBe(1);
    expect(server.stats.handshakeTimeouts + server.stats.headerTimeouts).toBe(1);
  });

  it('cuts a connection whose started frame does not complete within the header timeout and releases its buffer', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { server, port, conns } = await startServer({ handshakeTimeoutMs: 0, headerTimeoutMs: 10_000 });
    const c = await rawClient(port);
    // A header announcing 60,000 bytes, then 3,000 of them, then nothing.
    c.socket.write(Buffer.concat([header(MsgId.GetHostRequest, 60_000), Buffer.alloc(3_000, 1)]));
    await waitFor(() => (conns[0]?.bufferedInbound ?? 0) === 3_008, 5_000, 'partial frame buffered');
    const conn = conns[0]!;
    vi.advanceTimersByTime(9_999);
    expect(server.stats.headerTimeouts).toBe(0);
    vi.advanceTimersByTime(1);
    expect(server.stats.headerTimeouts).toBe(1);
    expect(conn.bufferedInbound).toBe(0);
    await c.closed;
  });

  it('a header alone starts the clock: a peer that announces a body and sends none is cut', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { server, port, conns } = await startServer({ handshakeTimeoutMs: 0, headerTimeoutMs: 10_000 });
    const c = await rawClient(port);
    c.socket.write(header(MsgId.GetHostRequest, 4_000));
    await waitFor(() => (conns[0]?.bufferedInbound ?? 0) === 8, 5_000, 'header held');
    vi.advanceTimersByTime(10_000);
    expect(server.stats.headerTimeouts).toBe(1);
    await c.closed;
  });

  it('restarts the header clock for every frame: a steady stream split mid-frame is never cut', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { server, port } = await startServer({ handshakeTimeoutMs: 0, headerTimeoutMs: 1_000 });
    const c = await rawClient(port);
    let answers = 0;
    c.socket.on('data', () => answers++);
    // Every write completes the previous frame and starts the next: a partial frame is always held.
    const frames = Array.from({ length: 12 }, (_, i) => request(i + 1));
    c.socket.write(frames[0]!.subarray(0, 5));
    for (let i = 0; i < frames.length; i++) {
      vi.advanceTimersByTime(600);
      const rest = frames[i]!.subarray(5);
      const next = i + 1 < frames.length ? frames[i + 1]!.subarray(0, 5) : Buffer.alloc(0);
      const before = server.stats.framesIn;
      c.socket.write(Buffer.concat([rest, next]));
      await waitFor(() => server.stats.framesIn === before + 1, 5_000, `frame ${i + 1}`);
    }
    expect(server.stats.headerTimeouts).toBe(0);
    expect(server.stats.connectionsOpen).toBe(1);
    await waitFor(() => answers > 0, 5_000, 'answers');
  });

  it('refuses connections beyond max_conn_per_ip from one address, counts and logs them at a bounded rate', async () => {
    const { logger, lines } = memoryLogger();
    const { server, port } = await startServer({ maxConnectionsPerIp: 2, logger });
    const a = await rawClient(port, '127.0.0.1');
    await rawClient(port, '127.0.0.1');
    await waitFor(() => server.stats.connectionsOpen === 2);
    const refused = await Promise.all([1, 2, 3].map(() => rawClient(port, '127.0.0.1')));
    await Promise.all(refused.map((r) => r.closed));
    expect(server.stats.perIpRefused).toBe(3);
    // Another address still gets in.
    await rawClient(port, '127.0.0.2');
    await waitFor(() => server.stats.connectionsOpen === 3);
    // A slot freed by a close is available again.
    a.socket.destroy();
    await waitFor(() => server.stats.connectionsOpen === 2);
    await rawClient(port, '127.0.0.1');
    await waitFor(() => server.stats.connectionsOpen === 3);
    expect(server.stats.perIpRefused).toBe(3);
    const warned = lines.filter((l) => l.msg.includes('max_conn_per_ip'));
    expect(warned.length).toBe(1);
    expect(warned[0]!.obj).toMatchObject({ remote: '127.0.0.1', limit: 2 });
  });

  it('logs protocol violations of many connections at a bounded rate, counts each, exports cuts by reason', async () => {
    const { logger, lines } = memoryLogger();
    const { server, port } = await startServer({ logger });
    const bad = await Promise.all(Array.from({ length: 30 }, () => rawClient(port)));
    for (const b of bad) b.socket.write(header(MsgId.GetHostRequest, -5));
    await Promise.all(bad.map((b) => b.closed));
    expect(server.stats.protocolErrors).toBe(30);
    expect(lines.filter((l) => l.level === 'warn' && l.msg.includes('protocol violation')).length).toBe(1);

    const registry = new Registry();
    tcpServerMetrics(registry, 'lars_test', server.stats);
    const text = await registry.metrics();
    expect(text).toContain('lars_test_connections_cut_total{reason="protocol_error"} 30');
    expect(text).toContain('lars_test_connections_cut_total{reason="handshake_timeout"} 0');
    expect(text).toContain('lars_test_connections_cut_total{reason="max_conn_per_ip"} 0');
  });
});
