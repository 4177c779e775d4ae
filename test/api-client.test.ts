import { createSocket, type Socket } from 'node:dgram';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LarsClient } from '../src/api/index.js';
import { ErrorCode, type LarsError } from '../src/errors.js';
import {
  encodeFrame,
  encodeMessage,
  ipToWire,
  MsgId,
  parseDatagram,
  decodeMessage,
  RetCode,
  type ReportRequest,
} from '../src/protocol/index.js';
import { Latch } from './helpers/latch.js';
import { unusedPort } from './helpers/ports.js';

/**
 * A scripted agent on a real UDP socket: each GetHostRequest is answered by `answer` (or not at
 * all), so the SDK's matching, timeouts and port choice are tested against real datagrams.
 */
async function scriptedAgent(
  answer: (
    req: { seq: number; modid: number; cmdid: number },
    reply: (delayMs?: number, seq?: number) => void,
  ) => void,
): Promise<{ port: number; socket: Socket; received: number[]; reports: ReportRequest[] }> {
  const socket = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  const received: number[] = [];
  const reports: ReportRequest[] = [];
  // Delayed replies must not outlive the socket: a send after close() throws outside the test.
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;
  socket.on('message', (msg, rinfo) => {
    const frame = parseDatagram(msg);
    if (frame.msgid === MsgId.ReportRequest) reports.push(decodeMessage(MsgId.ReportRequest, frame.body));
    if (frame.msgid !== MsgId.GetHostRequest) {
      received.push(frame.msgid);
      return;
    }
    const req = decodeMessage(MsgId.GetHostRequest, frame.body);
    received.push(frame.msgid);
    answer(req, (delayMs = 0, seq = req.seq) => {
      const body = encodeMessage(MsgId.GetHostResponse, {
        seq,
        modid: req.modid,
        cmdid: req.cmdid,
        retcode: RetCode.SUCC,
        host: { ip: ipToWire('10.0.0.1'), port: 1000 + req.modid },
      });
      const t = setTimeout(() => {
        timers.delete(t);
        if (!closed) socket.send(encodeFrame(MsgId.GetHostResponse, body), rinfo.port, rinfo.address);
      }, delayMs);
      timers.add(t);
    });
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  onTestFinished(() => {
    closed = true;
    for (const t of timers) clearTimeout(t);
    socket.close();
  });
  return { port: socket.address().port, socket, received, reports };
}

describe('LarsClient', () => {
  it('sends each route to port 8888 + (modid + cmdid) % 3 like the original client', () => {
    const c = new LarsClient();
    onTestFinished(() => c.close());
    expect(c.portFor(1, 1)).toBe(8890);
    expect(c.portFor(1, 2)).toBe(8888);
    expect(c.portFor(2, 2)).toBe(8889);
    expect(c.portFor(-1, 0)).toBe(8890);
  });

  it('keeps many requests in flight and matches replies by seq, even out of order', async () => {
    const pending: Array<() => void> = [];
    const agent = await scriptedAgent((_req, reply) => pending.push(() => reply()));
    const client = new LarsClient({ host: '127.0.0.1', ports: [agent.port], timeoutMs: 10_000 });
    onTestFinished(() => client.close());
    const n = 300;
    const all = Promise.all(Array.from({ length: n }, (_, i) => client.getHost(i, 0)));
    const latch = new Latch(1);
    const check = setInterval(() => pending.length === n && latch.countDown(), 5);
    await latch.wait();
    clearInterval(check);
    for (const send of pending.reverse()) send();
    const hosts = await all;
    expect(hosts.map((h) => h.port)).toEqual(Array.from({ length: n }, (_, i) => 1000 + i));
  });

  it('times out with LARS_ERR_TIMEOUT and ignores the late reply', async () => {
    const agent = await scriptedAgent((_req, reply) => reply(150));
    const client = new LarsClient({ host: '127.0.0.1', ports: [agent.port], timeoutMs: 50 });
    onTestFinished(() => client.close());
    const err = (await client.getHost(1, 1).catch((e: unknown) => e)) as LarsError;
    expect(err.code).toBe(ErrorCode.TIMEOUT);
    expect(err.message).toContain(`127.0.0.1:${agent.port} within 50 ms`);
    // With captureStacks the error is created when the request starts: its stack names the caller.
    const traced = new LarsClient({
      host: '127.0.0.1',
      ports: [agent.port],
      timeoutMs: 50,
      captureStacks: true,
    });
    onTestFinished(() => traced.close());
    const err2 = (await traced.getHost(1, 1).catch((e: unknown) => e)) as LarsError;
    expect(err2.code).toBe(ErrorCode.TIMEOUT);
    expect(err2.stack).toContain('api-client.test.ts');
    const late = new Latch(1);
    const t = setInterval(
      () =>
        (client as unknown as { udp: { stats: { unmatched: number } } }).udp.stats.unmatched > 0 &&
        late.countDown(),
      5,
    );
    await late.wait();
    clearInterval(t);
  });

  it('fails fast with LARS_ERR_NOT_CONNECTED when nothing listens on the agent port', async () => {
    const port = await unusedPort();
    const client = new LarsClient({ host: '127.0.0.1', ports: [port], timeoutMs: 30_000 });
    onTestFinished(() => client.close());
    await expect(client.getHost(1, 1)).rejects.toMatchObject({ code: ErrorCode.NOT_CONNECTED });
  });

  it('ignores foreign replies (wrong seq) and keeps waiting for its own', async () => {
    const agent = await scriptedAgent((req, reply) => {
      reply(0, req.seq + 1000);
      reply(20);
    });
    const client = new LarsClient({ host: '127.0.0.1', ports: [agent.port], timeoutMs: 10_000 });
    onTestFinished(() => client.close());
    expect(await client.getHost(7, 1)).toEqual({ ip: '10.0.0.1', port: 1007 });
  });

  it('call() reports success and failure with the host, retcode and duration', async () => {
    const agent = await scriptedAgent((_req, reply) => reply());
    const client = new LarsClient({ host: '127.0.0.1', ports: [agent.port] });
    onTestFinished(() => client.close());
    const work = (ms: number) => new Promise((r) => setTimeout(r, ms));
    expect(await client.call(1, 1, async (h) => (await work(60), `${h.ip}:${h.port}`))).toBe('10.0.0.1:1001');
    await expect(
      client.call(1, 1, async () => {
        await work(120);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const latch = new Latch(1);
    const t = setInterval(() => agent.reports.length === 2 && latch.countDown(), 5);
    await latch.wait();
    clearInterval(t);
    const [ok, failed] = agent.reports as [ReportRequest, ReportRequest];
    const host = { ip: ipToWire('10.0.0.1'), port: 1001 };
    expect(ok).toMatchObject({ modid: 1, cmdid: 1, host, retcode: 0 });
    expect(failed).toMatchObject({ modid: 1, cmdid: 1, host });
    expect(failed.retcode).not.toBe(0);
    // Timers never fire early by more than a rounding millisecond: the durations are the calls'.
    expect(ok.timecost_ms).toBeGreaterThanOrEqual(59);
    expect(failed.timecost_ms).toBeGreaterThanOrEqual(119);
  });

  it('rejects bad arguments and calls after close with typed errors', async () => {
    expect(() => new LarsClient({ ports: [0] })).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
    const client = new LarsClient({ ports: [1] });
    await expect(client.getHost(1.5, 1)).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    expect(() => client.report(1, 1, '300.1.1.1', 80, 0)).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
    // Issue 16: a registration writes route rows, whose columns are unsigned: ids 0..2147483647.
    await expect(client.register({ modid: -1, cmdid: 1, port: 80 })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: 'modid must be an integer from 0 to 2147483647, got -1',
    });
    await client.close();
    await expect(client.getHost(1, 1)).rejects.toMatchObject({ code: ErrorCode.CLOSED });
  });
});
