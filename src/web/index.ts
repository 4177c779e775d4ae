/**
 * Public surface of the web console (STYLE §5). `lars web` and `lars up` start a WebService;
 * `ensureAdminUser` creates the first account on a fresh database.
 */
export { WebService, DEFAULT_OVERLOAD_FRESHNESS_S, type WebServiceOptions } from './web-service.js';
export {
  ensureAdminUser,
  createUser,
  setUserPassword,
  removeUser,
  listUsers,
  ADMIN_USER_NAME,
  type EnsureAdminOptions,
  type User,
} from './users.js';
export { MIN_PASSWORD_LENGTH, assertPasswordPolicy } from './passwords.js';
export { DEFAULT_SESSION_TTL_S } from './sessions.js';
export type { LoginRateLimitOptions } from './login-rate-limit.js';
