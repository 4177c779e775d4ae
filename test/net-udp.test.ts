import { createSocket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, TimeoutError } from '../src/errors.js';
import { Dispatcher, UdpClient, UdpEndpoint, type UdpPeer } from '../src/net/index.js';
import { encodeFrame, encodeMessage, HEADER_LEN, MsgId, type GetHostRequest } from '../src/protocol/index.js';
import { Latch, waitFor } from './helpers/latch.js';

const closers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c.close()));
});

function hostReply(m: GetHostRequest) {
  return {
    seq: m.seq,
    modid: m.modid,
    cmdid: m.cmdid,
    retcode: 0,
    host: { ip: 0x7f000001, port: 9000 + m.seq },
  };
}

async function startEndpoint(
  dispatcher: Dispatcher<UdpPeer>,
): Promise<{ endpoint: UdpEndpoint; port: number }> {
  const endpoint = new UdpEndpoint({ host: '127.0.0.1', port: 0, dispatcher, recvBufferSize: 1 << 20 });
  closers.push(endpoint);
  const { port } = await endpoint.bind();
  return { endpoint, port };
}

function echoEndpoint(): Promise<{ endpoint: UdpEndpoint; port: number }> {
  return startEndpoint(
    new Dispatcher<UdpPeer>().on(MsgId.GetHostRequest, (m, peer) =>
      peer.reply(MsgId.GetHostResponse, hostReply(m)),
    ),
  );
}

function newClient(opts: ConstructorParameters<typeof UdpClient>[0] = {}): UdpClient {
  const c = new UdpClient({ host: '127.0.0.1', ...opts });
  closers.push(c);
  return c;
}

const getHost = (client: UdpClient, port: number, seq: number, timeoutMs = 2000) =>
  client.request(
    port,
    MsgId.GetHostRequest,
    { seq, modid: 1, cmdid: 2 },
    { replyMsgid: MsgId.GetHostResponse, key: seq, timeoutMs },
  );

