import { afterEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { ErrorCode } from '../src/errors.js';
import { Dispatcher, TcpClient, TcpServer, type TcpClientOptions, type Transport } from '../src/net/index.js';
import { createServer, type AddressInfo } from 'node:net';
import { decodeMessage, encodeFrame, encodeMessage, FrameDecoder, MsgId } from '../src/protocol/index.js';
import { Latch, waitFor } from './helpers/latch.js';
import { unusedPort } from './helpers/ports.js';

const servers: TcpServer[] = [];
const clients: TcpClient[] = [];

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(clients.splice(0).map((c) => c.destroy()));
  await Promise.all(servers.splice(0).map((s) => s.destroy()));
});

/** Echo server: GetHostRequest -> GetHostResponse (same seq); records the seqs it saw. */
async function startServer(port = 0): Promise<{ server: TcpServer; port: number; seen: number[] }> {
  const seen: number[] = [];
  const dispatcher = new Dispatcher<Transport>().on(MsgId.GetHostRequest, (m, t) => {
    seen.push(m.seq);
    t.send(MsgId.GetHostResponse, { seq: m.seq, modid: m.modid, cmdid: m.cmdid, retcode: 0 });
  });
  const server = new TcpServer({
    host: '127.0.0.1',
    port,
    maxConnections: 10,
    maxOutboundBytes: 1 << 20,
    dispatcher,
  });
  servers.push(server);
  const addr = await server.listen();
  return { server, port: addr.port, seen };
}

/** A port nothing listens on yet (see helpers/ports.ts). */
const freePort = unusedPort;

function newClient(
  port: number,
  opts: Partial<TcpClientOptions> = {},
): { client: TcpClient; replies: number[] } {
  const replies: number[] = [];
  const dispatcher = new Dispatcher<TcpClient>().on(MsgId.GetHostResponse, (m) => void replies.push(m.seq));
  const client = new TcpClient({
    host: '127.0.0.1',
    port,
    backoff: { initialMs: 5, maxMs: 20, jitter: 0.2 },
    maxQueuedFrames: 100,
    dispatcher,
    ...opts,
  });
  clients.push(client);
  return { client, replies };
}

const req = (seq: number) => ({ seq, modid: 1, cmdid: 2 });

