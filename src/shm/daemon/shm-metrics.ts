import { Counter, Gauge, Registry } from 'prom-client';
import { liveMetrics, tcpServerMetrics } from '../../service/metrics.js';
import type { TcpServerStats } from '../../net/tcp-server.js';
import { formatSize } from '../size-classes.js';
import type { ShmMode } from '../reports.js';
import type { ShmProtocolStats } from './shm-protocol.js';
import type { ShmCore } from './shm-core.js';

/** Processes listed by lars_shm_holdings_bytes (largest first). */
export const TOP_HOLDERS_METRIC = 20;

function labelled(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  kind: 'gauge' | 'counter',
  read: () => [Record<string, string>, number][],
): void {
  if (kind === 'counter') {
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, v] of read()) if (v > 0) this.inc(labels, v);
      },
    });
    return;
  }
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, v] of read()) this.set(labels, v);
    },
  });
}

/**
 * The daemon's Prometheus metrics (issue 12): which mode runs, per-class free/used bytes,
 * allocations and failures, batches in flight and expired, bytes reclaimed by reason, holdings per
 * process, requests and errors by code, and the socket server's counters. Read at scrape time.
 */
export function shmMetrics(
  core: ShmCore,
  protocol: ShmProtocolStats,
  server: TcpServerStats,
  mode: ShmMode,
): Registry {
  const registry = new Registry();
  const { gauge, counter } = liveMetrics(registry);
  const c = core.counters;
  labelled(
    registry,
    'lars_shm_mode',
    'pool access mode of the daemon (1 for the mode in use)',
    ['mode'],
    'gauge',
    () => [
      [{ mode: 'addon' }, mode === 'addon' ? 1 : 0],
      [{ mode: 'file' }, mode === 'file' ? 1 : 0],
    ],
  );
  gauge(
    'lars_shm_generation',
    'pool generation (changes with every daemon start)',
    () => core.options.generation,
  );
  labelled(
    registry,
    'lars_shm_pool_bytes',
    'pool bytes per size class and state',
    ['class', 'state'],
    'gauge',
    () =>
      core.layout.classes.flatMap((cls) => {
        const free = core.blocks.freeCount(cls.index);
        const label = formatSize(cls.size);
        return [
          [{ class: label, state: 'free' }, free * cls.size],
          [{ class: label, state: 'used' }, (cls.count - free) * cls.size],
        ] as [Record<string, string>, number][];
      }),
  );
  counter('lars_shm_alloc_total', 'blocks allocated', () => c.allocs);
  labelled(
    registry,
    'lars_shm_alloc_failed_total',
    'allocations refused, by reason',
    ['reason'],
    'counter',
    () => Object.entries(c.allocFailed).map(([reason, v]) => [{ reason }, v]),
  );
  gauge('lars_shm_batches_inflight', 'batches sent and not yet received', () => core.batches.size);
  counter('lars_shm_batches_sent_total', 'batches sent', () => c.batchesSent);
  counter('lars_shm_batches_received_total', 'batches received', () => c.batchesReceived);
  counter('lars_shm_batches_expired_total', 'batches released at their ttl', () => c.batchesExpired);
  counter(
    'lars_shm_batches_dropped_total',
    'batches released because their addressee went away',
    () => c.batchesDropped,
  );
  labelled(
    registry,
    'lars_shm_reclaimed_bytes_total',
    'bytes of blocks freed other than by free, by reason',
    ['reason'],
    'counter',
    () => Object.entries(c.reclaimedBytes).map(([reason, v]) => [{ reason }, v]),
  );
  labelled(
    registry,
    'lars_shm_holdings_bytes',
    `bytes held per process (top ${TOP_HOLDERS_METRIC})`,
    ['pid', 'name'],
    'gauge',
    () =>
      core
        .holders()
        .holders.slice(0, TOP_HOLDERS_METRIC)
        .map((h) => [{ pid: String(h.pid), name: h.name }, h.bytes]),
  );
  gauge('lars_shm_connections', 'open client connections', () => core.connections);
  gauge('lars_shm_processes', 'processes with a connection or a batch in flight', () => core.procs.size);
  labelled(registry, 'lars_shm_requests_total', 'requests by command', ['command'], 'counter', () =>
    Object.entries(protocol.requests).map(([command, v]) => [{ command }, v]),
  );
  labelled(registry, 'lars_shm_errors_total', 'error replies by code', ['code'], 'counter', () =>
    Object.entries(protocol.errors).map(([code, v]) => [{ code }, v]),
  );
  tcpServerMetrics(registry, 'lars_shm', server);
  return registry;
}
