import { pino, type Logger as PinoLogger, type LoggerOptions } from 'pino';

export { silentLogger, type Logger, type LogLevel } from './silent.js';
import type { LogLevel } from './silent.js';

/**
 * Creates a service logger: JSON lines on stdout, level from `LARS_LOG_LEVEL` (default info).
 * `component` is bound on every line (dns, agent, reporter, web, ...).
 */
export function createServiceLogger(component: string, options: LoggerOptions = {}): PinoLogger {
  const level = (process.env.LARS_LOG_LEVEL as LogLevel | undefined) ?? options.level ?? 'info';
  return pino({ base: { component, pid: process.pid }, ...options, level });
}