describe('UdpEndpoint + UdpClient', () => {
  it('round-trips a request; the reply goes to the datagram source', async () => {
    const { endpoint, port } = await echoEndpoint();
    const client = newClient();
    const reply = await getHost(client, port, 41);
    expect(reply).toEqual({ seq: 41, modid: 1, cmdid: 2, retcode: 0, host: { ip: 0x7f000001, port: 9041 } });
    expect(endpoint.stats).toMatchObject({ datagramsIn: 1, datagramsOut: 1 });
    expect(client.stats).toMatchObject({ requests: 1, replies: 1, unmatched: 0 });
    expect(client.address()?.port).toBeGreaterThan(0);
  });

  it('drops and counts malformed datagrams and unknown msgids, and keeps answering', async () => {
    const { endpoint, port } = await echoEndpoint();
    const raw = createSocket('udp4');
    closers.push({ close: () => new Promise<void>((r) => raw.close(() => r())) });
    const send = (b: Buffer) => new Promise<void>((r) => raw.send(b, port, '127.0.0.1', () => r()));
    const hdr = (msgid: number, len: number) => {
      const b = Buffer.alloc(HEADER_LEN);
      b.writeInt32LE(msgid, 0);
      b.writeInt32LE(len, 4);
      return b;
    };
    await send(Buffer.from([1, 2, 3])); // shorter than a header
    await send(Buffer.concat([hdr(MsgId.GetHostRequest, 10), Buffer.alloc(5)])); // size mismatch
    await send(Buffer.concat([hdr(MsgId.GetHostRequest, -3)])); // negative length
    await send(Buffer.concat([hdr(MsgId.GetHostRequest, 3), Buffer.from([0xff, 0xff, 0xff])])); // bad body
    await send(encodeFrame(777, Buffer.from([1]))); // unknown msgid
    await waitFor(() => endpoint.stats.datagramsIn === 5, 5000, 'five datagrams received');
    expect(endpoint.stats).toMatchObject({ malformed: 3, badBody: 1, unknownMsgid: 1, datagramsOut: 0 });
    const client = newClient();
    expect((await getHost(client, port, 1)).seq).toBe(1);
  });

  it('times out with a TimeoutError created at the call site (captureStacks); a late reply is ignored and counted', async () => {
    let held: [UdpPeer, GetHostRequest] | undefined;
    const got = new Latch(1, 'request held');
    const { port } = await startEndpoint(
      new Dispatcher<UdpPeer>().on(MsgId.GetHostRequest, (m, peer) => {
        held = [peer, m];
        got.countDown();
      }),
    );
    const client = newClient({ captureStacks: true });
    const err = await getHost(client, port, 5, 30).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as TimeoutError).code).toBe(ErrorCode.TIMEOUT);
    expect((err as Error).stack).toContain('net-udp.test.ts');
    expect(client.stats.timeouts).toBe(1);
    expect(client.pending).toBe(0);
    await got.wait();
    const [peer, m] = held!;
    peer.reply(MsgId.GetHostResponse, hostReply(m)); // late
    peer.reply(MsgId.GetHostResponse, hostReply({ seq: 999, modid: 0, cmdid: 0 })); // foreign
    await waitFor(() => client.stats.unmatched === 2);
    expect(client.stats.replies).toBe(0);
  });

  it('matches many requests in flight to replies arriving in another order', async () => {
    const N = 200;
    const held: [UdpPeer, GetHostRequest][] = [];
    const { port } = await startEndpoint(
      new Dispatcher<UdpPeer>().on(MsgId.GetHostRequest, (m, peer) => {
        held.push([peer, m]);
        if (held.length === N) {
          // Answer in reverse order once everything is in flight.
          for (const [p, r] of held.reverse()) p.reply(MsgId.GetHostResponse, hostReply(r));
        }
      }),
    );
    const client = newClient({ maxInFlight: N });
    const replies = await Promise.all(Array.from({ length: N }, (_, i) => getHost(client, port, i + 1)));
    expect(replies.map((r) => r.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(replies.every((r) => r.host?.port === 9000 + r.seq)).toBe(true);
    expect(client.stats).toMatchObject({ requests: N, replies: N, unmatched: 0, timeouts: 0 });
  });

  it('matches route replies by modid:cmdid and answers every waiter of that key', async () => {
    const { port } = await startEndpoint(
      new Dispatcher<UdpPeer>().on(MsgId.ApiGetRouteRequest, (m, peer) =>
        peer.reply(MsgId.ApiGetRouteResponse, {
          modid: m.modid,
          cmdid: m.cmdid,
          host: [{ ip: 1, port: m.cmdid }],
        }),
      ),
    );
    const client = newClient();
    const ask = (modid: number, cmdid: number) =>
      client.request(
        port,
        MsgId.ApiGetRouteRequest,
        { modid, cmdid },
        { replyMsgid: MsgId.ApiGetRouteResponse, key: `${modid}:${cmdid}` },
      );
    const [a, b, c] = await Promise.all([ask(1, 2), ask(1, 2), ask(1, 3)]);
    expect(a.host).toEqual([{ ip: 1, port: 2 }]);
    expect(b.host).toEqual([{ ip: 1, port: 2 }]);
    expect(c.host).toEqual([{ ip: 1, port: 3 }]);
  });

  it('bounds requests in flight with QueueFullError; close() rejects pending with ClosedError', async () => {
    const { port } = await startEndpoint(new Dispatcher<UdpPeer>().on(MsgId.GetHostRequest, () => {}));
    const client = newClient({ maxInFlight: 2 });
    const p1 = getHost(client, port, 1, 60_000);
    const p2 = getHost(client, port, 2, 60_000);
    await expect(getHost(client, port, 3)).rejects.toMatchObject({ code: ErrorCode.QUEUE_FULL });
    expect(client.stats.rejectedFull).toBe(1);
    await client.close();
    await expect(p1).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    await expect(p2).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    await expect(getHost(client, port, 4)).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    expect(() => client.send(port, MsgId.ReportRequest, { modid: 1, cmdid: 1, retcode: 0 })).toThrow(
      expect.objectContaining({ code: ErrorCode.CLOSED }),
    );
    await client.close(); // idempotent
  });

  it('send() is fire-and-forget; close() is idempotent and bind() afterwards rejects', async () => {
    const reports: number[] = [];
    const { endpoint, port } = await startEndpoint(
      new Dispatcher<UdpPeer>().on(MsgId.ReportRequest, (m) => void reports.push(m.retcode)),
    );
    const client = newClient();
    client.send(port, MsgId.ReportRequest, { modid: 1, cmdid: 2, retcode: 3, host: { ip: 1, port: 2 } });
    await waitFor(() => reports.length === 1);
    expect(reports).toEqual([3]);
    await endpoint.close();
    await endpoint.close();
    await expect(endpoint.bind()).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    const fresh = new UdpEndpoint({ host: '127.0.0.1', port: 0, dispatcher: new Dispatcher() });
    await fresh.close();
    await expect(fresh.bind()).rejects.toMatchObject({ code: ErrorCode.CLOSED });
  });

  it('encodes raw requests through the same matching path', async () => {
    const { port } = await echoEndpoint();
    const client = newClient();
    const body = encodeMessage(MsgId.GetHostRequest, { seq: 9, modid: 1, cmdid: 1 });
    const reply = await client.request<{ seq: number }>(port, MsgId.GetHostRequest, body, {
      replyMsgid: MsgId.GetHostResponse,
      key: 9,
      raw: true,
    });
    expect(reply.seq).toBe(9);
  });
});
