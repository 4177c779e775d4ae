import type { Logger, LogLevel } from './silent.js';

/**
 * The services' logger: one JSON line per entry on stdout, in pino's line format (numeric `level`,
 * epoch-ms `time`, bound fields, the entry's fields, `msg`), so log tooling that reads pino lines
 * reads ours. Written here instead of loading pino: pino's module tree costs every service ~9 MB of
 * RSS (issue 17's footprint: a bare node is ~40 MB, the agent's target 55 MB), and the services use
 * only levels, child bindings and Error serialization.
 *
 * Writes go through process.stdout, synchronous for files and pipes on Linux (a line is never lost
 * when the process exits right after logging), asynchronous from a worker thread.
 */

const LEVELS: Record<LogLevel, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};

export interface JsonLoggerOptions {
  /** Entries below this level are dropped. Default info. */
  level?: LogLevel;
  /** Fields on every line (and every child's). */
  base?: Record<string, unknown>;
  /** Where lines go (tests). Default process.stdout. */
  write?: (line: string) => void;
}

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && Object.hasOwn(LEVELS, value);
}

export class JsonLogger implements Logger {
  readonly level: LogLevel;
  private readonly min: number;
  /** The bound fields, serialized once: `"k":v,` each. */
  private readonly prefix: string;
  private readonly write: (line: string) => void;

  /** `parentFields`: a parent logger's bound fields (child()). */
  constructor(options: JsonLoggerOptions = {}, parentFields = '') {
    this.level = options.level ?? 'info';
    this.min = LEVELS[this.level];
    this.write = options.write ?? ((line) => void process.stdout.write(line));
    this.prefix = parentFields + fields(options.base ?? {});
  }

  fatal(obj: object | string, msg?: string): void {
    this.log(60, obj, msg);
  }

  error(obj: object | string, msg?: string): void {
    this.log(50, obj, msg);
  }

  warn(obj: object | string, msg?: string): void {
    this.log(40, obj, msg);
  }

  info(obj: object | string, msg?: string): void {
    this.log(30, obj, msg);
  }

  debug(obj: object | string, msg?: string): void {
    this.log(20, obj, msg);
  }

  trace(obj: object | string, msg?: string): void {
    this.log(10, obj, msg);
  }

  isLevelEnabled(level: LogLevel): boolean {
    return LEVELS[level] >= this.min;
  }

  child(bindings: Record<string, unknown>): JsonLogger {
    return new JsonLogger({ level: this.level, write: this.write, base: bindings }, this.prefix);
  }

  private log(level: number, obj: object | string, msg: string | undefined): void {
    if (level < this.min) return;
    let body: string;
    if (typeof obj === 'string') {
      body = `"msg":${JSON.stringify(obj)}`;
    } else {
      // pino's convention: an Error given as the object is logged under `err`.
      const entry = obj instanceof Error ? { err: obj } : obj;
      const text = msg ?? (obj instanceof Error ? obj.message : undefined);
      body = fields(entry) + (text === undefined ? '' : `"msg":${JSON.stringify(text)}`);
    }
    if (body.endsWith(',')) body = body.slice(0, -1);
    this.write(`{"level":${level},"time":${Date.now()},${this.prefix}${body}}\n`);
  }
}

/** `"k":v,` for each field; an Error becomes { type, message, stack, own fields such as code }. */
function fields(obj: object): string {
  let json: string;
  try {
    json = JSON.stringify(obj, replacer);
  } catch (err) {
    // A circular structure (or a throwing toJSON): say so rather than lose the line.
    json = JSON.stringify({ logError: `unserializable fields: ${(err as Error).message}` });
  }
  return json.length > 2 ? `${json.slice(1, -1)},` : '';
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    return { ...value, type: value.name, message: value.message, stack: value.stack };
  }
  return typeof value === 'bigint' ? value.toString() : value;
}
