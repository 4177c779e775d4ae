export { silentLogger, type Logger, type LogLevel } from './silent.js';
import { isLogLevel, JsonLogger } from './json-logger.js';

/**
 * Creates a service logger: JSON lines on stdout, level from `LARS_LOG_LEVEL` (default info).
 * `component` is bound on every line (dns, agent, reporter, web, ...).
 */
export function createServiceLogger(component: string): JsonLogger {
  const env = process.env.LARS_LOG_LEVEL;
  return new JsonLogger({ level: isLogLevel(env) ? env : 'info', base: { component, pid: process.pid } });
}
