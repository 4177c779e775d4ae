/**
 * Defaults of the bus (DESIGN §9, `[bus]` in docs/config.md), as named constants with units. Shared
 * by the config schema, the daemon and the client; no imports, so the client stays free of server code.
 */
export const DEFAULT_BUS_OFFLINE_MS = 3_000;
/** kill_ms = 3 x offline_ms (seed rule: "*3 to allow other clients to finish sending msgs"). */
export const BUS_KILL_FACTOR = 3;
export const DEFAULT_BUS_HEARTBEAT_MS = 1_000;
export const DEFAULT_BUS_MAX_PENDING_MSGS = 65_536;
export const DEFAULT_BUS_MAX_PENDING_BYTES = 64 * 1024 * 1024;
export const DEFAULT_BUS_WRITE_DEADLINE_MS = 10_000;
export const DEFAULT_BUS_MAX_PAYLOAD = 1024 * 1024;
/** Frame room beyond the payload for the data-frame fields and headers. */
export const BUS_FRAME_OVERHEAD = 4 * 1024;
export const DEFAULT_BUS_MAX_SUBS_PER_CONN = 10_000;
export const DEFAULT_BUS_MAX_CONNS = 1_024;
export const DEFAULT_BUS_LINGER_MS = 2_000;
/** In-flight requests the bus hands one server registration at once unless it asks otherwise. */
export const DEFAULT_BUS_CONCURRENCY = 256;
/** How often the bus recomputes proc states and expires requests. */
export const BUS_SWEEP_MS = 100;
/** Per-request timeout of the client. */
export const DEFAULT_BUS_REQUEST_TIMEOUT_MS = 5_000;
/** Bytes the client buffers (connected or not) before publish() throws LARS_ERR_QUEUE_FULL. */
export const DEFAULT_BUS_MAX_OUTBOUND_BYTES = 16 * 1024 * 1024;
/** Socket file name inside the bus directory. */
export const BUS_SOCKET_NAME = 'bus.sock';