describe('TcpClient', () => {
  it('connects, round-trips, and fires onConnect', async () => {
    const { port } = await startServer();
    const connected = new Latch(1, 'connect');
    const { client, replies } = newClient(port, { onConnect: connected.countDown });
    client.start();
    await connected.wait();
    expect(client.state).toBe('connected');
    client.send(MsgId.GetHostRequest, req(1));
    client.send(MsgId.GetHostRequest, req(2));
    await waitFor(() => replies.length === 2);
    expect(replies).toEqual([1, 2]);
    expect(client.stats).toMatchObject({ connects: 1, framesOut: 2, framesIn: 2, dialFailures: 0 });
  });

  it('started before the server exists, connects when it appears', async () => {
    const port = await freePort();
    const connected = new Latch(1, 'connect');
    const { client, replies } = newClient(port, { onConnect: connected.countDown });
    client.start();
    await waitFor(() => client.stats.dialFailures >= 2, 5000, 'two failed dials');
    client.send(MsgId.GetHostRequest, req(7)); // queued while disconnected
    await startServer(port);
    await connected.wait();
    await waitFor(() => replies.length === 1);
    expect(replies).toEqual([7]);
  });

  it('reconnects after a server restart on the same port; onConnect fires again', async () => {
    const first = await startServer();
    const port = first.port;
    let connects = 0;
    const disconnects: (Error | undefined)[] = [];
    const { client, replies } = newClient(port, {
      onConnect: (c) => {
        connects += 1;
        c.send(MsgId.GetHostRequest, req(1000 + connects)); // e.g. a re-subscription
      },
      onDisconnect: (_c, reason) => void disconnects.push(reason),
    });
    client.start();
    await waitFor(() => replies.length === 1);
    await first.server.close(1000);
    await waitFor(() => disconnects.length === 1, 5000, 'disconnect seen');
    await startServer(port);
    await waitFor(() => replies.length === 2, 5000, 'reply after reconnect');
    expect(replies).toEqual([1001, 1002]);
    expect(connects).toBe(2);
    expect(client.stats).toMatchObject({ connects: 2, disconnects: 1 });
  });

  it('bounds the disconnected queue, dropping the oldest, and flushes it in order on connect', async () => {
    const port = await freePort();
    const { client, replies } = newClient(port, { maxQueuedFrames: 3 });
    client.start();
    for (let seq = 1; seq <= 5; seq++) client.send(MsgId.GetHostRequest, req(seq));
    expect(client.stats).toMatchObject({ queued: 3, dropped: 2 });
    const { seen } = await startServer(port);
    await waitFor(() => replies.length === 3);
    expect(seen).toEqual([3, 4, 5]);
    expect(client.stats.queued).toBe(0);
  });

  it('keeps exactly one dial in flight and one unref()d timer across reconnects (fake timers)', async () => {
    const port = await freePort();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { client } = newClient(port, { backoff: { initialMs: 100, maxMs: 400, jitter: 0 } });
    client.start();
    expect(client.state).toBe('connecting');
    const delays = [100, 200, 400, 400];
    for (let i = 0; i < delays.length; i++) {
      await waitFor(() => client.state === 'waiting', 5000, `failure ${i + 1}`);
      expect(client.stats.dialFailures).toBe(i + 1);
      expect(vi.getTimerCount()).toBe(1); // the redial timer only: the connect timer was cleared
      vi.advanceTimersByTime(delays[i]! - 1);
      expect(client.state).toBe('waiting'); // backoff honoured: no early redial
      start(client);
      vi.advanceTimersByTime(1);
      expect(client.state).toBe('connecting');
      expect(vi.getTimerCount()).toBe(1); // the connect timeout of the single dial in flight
    }
    function start(c: TcpClient): void {
      c.start(); // idempotent: must not start a second dial
    }
  });

  it('never holds a referenced timer (connect timeout and redial timer are unref()d)', async () => {
    const port = await freePort();
    // Only the timers the client itself arms are checked (other code in this process has its own).
    const realSetTimeout = globalThis.setTimeout;
    const armed: NodeJS.Timeout[] = [];
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((
      fn: (...a: unknown[]) => void,
      ms?: number,
      ...args: unknown[]
    ) => {
      const t = realSetTimeout(() => fn(...args), ms);
      if (new Error().stack?.includes('tcp-client')) armed.push(t);
      return t;
    }) as typeof setTimeout);
    onTestFinished(() => void vi.restoreAllMocks());
    const { client } = newClient(port, { backoff: { initialMs: 60_000, maxMs: 60_000, jitter: 0 } });
    client.start();
    expect(armed.length).toBe(1); // connect timeout armed
    await waitFor(() => client.state === 'waiting');
    expect(armed.length).toBe(2); // redial timer armed
    expect(armed.map((t) => t.hasRef())).toEqual([false, false]);
  });

  it('close() flushes written frames, then ends; send afterwards throws ClosedError', async () => {
    const { port, seen } = await startServer();
    const connected = new Latch(1, 'connect');
    const { client } = newClient(port, { onConnect: connected.countDown });
    client.start();
    await connected.wait();
    for (let seq = 1; seq <= 500; seq++) client.send(MsgId.GetHostRequest, req(seq));
    const closing = client.close();
    expect(client.close()).toBe(closing);
    await closing;
    expect(client.state).toBe('closed');
    await waitFor(() => seen.length === 500);
    expect(seen[499]).toBe(500);
    expect(() => client.send(MsgId.GetHostRequest, req(1))).toThrow(
      expect.objectContaining({ code: ErrorCode.CLOSED }),
    );
    expect(() => client.start()).toThrow(expect.objectContaining({ code: ErrorCode.CLOSED }));
    await client.destroy();
  });

  it('destroy() while waiting to redial resolves at once and drops the queue', async () => {
    const port = await freePort();
    const { client } = newClient(port, { backoff: { initialMs: 60_000, maxMs: 60_000, jitter: 0 } });
    client.start();
    await waitFor(() => client.state === 'waiting');
    client.send(MsgId.GetHostRequest, req(1));
    await client.destroy();
    await client.destroy();
    await client.close();
    expect(client.state).toBe('closed');
    expect(client.stats).toMatchObject({ queued: 0, dropped: 1 });
  });

  it.each([
    ['negative', -5],
    ['too large', 65_528],
  ])('drops a connection whose server sends a %s frame length, and reconnects', async (_name, msglen) => {
    // Raw server: the first connection answers with a bad header, later ones properly.
    let conns = 0;
    const server = createServer((socket) => {
      conns += 1;
      const first = conns === 1;
      const decoder = new FrameDecoder();
      socket.on('data', (chunk) => {
        for (const f of decoder.push(chunk)) {
          const m = decodeMessage(MsgId.GetHostRequest, f.body);
          if (first) {
            const bad = Buffer.alloc(8);
            bad.writeInt32LE(MsgId.GetHostResponse, 0);
            bad.writeInt32LE(msglen, 4);
            socket.write(bad);
          } else {
            const body = encodeMessage(MsgId.GetHostResponse, { seq: m.seq, modid: 0, cmdid: 0, retcode: 0 });
            socket.write(encodeFrame(MsgId.GetHostResponse, body));
          }
        }
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
    const { client, replies } = newClient((server.address() as AddressInfo).port, {
      onConnect: (c) => c.send(MsgId.GetHostRequest, req(c.stats.connects)),
    });
    client.start();
    await waitFor(() => replies.length === 1, 5000, 'reply on the second connection');
    expect(replies).toEqual([2]);
    expect(client.stats).toMatchObject({ protocolErrors: 1, connects: 2, disconnects: 1 });
  });

  it('reconnects after the server sends an undecodable body', async () => {
    let conns = 0;
    const dispatcher = new Dispatcher<Transport>().on(MsgId.GetHostRequest, (m, t) => {
      // First connection: answer with garbage; later ones: a proper reply.
      if (conns === 1) t.sendRaw(MsgId.GetHostResponse, Buffer.from([0xff, 0xff, 0xff]));
      else t.send(MsgId.GetHostResponse, { seq: m.seq, modid: 0, cmdid: 0, retcode: 0 });
    });
    const server = new TcpServer({
      host: '127.0.0.1',
      port: 0,
      maxConnections: 10,
      maxOutboundBytes: 1 << 20,
      dispatcher,
      onConnectionStart: () => void (conns += 1),
    });
    servers.push(server);
    const { port } = await server.listen();
    const { client, replies } = newClient(port, {
      onConnect: (c) => c.send(MsgId.GetHostRequest, req(c.stats.connects)),
    });
    client.start();
    await waitFor(() => replies.length === 1, 5000, 'reply on the second connection');
    expect(replies).toEqual([2]);
    expect(client.stats).toMatchObject({ protocolErrors: 1, connects: 2, disconnects: 1 });
  });
});
