/** Why a message was not delivered (label `reason` of lars_bus_dropped_total). */
export type DropReason =
  'no_interest' | 'slow_consumer' | 'offline' | 'too_large' | 'closing' | 'disconnect' | 'shm';
/** How a request ended (label `result` of lars_bus_requests_total). */
export type RequestResult = 'ok' | 'error' | 'no_responders' | 'timeout' | 'closed' | 'overloaded';

/**
 * The bus's counters: plain numbers bumped on the hot path, read by the metrics at scrape time
 * (src/service/metrics.ts) and by /healthz.
 */
export class BusStats {
  connectionsAccepted = 0;
  connectionsRefused = 0;
  msgsIn = 0;
  msgsOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  readonly dropped: Record<DropReason, number> = {
    no_interest: 0,
    slow_consumer: 0,
    offline: 0,
    too_large: 0,
    closing: 0,
    disconnect: 0,
    shm: 0,
  };
  readonly requests: Record<RequestResult, number> = {
    ok: 0,
    error: 0,
    no_responders: 0,
    timeout: 0,
    closed: 0,
    overloaded: 0,
  };
  lateReplies = 0;
  slowConsumerEpisodes = 0;
  slowConsumerDisconnects = 0;
  /** Framing violations (connection closed). */
  protocolErrors = 0;
  /** Operations answered with ERR (bad subject, bad body, not registered, ...). */
  badRequests = 0;
  unknownMsgid = 0;
  internalErrors = 0;
}
