/**
 * Public client API of the same-host message bus: `import { BusClient } from 'lars/bus'`
 * (docs/bus.md). Imports nothing from the daemon, the other servers or the database.
 */
export { BusClient } from './client/bus-client.js';
export { BusMsg } from './client/bus-msg.js';
export { Subscription, DEFAULT_SUB_MAX_PENDING, type SubscribeOptions } from './client/subscription.js';
export { BusResponder, type BusHandler, type BusReply, type ServeOptions } from './client/responder.js';
export type {
  BusClientOptions,
  BusClientState,
  BusProcState,
  BusSession,
  ProcInfo,
  PublishOptions,
  RequestOptions,
  SlowConsumerEvent,
  TopicServerInfo,
} from './client/types.js';
export { defaultBusSocket } from './socket-path.js';
export { DEFAULT_BUS_REQUEST_TIMEOUT_MS, DEFAULT_BUS_MAX_OUTBOUND_BYTES } from './defaults.js';
export {
  BusError,
  ClosedError,
  ErrorCode,
  LarsError,
  QueueFullError,
  TimeoutError,
  isLarsError,
} from '../errors.js';
