import { Counter, Gauge, Registry } from 'prom-client';
import { liveMetrics } from '../../service/metrics.js';
import type { BusEngine } from './bus-engine.js';
import type { DropReason, RequestResult } from './bus-stats.js';

/**
 * The bus's /metrics (DESIGN §9 observability), read from the engine's plain counters at scrape
 * time: the hot path only bumps numbers.
 */
export function busMetrics(engine: BusEngine): Registry {
  const registry = new Registry();
  const { gauge, counter } = liveMetrics(registry);
  const s = engine.stats;
  gauge('lars_bus_connections', 'open client connections', () => engine.conns.size);
  new Gauge({
    name: 'lars_bus_procs',
    help: 'registered procs by state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      for (const [state, n] of Object.entries(engine.procs.counts())) this.set({ state }, n);
    },
  });
  counter('lars_bus_msgs_in_total', 'data frames received (publishes, requests, replies)', () => s.msgsIn);
  counter('lars_bus_msgs_out_total', 'data frames delivered to clients', () => s.msgsOut);
  counter('lars_bus_bytes_in_total', 'bytes received from clients', () => s.bytesIn);
  counter('lars_bus_bytes_out_total', 'bytes of data frames queued to clients', () => s.bytesOut);
  labelled(
    registry,
    'lars_bus_dropped_total',
    'messages not delivered, by reason',
    'reason',
    () => s.dropped,
  );
  labelled(registry, 'lars_bus_requests_total', 'relayed requests by result', 'result', () => s.requests);
  registry.registerMetric(engine.requestSeconds);
  counter(
    'lars_bus_shm_transfers_total',
    'shared-memory payloads handed over through lars shm',
    () => engine.relay.transfers,
  );
  counter(
    'lars_bus_shm_failures_total',
    'shared-memory hand-offs lars shm refused or could not be asked',
    () => engine.relay.failures,
  );
  gauge(
    'lars_bus_bridge_connected',
    'bridge to NATS: 1 connected, 0 disconnected (absent without [bus.bridge])',
    () => (engine.bridge?.state === 'connected' ? 1 : 0),
  );
  labelled(
    registry,
    'lars_bus_bridge_msgs_total',
    'what crossed the bridge to NATS, or was refused',
    'kind',
    () => {
      const c = engine.bridge?.counters;
      return c
        ? {
            export: c.exported,
            import: c.imported,
            serve: c.served,
            forward: c.forwarded,
            loop: c.loops,
            too_large: c.tooLarge,
            dropped: c.dropped,
            reconnect: c.reconnects,
          }
        : {};
    },
  );
  gauge('lars_bus_pending_bytes', 'largest outbound queue of one connection, in bytes', () => {
    let max = 0;
    for (const c of engine.conns) max = Math.max(max, c.pendingBytes);
    return max;
  });
  gauge(
    'lars_bus_requests_in_flight',
    'requests relayed to a server and not answered yet',
    () => engine.router.pending.size,
  );
  gauge('lars_bus_subscriptions', 'subscriptions in the index', () => engine.sublist.count);
  counter(
    'lars_bus_slow_consumer_episodes_total',
    'episodes of dropping for a full connection queue',
    () => s.slowConsumerEpisodes,
  );
  counter(
    'lars_bus_slow_consumer_disconnects_total',
    'connections cut after dropping for write_deadline_ms',
    () => s.slowConsumerDisconnects,
  );
  counter(
    'lars_bus_late_replies_total',
    'replies for requests already finished or unknown',
    () => s.lateReplies,
  );
  counter(
    'lars_bus_protocol_errors_total',
    'connections closed for framing violations',
    () => s.protocolErrors,
  );
  counter('lars_bus_bad_requests_total', 'operations answered with an error', () => s.badRequests);
  counter('lars_bus_unknown_msgid_total', 'frames with an unknown msgid', () => s.unknownMsgid);
  counter(
    'lars_bus_connections_refused_total',
    'connections refused at max_conns',
    () => s.connectionsRefused,
  );
  counter('lars_bus_internal_errors_total', 'operations that failed inside the bus', () => s.internalErrors);
  return registry;
}

function labelled(
  registry: Registry,
  name: string,
  help: string,
  label: string,
  read: () => Readonly<Partial<Record<DropReason | RequestResult | string, number>>>,
): Counter {
  return new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(read())) this.inc({ [label]: k }, v);
    },
  });
}
