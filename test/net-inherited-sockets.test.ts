import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { nativeSockets } from '../src/native/index.js';
import { Dispatcher, TcpServer, UdpEndpoint, type TcpConnection, type UdpPeer } from '../src/net/index.js';
import { LISTEN_FDS_ENV, listenKey } from '../src/net/inherited-sockets.js';
import { encodeFrame, encodeMessage, MsgId } from '../src/protocol/index.js';
import { waitFor } from './helpers/latch.js';
import { unusedPorts } from './helpers/ports.js';

/**
 * Issue 11: servers listen on sockets inherited from `lars up` (LARSUP_LISTEN_FDS), and the agent's
 * UDP endpoint drops malformed and oversized datagrams in the kernel (socket filter).
 */
const sockets = nativeSockets();
const suite = sockets ? describe : describe.skip;

const request = (seq: number): Buffer =>
  encodeFrame(MsgId.GetHostRequest, encodeMessage(MsgId.GetHostRequest, { seq, modid: 1, cmdid: 1 }));

suite('inherited sockets and the datagram filter (native addon)', () => {
  it('TcpServer and UdpEndpoint listen on the descriptors named in LARSUP_LISTEN_FDS', async () => {
    const [tcpPort, udpPort] = await unusedPorts(2);
    const tcpFd = sockets!.listenTcp('127.0.0.1', tcpPort!);
    const udpFd = sockets!.bindUdp('127.0.0.1', udpPort!);
    // Set before the first listen of this test file's module instance reads it.
    process.env[LISTEN_FDS_ENV] = JSON.stringify({
      [listenKey('tcp', '127.0.0.1', tcpPort!)]: tcpFd,
      [listenKey('udp', '127.0.0.1', udpPort!)]: udpFd,
    });
    onTestFinished(() => void delete process.env[LISTEN_FDS_ENV]);

    const server = new TcpServer({
      host: '127.0.0.1',
      port: tcpPort!,
      maxConnections: 10,
      maxOutboundBytes: 1 << 20,
      dispatcher: new Dispatcher<TcpConnection>().on(MsgId.GetHostRequest, (m, c) =>
        c.send(MsgId.GetHostResponse, { seq: m.seq, modid: 1, cmdid: 1, retcode: 0 }),
      ),
    });
    onTestFinished(() => server.destroy());
    expect(await server.listen()).toEqual({ host: '127.0.0.1', port: tcpPort });
    const answered = await new Promise<number>((resolve, reject) => {
      const c = connect({ host: '127.0.0.1', port: tcpPort! }, () => c.write(request(3)));
      c.once('data', (d) => {
        c.destroy();
        resolve(d.length);
      });
      c.once('error', reject);
    });
    expect(answered).toBeGreaterThan(8);

    const ep = new UdpEndpoint({
      host: '127.0.0.1',
      port: udpPort!,
      dispatcher: new Dispatcher<UdpPeer>(),
    });
    onTestFinished(() => ep.close());
    expect((await ep.bind()).port).toBe(udpPort);
    expect(ep.kernelDrops).toBe(0);
  });

  it('with a datagram filter the kernel drops what is not one frame or is too long; the rest is served', async () => {
    let answered = 0;
    const ep = new UdpEndpoint({
      host: '127.0.0.1',
      port: 0,
      datagramFilter: { maxLen: 4096 },
      dispatcher: new Dispatcher<UdpPeer>().on(MsgId.GetHostRequest, (m, peer) => {
        answered++;
        peer.reply(MsgId.GetHostResponse, { seq: m.seq, modid: 1, cmdid: 1, retcode: 0 });
      }),
    });
    onTestFinished(() => ep.close());
    const { port } = await ep.bind();
    const client = createSocket('udp4');
    onTestFinished(() => void client.close());
    const send = (b: Buffer) => new Promise<void>((r) => client.send(b, port!, '127.0.0.1', () => r()));
    await send(Buffer.alloc(60_000, 0xab)); // junk
    await send(Buffer.from([1, 2, 3])); // shorter than a header
    await send(Buffer.concat([request(1), Buffer.alloc(1)])); // a byte too many
    await send(encodeFrame(MsgId.GetHostRequest, Buffer.alloc(5_000))); // one frame, too long
    await send(request(2)); // fine
    await waitFor(() => answered === 1, 5_000, 'the good request answered');
    await waitFor(() => ep.kernelDrops === 4, 5_000, 'kernel drops counted');
    expect(ep.stats).toMatchObject({ datagramsIn: 1, malformed: 0 });
  });
});
