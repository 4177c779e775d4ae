// The logging surface libraries take: the client libraries load this file only.

/**
 * The logging surface libraries accept: a subset of pino's, so a pino logger (or a child of one)
 * can be passed straight in. Libraries default to `silentLogger` (STYLE §9: libraries stay silent);
 * services create a JsonLogger (src/log/json-logger.ts) and hand children of it to the libraries
 * they run.
 */
export interface Logger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

const noop = (): void => {};

export const silentLogger: Logger = {
  error: noop,
  warn: noop,
  info: noop,
  debug: noop,
  child: () => silentLogger,
};

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
