import { Counter, Gauge, type Registry } from 'prom-client';
import type { TcpServerStats } from '../net/tcp-server.js';

/**
 * Metrics read from the services' own counters at scrape time (prom-client `collect`), so the hot
 * paths only bump plain numbers. One helper for every service's registry.
 */
export function liveMetrics(registry: Registry): {
  gauge(name: string, help: string, read: () => number): Gauge;
  counter(name: string, help: string, read: () => number): Counter;
} {
  return {
    gauge: (name, help, read) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      }),
    counter: (name, help, read) =>
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(read());
        },
      }),
  };
}

/**
 * The TCP server counters every service exports, named `<prefix>_protocol_errors_total`,
 * `<prefix>_unknown_msgid_total`, `<prefix>_connections_refused_total`,
 * `<prefix>_slow_peer_cuts_total`, and every refused or cut connection by reason in
 * `<prefix>_connections_cut_total{reason}` (issue 11).
 */
export function tcpServerMetrics(registry: Registry, prefix: string, stats: TcpServerStats): void {
  const { counter } = liveMetrics(registry);
  counter(
    `${prefix}_protocol_errors_total`,
    'connections closed for protocol violations',
    () => stats.protocolErrors,
  );
  counter(`${prefix}_unknown_msgid_total`, 'frames skipped for an unknown msgid', () => stats.unknownMsgid);
  counter(
    `${prefix}_connections_refused_total`,
    'connections refused at maxConn',
    () => stats.connectionsRefused,
  );
  counter(
    `${prefix}_slow_peer_cuts_total`,
    'connections cut because their outbound queue overflowed',
    () => stats.slowPeerCuts,
  );
  const reasons: Record<string, () => number> = {
    handshake_timeout: () => stats.handshakeTimeouts,
    header_timeout: () => stats.headerTimeouts,
    max_conn_per_ip: () => stats.perIpRefused,
    max_conn: () => stats.connectionsRefused,
    slow_peer: () => stats.slowPeerCuts,
    protocol_error: () => stats.protocolErrors,
    idle_timeout: () => stats.idleTimeouts,
  };
  new Counter({
    name: `${prefix}_connections_cut_total`,
    help: 'connections refused or cut by the server, by reason',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, read] of Object.entries(reasons)) this.inc({ reason }, read());
    },
  });
}
