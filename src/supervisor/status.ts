import { request } from 'node:http';
import type { Endpoint, ServiceName } from './services.js';
import type { WorkerState } from './worker.js';

/** What `lars status --json` prints and DIR/supervisor.json holds. */
export interface StatusSnapshot {
  master: {
    pid: number;
    state: MasterPhase;
    startedAt: string;
    updatedAt: string;
    dataDir: string;
    database: string;
    configFile: string | null;
    controlSocket: string;
    dnsHandoff: boolean;
    /** Set once the master decided how it will exit. */
    exitCode?: number;
    lastReload?: { at: string; ok: boolean; error?: string };
  };
  services: ServiceStatus[];
}

export type MasterPhase = 'starting' | 'running' | 'reloading' | 'stopping' | 'stopped';

export type ServiceState =
  'starting' | 'running' | 'degraded' | 'failed' | 'stopping' | 'stopped' | 'disabled' | 'unavailable';

export interface ServiceStatus {
  name: ServiceName;
  state: ServiceState;
  /** Configured worker count, and how many are serving. */
  workers: { wanted: number; running: number };
  /** Restarts after crashes since the master started. */
  restarts: number;
  /** Crashes counted in the current restart window. */
  recentCrashes: number;
  /** Set when the supervisor gave up restarting it. */
  gaveUp?: { at: string; crashes: number; windowS: number; lastExit: string; message: string };
  listen: Endpoint[];
  processes: WorkerStatus[];
}

export interface WorkerStatus {
  pid: number;
  role: 'worker';
  slot: number;
  state: WorkerState;
  ports: Record<string, number | number[]>;
  startedAt: string;
  health?: HealthResult;
}

export interface HealthResult {
  /** `status` of the service's /healthz, or `unreachable`. */
  status: 'ok' | 'degraded' | 'failing' | 'unreachable';
  detail?: Record<string, unknown>;
  error?: string;
}

/** GETs a /healthz URL (its own socket, no keep-alive pool in the master). Never rejects. */
export function fetchHealth(url: string, timeoutMs: number): Promise<HealthResult> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 256 * 1024) body += c;
      });
      res.on('end', () => {
        try {
          const detail = JSON.parse(body) as Record<string, unknown>;
          const s = detail.status;
          const status =
            s === 'ok' || s === 'degraded' || s === 'failing' ? s : res.statusCode === 200 ? 'ok' : 'failing';
          resolve({ status, detail });
        } catch {
          resolve({ status: res.statusCode === 200 ? 'ok' : 'failing' });
        }
      });
      res.on('error', (err) => resolve({ status: 'unreachable', error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ status: 'unreachable', error: err.message }));
    req.end();
  });
}

function portsText(ports: Record<string, number | number[]>): string {
  return Object.entries(ports)
    .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(',') : v}`)
    .join(', ');
}

/** A worker's health; the bus adds its bridge to NATS when it has one (`ok, bridge: disconnected`). */
function healthText(h: { status: string; detail?: Record<string, unknown> } | undefined): string {
  if (!h) return '-';
  const bridge = h.detail?.bridge as { state?: string } | undefined;
  return bridge?.state ? `${h.status}, bridge: ${bridge.state}` : h.status;
}

/** The human table of `lars status`. */
export function formatStatus(s: StatusSnapshot, live: boolean): string {
  const rows: string[][] = [['SERVICE', 'PID', 'ROLE', 'STATE', 'RESTARTS', 'PORTS', 'HEALTH']];
  const m = s.master;
  rows.push([
    'master',
    String(m.pid),
    'master',
    m.state,
    '-',
    m.dnsHandoff ? 'dns handoff' : '-',
    live ? 'ok' : 'not running',
  ]);
  for (const svc of s.services) {
    const unix = svc.listen.filter((e) => e.proto === 'unix').map((e) => `unix ${e.host}`);
    if (svc.processes.length === 0) {
      const listen = svc.listen
        .map((e) => (e.proto === 'unix' ? `unix ${e.host}` : `${e.proto} ${e.port}`))
        .join(', ');
      rows.push([
        svc.name,
        '-',
        '-',
        svc.state,
        String(svc.restarts),
        svc.state === 'unavailable' || svc.state === 'disabled' ? '-' : listen,
        '-',
      ]);
      continue;
    }
    for (const p of svc.processes) {
      rows.push([
        svc.name,
        String(p.pid),
        p.role,
        svc.state === 'failed' ? `${p.state} (service failed)` : p.state,
        String(svc.restarts),
        [...unix, portsText(p.ports)].filter(Boolean).join(', '),
        healthText(p.health),
      ]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const lines = rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
  const notes: string[] = [];
  for (const svc of s.services) if (svc.gaveUp) notes.push(`${svc.name}: ${svc.gaveUp.message}`);
  if (m.lastReload && !m.lastReload.ok)
    notes.push(`last reload (${m.lastReload.at}) failed: ${m.lastReload.error}`);
  return [...lines, ...notes].join('\n');
}
