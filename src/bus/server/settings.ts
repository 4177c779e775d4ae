import type { Config } from '../../config/index.js';
import { ConfigError, InvalidArgumentError } from '../../errors.js';
import {
  BUS_FRAME_OVERHEAD,
  BUS_KILL_FACTOR,
  BUS_SWEEP_MS,
  DEFAULT_BUS_CONCURRENCY,
  DEFAULT_BUS_HEARTBEAT_MS,
  DEFAULT_BUS_LINGER_MS,
  DEFAULT_BUS_MAX_CONNS,
  DEFAULT_BUS_MAX_PAYLOAD,
  DEFAULT_BUS_MAX_PENDING_BYTES,
  DEFAULT_BUS_MAX_PENDING_MSGS,
  DEFAULT_BUS_MAX_SUBS_PER_CONN,
  DEFAULT_BUS_OFFLINE_MS,
  DEFAULT_BUS_WRITE_DEADLINE_MS,
} from '../defaults.js';

/** The daemon's settings in the units it works with (ms, bytes), frozen. */
export interface BusSettings {
  readonly offlineMs: number;
  readonly killMs: number;
  readonly heartbeatMs: number;
  readonly maxPendingMsgs: number;
  readonly maxPendingBytes: number;
  readonly writeDeadlineMs: number;
  readonly maxPayload: number;
  /** Largest frame body accepted: maxPayload + room for the data-frame fields and headers. */
  readonly maxFrame: number;
  readonly maxSubsPerConn: number;
  readonly maxConns: number;
  readonly lingerMs: number;
  readonly defaultConcurrency: number;
  readonly sweepMs: number;
}

export function busSettings(o: Partial<Omit<BusSettings, 'maxFrame'>> = {}): BusSettings {
  const offlineMs = o.offlineMs ?? DEFAULT_BUS_OFFLINE_MS;
  const killMs = o.killMs ?? offlineMs * BUS_KILL_FACTOR;
  if (!(killMs > offlineMs))
    throw new InvalidArgumentError(`bus: kill_ms (${killMs}) must be greater than offline_ms (${offlineMs})`);
  const maxPayload = o.maxPayload ?? DEFAULT_BUS_MAX_PAYLOAD;
  return Object.freeze({
    offlineMs,
    killMs,
    // A heartbeat must arrive well within offline_ms, or a quiet client would flap.
    heartbeatMs: Math.min(o.heartbeatMs ?? DEFAULT_BUS_HEARTBEAT_MS, Math.floor(offlineMs / 3)),
    maxPendingMsgs: o.maxPendingMsgs ?? DEFAULT_BUS_MAX_PENDING_MSGS,
    maxPendingBytes: o.maxPendingBytes ?? DEFAULT_BUS_MAX_PENDING_BYTES,
    writeDeadlineMs: o.writeDeadlineMs ?? DEFAULT_BUS_WRITE_DEADLINE_MS,
    maxPayload,
    maxFrame: maxPayload + BUS_FRAME_OVERHEAD,
    maxSubsPerConn: o.maxSubsPerConn ?? DEFAULT_BUS_MAX_SUBS_PER_CONN,
    maxConns: o.maxConns ?? DEFAULT_BUS_MAX_CONNS,
    lingerMs: o.lingerMs ?? DEFAULT_BUS_LINGER_MS,
    defaultConcurrency: o.defaultConcurrency ?? DEFAULT_BUS_CONCURRENCY,
    sweepMs: o.sweepMs ?? BUS_SWEEP_MS,
  });
}

/** `[bus]` of a validated configuration (kill_ms 0 = 3 x offline_ms). */
export function busSettingsFromConfig(config: Config): BusSettings {
  const b = config.bus;
  if (b.kill_ms !== 0 && b.kill_ms <= b.offline_ms)
    throw new ConfigError(
      `[bus] kill_ms (${b.kill_ms}) must be greater than offline_ms (${b.offline_ms}), or 0 for 3 x offline_ms`,
      {
        section: 'bus',
        key: 'kill_ms',
      },
    );
  return busSettings({
    offlineMs: b.offline_ms,
    killMs: b.kill_ms === 0 ? b.offline_ms * BUS_KILL_FACTOR : b.kill_ms,
    heartbeatMs: b.heartbeat_ms,
    maxPendingMsgs: b.max_pending_msgs,
    maxPendingBytes: b.max_pending_bytes,
    writeDeadlineMs: b.write_deadline_ms,
    maxPayload: b.max_payload,
    maxSubsPerConn: b.max_subs_per_conn,
    maxConns: b.max_conns,
    lingerMs: b.linger_ms,
  });
}
