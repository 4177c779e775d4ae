import { afterEach, describe, expect, it } from 'vitest';
import { Dispatcher, TcpClient, TcpServer, type TcpConnection } from '../src/net/index.js';
import { MsgId } from '../src/protocol/index.js';
import { waitFor } from './helpers/latch.js';

/**
 * TcpClient `onDemand` (issue 11): servers cut connections that complete no frame within their
 * handshake timeout, so a link with nothing to say connects only when it has something to send.
 */

const servers: TcpServer[] = [];
const clients: TcpClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.destroy()));
  await Promise.all(servers.splice(0).map((s) => s.destroy()));
});

async function startServer(): Promise<{ server: TcpServer; port: number; seen: number[] }> {
  const seen: number[] = [];
  const server = new TcpServer({
    host: '127.0.0.1',
    port: 0,
    maxConnections: 10,
    maxOutboundBytes: 1 << 20,
    dispatcher: new Dispatcher<TcpConnection>().on(MsgId.GetHostRequest, (m) => void seen.push(m.seq)),
  });
  servers.push(server);
  const { port } = await server.listen();
  return { server, port, seen };
}

function onDemandClient(port: number, stayConnected: () => boolean): TcpClient {
  const client = new TcpClient({
    host: '127.0.0.1',
    port,
    backoff: { initialMs: 5, maxMs: 20, jitter: 0.2 },
    dispatcher: new Dispatcher<TcpClient>(),
    onDemand: { stayConnected },
  });
  clients.push(client);
  return client;
}

const req = (seq: number) => ({ seq, modid: 1, cmdid: 2 });

describe('TcpClient on demand', () => {
  it('dials on the first send, goes idle when the server ends the connection, dials again on the next send', async () => {
    const { server, port, seen } = await startServer();
    const client = onDemandClient(port, () => false);
    expect(client.state).toBe('idle');
    expect(server.stats.connectionsAccepted).toBe(0);
    client.send(MsgId.GetHostRequest, req(1));
    await waitFor(() => seen.length === 1, 5_000, 'first frame');
    expect(client.state).toBe('connected');
    // The server ends the connection (as a handshake or drain would): nothing queued, nothing to stay for.
    for (const c of server.connections()) c.close();
    await waitFor(() => client.state === 'idle', 5_000, 'client idle');
    expect(client.stats.disconnects).toBe(1);
    expect(server.stats.connectionsAccepted).toBe(1);
    client.send(MsgId.GetHostRequest, req(2));
    await waitFor(() => seen.length === 2, 5_000, 'second frame on a new connection');
    expect(server.stats.connectionsAccepted).toBe(2);
  });

  it('redials after a disconnect while stayConnected() says so', async () => {
    const { server, port, seen } = await startServer();
    const client = onDemandClient(port, () => true);
    client.send(MsgId.GetHostRequest, req(1));
    await waitFor(() => seen.length === 1, 5_000, 'first frame');
    for (const c of server.connections()) c.close();
    await waitFor(() => client.stats.connects === 2, 5_000, 'redialled');
    expect(client.state).toBe('connected');
  });

  it('close() while the dial is in flight delivers what was queued, then ends', async () => {
    const { port, seen } = await startServer();
    const client = onDemandClient(port, () => false);
    client.send(MsgId.GetHostRequest, req(7));
    client.send(MsgId.GetHostRequest, req(8));
    expect(client.state).toBe('connecting');
    await client.close();
    await waitFor(() => seen.length === 2, 5_000, 'queued frames delivered');
    expect(seen).toEqual([7, 8]);
    expect(client.state).toBe('closed');
    expect(client.stats).toMatchObject({ framesOut: 2, dropped: 0 });
  });
});
