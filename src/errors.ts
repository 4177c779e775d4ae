/**
 * Every error Lars throws is a LarsError with a stable `code`. Callers tell errors apart by `code`
 * (or by class), never by message text. The list below is the registry: docs/errors.md documents
 * the same codes and test/errors.test.ts keeps the two in sync.
 *
 * Wire-level failures between processes stay numeric return codes (protocol/retcode.ts); these
 * classes are for the process that notices the failure.
 */

export const ErrorCode = {
  /** A configuration file, environment variable or flag is invalid. */
  CONFIG: 'LARS_ERR_CONFIG',
  /** A user-supplied value (IP, port, id, URL, ...) is invalid. */
  INVALID_ARGUMENT: 'LARS_ERR_INVALID_ARGUMENT',
  /** A frame header announced a negative body length. */
  FRAME_NEGATIVE_LENGTH: 'LARS_ERR_FRAME_NEGATIVE_LENGTH',
  /** A frame header announced a body longer than 65527 bytes. */
  FRAME_TOO_LARGE: 'LARS_ERR_FRAME_TOO_LARGE',
  /** A UDP datagram's size is not 8 + msglen. */
  DATAGRAM_SIZE: 'LARS_ERR_DATAGRAM_SIZE',
  /** A frame body did not decode as the message its msgid names. */
  BAD_BODY: 'LARS_ERR_BAD_BODY',
  /** A message is too large to be framed. */
  MESSAGE_TOO_LARGE: 'LARS_ERR_MESSAGE_TOO_LARGE',
  /** An operation did not complete in time. */
  TIMEOUT: 'LARS_ERR_TIMEOUT',
  /** The object was closed or destroyed; the call cannot be served. */
  CLOSED: 'LARS_ERR_CLOSED',
  /** A bounded queue is full and the item was refused. */
  QUEUE_FULL: 'LARS_ERR_QUEUE_FULL',
  /** A peer read too slowly and its outbound queue overflowed: the connection was cut. */
  SLOW_PEER: 'LARS_ERR_SLOW_PEER',
  /** A connection was refused because the server is at its connection limit. */
  MAX_CONNECTIONS: 'LARS_ERR_MAX_CONNECTIONS',
  /** The connection is not (or no longer) established. */
  NOT_CONNECTED: 'LARS_ERR_NOT_CONNECTED',
  /** A task run on a worker failed or its worker died. */
  WORKER: 'LARS_ERR_WORKER',
  /** The database could not be reached or a query failed. */
  STORE: 'LARS_ERR_STORE',
  /** The database URL is malformed or names an unsupported backend. */
  STORE_URL: 'LARS_ERR_STORE_URL',
  /** The requested row (route, host, id, user) does not exist. */
  NOT_FOUND: 'LARS_ERR_NOT_FOUND',
  /** The row to create already exists (e.g. the same host twice in a route). */
  CONFLICT: 'LARS_ERR_CONFLICT',
  /** The agent answered a request with a non-success return code. */
  RETCODE: 'LARS_ERR_RETCODE',
  /** Authentication failed or is missing. */
  AUTH: 'LARS_ERR_AUTH',
  /** Authenticated, but the request is not allowed (e.g. a cookie-authenticated write without its CSRF token). */
  FORBIDDEN: 'LARS_ERR_FORBIDDEN',
  /** Too many attempts (e.g. failed logins); retry after `retryAfterS` seconds. */
  RATE_LIMITED: 'LARS_ERR_RATE_LIMITED',
  /** Bus: no normal server serves the requested topic (the message names it). */
  BUS_NO_RESPONDERS: 'LARS_ERR_BUS_NO_RESPONDERS',
  /** Bus: a live proc already holds the requested name (connect with `takeover` to replace it). */
  BUS_NAME_IN_USE: 'LARS_ERR_BUS_NAME_IN_USE',
  /** Bus: an operation arrived before the connection registered (HELLO), or after it unregistered. */
  BUS_NOT_REGISTERED: 'LARS_ERR_BUS_NOT_REGISTERED',
  /** Bus: every server of the topic is at its in-flight (concurrency) limit. */
  BUS_OVERLOADED: 'LARS_ERR_BUS_OVERLOADED',
  /** Bus: the responder's handler failed; the message carries the responder's error. */
  BUS_HANDLER: 'LARS_ERR_BUS_HANDLER',
  /** Bus: a per-connection limit (subscriptions, served topics) was reached. */
  BUS_LIMIT: 'LARS_ERR_BUS_LIMIT',
  /** shm: the class that fits the request has no free block; the message names the class and the top holders. */
  SHM_NO_MEMORY: 'LARS_ERR_SHM_NO_MEMORY',
  /** shm: the process would hold more than its share of the pool ([shm] quota_percent) or too many batches. */
  SHM_QUOTA: 'LARS_ERR_SHM_QUOTA',
  /** shm: free/send/addref of a block this connection does not hold (never allocated, already freed, sent). */
  SHM_NOT_HELD: 'LARS_ERR_SHM_NOT_HELD',
  /** shm: a handle of a former daemon generation or of a former use of the block. */
  SHM_STALE: 'LARS_ERR_SHM_STALE',
  /** shm: no batch with this id (never sent, or already received). */
  SHM_UNKNOWN_BATCH: 'LARS_ERR_SHM_UNKNOWN_BATCH',
  /** shm: recv of a batch addressed to another process. */
  SHM_NOT_ADDRESSEE: 'LARS_ERR_SHM_NOT_ADDRESSEE',
  /** shm: the batch was not received within its ttl (or its addressee went away) and was released. */
  SHM_EXPIRED: 'LARS_ERR_SHM_EXPIRED',
  /** shm: a request's arguments are invalid (size, alignment, count, ttl, pid, malformed body). */
  SHM_INVALID_ARGUMENT: 'LARS_ERR_SHM_INVALID_ARGUMENT',
  /** shm: the daemon does not know the command. */
  SHM_UNKNOWN_COMMAND: 'LARS_ERR_SHM_UNKNOWN_COMMAND',
  /** shm: the daemon could not establish the caller's process identity (file mode proof missing or wrong). */
  SHM_NOT_VERIFIED: 'LARS_ERR_SHM_NOT_VERIFIED',
  /** shm: the pool cannot be created or mapped (/dev/shm too small, segment error, socket path). */
  SHM_POOL: 'LARS_ERR_SHM_POOL',
  /** SDK with `fastPath: 'require'`: the agent's shared-memory fast path is not usable (the message says why). */
  FAST_PATH: 'LARS_ERR_FAST_PATH',
  /** A service cannot listen: another process holds the address (the message names it and the setting). */
  ADDRESS_IN_USE: 'LARS_ERR_ADDRESS_IN_USE',
  /** An unexpected failure (a bug): the CLI prints the message; LARS_DEBUG=1 prints the stack. */
  INTERNAL: 'LARS_ERR_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class LarsError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** Configuration problems; the message names the file, section and key. */
export class ConfigError extends LarsError {
  readonly file: string | undefined;
  readonly section: string | undefined;
  readonly key: string | undefined;

  constructor(
    message: string,
    where: { file?: string | undefined; section?: string | undefined; key?: string | undefined } = {},
  ) {
    super(ErrorCode.CONFIG, message);
    this.file = where.file;
    this.section = where.section;
    this.key = where.key;
  }
}

export class InvalidArgumentError extends LarsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INVALID_ARGUMENT, message, options);
  }
}

