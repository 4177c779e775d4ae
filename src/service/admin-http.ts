import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ClosedError } from '../errors.js';

/** What `/healthz` reports. `status` drives the HTTP code: ok 200, degraded 200, failing 503. */
export interface Health {
  status: 'ok' | 'degraded' | 'failing';
  [detail: string]: unknown;
}

/** Where `/metrics` comes from: a prom-client Registry, or anything with the same two members. */
export interface MetricsSource {
  metrics(): Promise<string>;
  readonly contentType: string;
}

export type AdminRoute = (req: IncomingMessage, res: ServerResponse) => Promise<unknown> | unknown;

export interface AdminHttpOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  registry: MetricsSource;
  health: () => Health;
  /** Extra routes keyed by "METHOD /path"; a returned value is sent as JSON with status 200. */
  routes?: Record<string, AdminRoute>;
}

/**
 * The small HTTP side door every service has: `GET /healthz` (JSON), `GET /metrics` (Prometheus
 * text from the service's own registry) and service-specific admin routes such as the route
 * service's `POST /admin/poll`. Plain node:http: no framework on the services' hot processes.
 */
export class AdminHttp {
  private readonly server: Server;
  private readonly options: AdminHttpOptions;
  private closed = false;

  constructor(options: AdminHttpOptions) {
    this.options = options;
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
    // Keep-alive sockets must not hold close() for their idle timeout.
    this.server.keepAliveTimeout = 1_000;
  }

  async listen(): Promise<{ host: string; port: number }> {
    if (this.closed) throw new ClosedError('admin HTTP server is closed');
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.address();
  }

  address(): { host: string; port: number } {
    const a = this.server.address();
    if (!a || typeof a !== 'object') throw new ClosedError('admin HTTP server is not listening');
    return { host: a.address, port: a.port };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method === 'GET' && path === '/healthz') {
        const h = this.options.health();
        return send(res, h.status === 'failing' ? 503 : 200, 'application/json', JSON.stringify(h));
      }
      if (req.method === 'GET' && path === '/metrics') {
        const text = await this.options.registry.metrics();
        return send(res, 200, this.options.registry.contentType, text);
      }
      const route = this.options.routes?.[`${req.method} ${path}`];
      if (route) {
        const out = await route(req, res);
        if (!res.headersSent) send(res, 200, 'application/json', JSON.stringify(out ?? { ok: true }));
        return;
      }
      send(res, 404, 'application/json', JSON.stringify({ error: `no route ${req.method} ${path}` }));
    } catch (err) {
      if (!res.headersSent)
        send(res, 500, 'application/json', JSON.stringify({ error: (err as Error).message }));
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
