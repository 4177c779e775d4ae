import { createSocket } from 'node:dgram';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ClosedError } from '../src/errors.js';
import { nativeUdp } from '../src/native/index.js';
import { Dispatcher, UdpEndpoint, type UdpPeer } from '../src/net/index.js';
import { decodeMessage, encodeFrame, encodeMessage, MsgId } from '../src/protocol/index.js';
import { waitFor } from './helpers/latch.js';

const frame = (seq: number) =>
  encodeFrame(MsgId.GetHostRequest, encodeMessage(MsgId.GetHostRequest, { seq, modid: 1, cmdid: 2 }));

async function client() {
  const socket = createSocket('udp4');
  onTestFinished(() => void socket.close());
  const got: Buffer[] = [];
  socket.on('message', (m) => got.push(m));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  return { socket, got };
}

describe.skipIf(!nativeUdp())('UdpEndpoint batch receive (issue 17, native addon)', () => {
  it('serves the generic path and a fast path from one batch-read socket, bursts included', async () => {
    const dispatcher = new Dispatcher<UdpPeer>().on(MsgId.GetHostRequest, (m, peer) =>
      peer.reply(MsgId.GetHostResponse, { seq: m.seq, modid: m.modid, cmdid: m.cmdid, retcode: 3 }),
    );
    let fast = 0;
    const endpoint = new UdpEndpoint({
      host: '127.0.0.1',
      port: 0,
      dispatcher,
      batchReceive: true,
      datagramFilter: { maxLen: 4096 },
      // Odd sequence numbers are answered by the fast path (echoing the request), even ones generically.
      fastPath: (d, rinfo, ep) => {
        if (d.length < 10 || (d[9]! & 1) === 0) return false;
        fast++;
        ep.replyFrame(rinfo, Buffer.from(d), d.length);
        return true;
      },
    });
    onTestFinished(() => endpoint.close());
    const { port } = await endpoint.bind();
    expect(endpoint.batched).toBe(true);
    const c = await client();
    // More than one recvmmsg batch (64) in one burst.
    for (let seq = 1; seq <= 100; seq++) c.socket.send(frame(seq), port, '127.0.0.1');
    await waitFor(() => c.got.length === 100, 5_000, '100 answers');
    const seqs = c.got.map((b) =>
      b.readInt32LE(0) === MsgId.GetHostRequest
        ? decodeMessage(MsgId.GetHostRequest, b.subarray(8)).seq
        : decodeMessage(MsgId.GetHostResponse, b.subarray(8)).seq,
    );
    expect(seqs.sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(c.got.filter((b) => b.readInt32LE(0) === MsgId.GetHostResponse)).toHaveLength(50);
    expect(fast).toBe(50);
    expect(endpoint.stats).toMatchObject({ datagramsIn: 100, datagramsOut: 100, sendErrors: 0 });
  });

  it('close() releases the port and later sends throw ClosedError', async () => {
    const endpoint = new UdpEndpoint({
      host: '127.0.0.1',
      port: 0,
      dispatcher: new Dispatcher<UdpPeer>(),
      batchReceive: true,
    });
    const { port } = await endpoint.bind();
    expect(endpoint.batched).toBe(true);
    await endpoint.close();
    await endpoint.close();
    expect(() => endpoint.sendTo(port, '127.0.0.1', MsgId.GetHostRequest, new Uint8Array())).toThrow(
      ClosedError,
    );
    const again = new UdpEndpoint({
      host: '127.0.0.1',
      port,
      dispatcher: new Dispatcher<UdpPeer>(),
      batchReceive: true,
    });
    onTestFinished(() => again.close());
    expect((await again.bind()).port).toBe(port);
  });
});