/** A violation of the wire protocol (DESIGN §2). */
export class ProtocolError extends LarsError {
  constructor(
    code:
      | typeof ErrorCode.FRAME_NEGATIVE_LENGTH
      | typeof ErrorCode.FRAME_TOO_LARGE
      | typeof ErrorCode.DATAGRAM_SIZE
      | typeof ErrorCode.BAD_BODY
      | typeof ErrorCode.MESSAGE_TOO_LARGE,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export class TimeoutError extends LarsError {
  constructor(message: string) {
    super(ErrorCode.TIMEOUT, message);
  }
}

export class ClosedError extends LarsError {
  constructor(message = 'closed') {
    super(ErrorCode.CLOSED, message);
  }
}

export class QueueFullError extends LarsError {
  constructor(message: string) {
    super(ErrorCode.QUEUE_FULL, message);
  }
}

export class ConnectionError extends LarsError {
  constructor(
    code: typeof ErrorCode.SLOW_PEER | typeof ErrorCode.MAX_CONNECTIONS | typeof ErrorCode.NOT_CONNECTED,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export class WorkerError extends LarsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.WORKER, message, options);
  }
}

export class StoreError extends LarsError {
  constructor(
    code: typeof ErrorCode.STORE | typeof ErrorCode.STORE_URL,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export class NotFoundError extends LarsError {
  constructor(message: string) {
    super(ErrorCode.NOT_FOUND, message);
  }
}

export class ConflictError extends LarsError {
  constructor(message: string) {
    super(ErrorCode.CONFLICT, message);
  }
}

/** The agent answered with a non-success return code (see protocol/retcode.ts). */
export class RetcodeError extends LarsError {
  readonly retcode: number;

  constructor(retcode: number, message: string) {
    super(ErrorCode.RETCODE, message);
    this.retcode = retcode;
  }
}

export class AuthError extends LarsError {
  constructor(message: string) {
    super(ErrorCode.AUTH, message);
  }
}

export class ForbiddenError extends LarsError {
  constructor(message: string) {
    super(ErrorCode.FORBIDDEN, message);
  }
}

export class RateLimitError extends LarsError {
  /** Whole seconds until another attempt may succeed. */
  readonly retryAfterS: number;

  constructor(message: string, retryAfterS: number) {
    super(ErrorCode.RATE_LIMITED, message);
    this.retryAfterS = retryAfterS;
  }
}

/**
 * Errors of the same-host message bus (DESIGN §9) that name a subject: no responders, overloaded,
 * a failed handler. `subject` is the topic or subject concerned ('' when none).
 */
export class BusError extends LarsError {
  readonly subject: string;

  constructor(
    code:
      | typeof ErrorCode.BUS_NO_RESPONDERS
      | typeof ErrorCode.BUS_NAME_IN_USE
      | typeof ErrorCode.BUS_NOT_REGISTERED
      | typeof ErrorCode.BUS_OVERLOADED
      | typeof ErrorCode.BUS_HANDLER
      | typeof ErrorCode.BUS_LIMIT,
    message: string,
    subject = '',
  ) {
    super(code, message);
    this.subject = subject;
  }
}

/** Codes of the shared-memory manager's replies (src/shm). */
export type ShmErrorCode =
  | typeof ErrorCode.SHM_NO_MEMORY
  | typeof ErrorCode.SHM_QUOTA
  | typeof ErrorCode.SHM_NOT_HELD
  | typeof ErrorCode.SHM_STALE
  | typeof ErrorCode.SHM_UNKNOWN_BATCH
  | typeof ErrorCode.SHM_NOT_ADDRESSEE
  | typeof ErrorCode.SHM_EXPIRED
  | typeof ErrorCode.SHM_INVALID_ARGUMENT
  | typeof ErrorCode.SHM_UNKNOWN_COMMAND
  | typeof ErrorCode.SHM_NOT_VERIFIED
  | typeof ErrorCode.SHM_POOL;

/** A failed shared-memory operation: the daemon's reply, or a check the client makes first. */
export class ShmError extends LarsError {
  constructor(code: ShmErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * `fastPath: 'require'` and the agent's shared-memory fast path (issue 18) cannot be used: no native
 * addon, no segment for the agent's port, a segment of another layout version, a failed Atomics
 * check, or an agent that stopped beating. `reason` is a short stable word.
 */
export class FastPathError extends LarsError {
  readonly reason: string;

  constructor(reason: string, message: string) {
    super(ErrorCode.FAST_PATH, message);
    this.reason = reason;
  }
}

/**
 * A service could not listen because another process holds the address. `setting` names the flag
 * and configuration key that chose it; `holderPid` is the process holding it when it can be seen.
 */
export class AddressInUseError extends LarsError {
  readonly proto: 'tcp' | 'udp';
  readonly host: string;
  readonly port: number;
  readonly setting: string;
  readonly holderPid: number | undefined;

  constructor(
    where: { proto: 'tcp' | 'udp'; host: string; port: number; setting: string; holderPid?: number },
    message: string,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.ADDRESS_IN_USE, message, options);
    this.proto = where.proto;
    this.host = where.host;
    this.port = where.port;
    this.setting = where.setting;
    this.holderPid = where.holderPid;
  }
}

/** An unexpected failure, wrapped so that the CLI prints one line (the cause keeps the stack). */
export class InternalError extends LarsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INTERNAL, message, options);
  }
}

export function isLarsError(err: unknown): err is LarsError {
  return err instanceof LarsError;
}
