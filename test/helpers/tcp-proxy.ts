import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy a test controls, to take a database "down" and bring it back without touching the
 * server: listen on port 0, forward every connection to `target`.
 *
 * - pause(): destroys every proxied connection (both sides) and refuses new ones (accepted, then
 *   destroyed at once), as a database that crashed or a network that dropped would look;
 * - resume(): forwards new connections again.
 *
 * Counts connections so tests can assert that clients reconnected. close() ends everything.
 */
export class TcpProxy {
  accepted = 0;
  refused = 0;
  private readonly server: Server;
  private readonly pairs = new Set<Socket>();
  private paused = false;
  private _port = 0;

  private constructor(private readonly target: { host: string; port: number }) {
    this.server = createServer((client) => this.onConnection(client));
  }

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(target);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen({ host: '127.0.0.1', port: 0 }, () => {
        proxy.server.off('error', reject);
        resolve();
      });
    });
    const addr = proxy.server.address();
    proxy._port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    return proxy;
  }

  get port(): number {
    return this._port;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Sockets currently open (client and upstream sides). */
  get openSockets(): number {
    return this.pairs.size;
  }

  pause(): void {
    this.paused = true;
    for (const s of this.pairs) s.destroy();
    this.pairs.clear();
  }

  resume(): void {
    this.paused = false;
  }

  async close(): Promise<void> {
    this.pause();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(client: Socket): void {
    client.on('error', () => {});
    if (this.paused) {
      this.refused += 1;
      client.destroy();
      return;
    }
    this.accepted += 1;
    const upstream = connect(this.target);
    upstream.on('error', () => {});
    this.pairs.add(client);
    this.pairs.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(client);
      this.pairs.delete(upstream);
    };
    client.on('close', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
