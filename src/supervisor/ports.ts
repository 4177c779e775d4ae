import { createSocket } from 'node:dgram';
import { createServer, isIPv6 } from 'node:net';

/**
 * Concrete ports for settings left at 0 ("any free port").
 *
 * Why the master picks them instead of letting each child bind port 0: children are node:cluster
 * workers, whose listen()/bind() calls go through the master, and cluster keys a shared handle by
 * address, port and the order of the call in the worker. Two services both binding 127.0.0.1:0
 * would be handed the SAME socket. Picking real numbers up front also keeps a service on the same
 * port across restarts and SIGHUP replacements, which the overlap of old and new workers needs.
 *
 * The probe binds port 0 and closes: another process could take the port in between; the child then
 * fails to bind and is restarted with backoff like any crash (and the next pick differs).
 */
export function freeTcpPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const a = server.address();
      const port = a && typeof a === 'object' ? a.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export function freeUdpPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    socket.unref();
    socket.once('error', reject);
    socket.bind({ port: 0, address: host, exclusive: true }, () => {
      const port = socket.address().port;
      socket.close(() => resolve(port));
    });
  });
}

export type Proto = 'tcp' | 'udp';

/**
 * Remembers the concrete port chosen for each setting left at 0, so a SIGHUP that keeps the setting
 * at 0 keeps the port, and never hands out the same port twice in one master's life.
 */
export class PortBook {
  private readonly chosen = new Map<string, number>();
  private readonly used = new Set<string>();

  /** `configured` when non-zero; otherwise the port chosen earlier for `key`, or a new free one. */
  async resolve(key: string, proto: Proto, host: string, configured: number): Promise<number> {
    if (configured !== 0) return configured;
    const known = this.chosen.get(key);
    if (known !== undefined) return known;
    const port = await this.fresh(proto, host);
    this.chosen.set(key, port);
    return port;
  }

  /** A free port not handed out before (per-worker ports such as a dns worker's admin HTTP). */
  async fresh(proto: Proto, host: string): Promise<number> {
    for (let i = 0; ; i++) {
      const port = proto === 'tcp' ? await freeTcpPort(host) : await freeUdpPort(host);
      if (!this.used.has(`${proto}:${port}`) || i >= 20) {
        this.used.add(`${proto}:${port}`);
        return port;
      }
    }
  }
}
