/**
 * Public client API of Lars: `import { LarsClient } from 'lars'`. Imports nothing from the servers
 * or the database.
 */
export {
  LarsClient,
  DEFAULT_AGENT_PORTS,
  DEFAULT_TIMEOUT_MS,
  type LarsClientOptions,
  type Host,
  type HostAnswer,
} from './lars-client.js';
export { Registration, type RegisterOptions, type RegistrationEvents } from './registration.js';
export { DEFAULT_LEASE_TTL_S, MAX_WEIGHT } from '../protocol/lease-limits.js';
export { RetCode, retCodeName } from '../protocol/retcode.js';
export { type FastPathMode, type FastPathStats, type FallbackReason } from './fast-path.js';
export {
  ErrorCode,
  LarsError,
  RetcodeError,
  TimeoutError,
  ClosedError,
  QueueFullError,
  FastPathError,
} from '../errors.js';
