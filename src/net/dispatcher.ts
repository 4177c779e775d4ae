import { ErrorCode, InvalidArgumentError, ProtocolError } from '../errors.js';
import { codecs, type Codec, type KnownMsgId, type MessageMap } from '../protocol/index.js';

/** Handler of a decoded message. May return a promise: its rejection is reported like a throw. */
export type MessageHandler<T, C> = (message: T, ctx: C) => void | Promise<void>;

/**
 * Handler of a raw body. `body` may be a view into the socket's chunk: copy it to keep it past the
 * call. A raw handler that finds the body malformed throws ProtocolError (DESIGN §2: a body that does
 * not decode is a protocol violation).
 */
export type RawHandler<C> = (body: Uint8Array, ctx: C, msgid: number) => void | Promise<void>;

/**
 * What a dispatch can report back to the endpoint that owns the counters (per-endpoint stats).
 * Endpoints implement this once; dispatch() itself never throws.
 */
export interface DispatchObserver<C> {
  /** No handler for this msgid: the frame was skipped (the connection stays open). */
  unknownMsgid(msgid: number, ctx: C): void;
  /**
   * The body did not decode, or a handler threw a ProtocolError (other than MESSAGE_TOO_LARGE, which
   * is a failed send of our own): a protocol violation. TCP endpoints
   * close the connection; UDP endpoints drop the datagram.
   */
  protocolError(err: ProtocolError, msgid: number, ctx: C): void;
  /** A handler threw (or its promise rejected) something else: a bug in the handler, not the peer. */
  handlerError(err: unknown, msgid: number, ctx: C): void;
}

/**
 * What an endpoint needs from a dispatcher. Endpoints are typed against this (method syntax, so its
 * parameters compare bivariantly): a `Dispatcher<Transport>` written by protocol code is accepted
 * where a `FrameDispatcher<TcpConnection>` is expected. Every context an endpoint passes is a
 * Transport, so handlers typed for Transport are sound.
 */
export interface FrameDispatcher<C> {
  dispatch(msgid: number, body: Uint8Array, ctx: C, observer: DispatchObserver<C>): void;
}

interface Entry<C> {
  /** undefined for raw handlers. */
  readonly decode: ((body: Uint8Array) => unknown) | undefined;
  readonly handler: (message: never, ctx: C, msgid: number) => void | Promise<void>;
}

/**
 * Maps msgid -> handler for one kind of endpoint. Known msgids (protocol `codecs`) are decoded before
 * the handler runs; extra msgids (an admin "poll now" frame, the bench echo) are registered with their
 * own codec or as raw bodies.
 *
 * `C` is the context handed to handlers (a Transport for the built-in endpoints). Protocol code can
 * build a `Dispatcher<Transport>` and hand it to any endpoint (see FrameDispatcher).
 *
 * Registration is meant to happen at start-up; registering one msgid twice is a programming error
 * (InvalidArgumentError) rather than a silent replacement.
 */
export class Dispatcher<C> implements FrameDispatcher<C> {
  private readonly table = new Map<number, Entry<C>>();

  /** Registers the handler of a known message; the body is decoded with the protocol codec. */
  on<K extends KnownMsgId>(msgid: K, handler: MessageHandler<MessageMap[K], C>): this {
    const codec = codecs[msgid] as Codec<MessageMap[K]>;
    return this.add(msgid, { decode: (b) => codec.decode(b), handler: handler as Entry<C>['handler'] });
  }

  /** Registers an extra msgid with its own codec. `codec.decode` should throw ProtocolError on bad bytes. */
  onCodec<T>(msgid: number, codec: Codec<T>, handler: MessageHandler<T, C>): this {
    return this.add(msgid, { decode: (b) => codec.decode(b), handler: handler as Entry<C>['handler'] });
  }

  /** Registers a handler that receives the undecoded body (e.g. echo, forwarding). */
  onRaw(msgid: number, handler: RawHandler<C>): this {
    return this.add(msgid, { decode: undefined, handler: handler as Entry<C>['handler'] });
  }

  /** Removes a handler; later frames with that msgid count as unknown. */
  off(msgid: number): this {
    this.table.delete(msgid);
    return this;
  }

  has(msgid: number): boolean {
    return this.table.has(msgid);
  }

  private add(msgid: number, entry: Entry<C>): this {
    if (!Number.isInteger(msgid) || msgid < -0x80000000 || msgid > 0x7fffffff) {
      throw new InvalidArgumentError(`msgid ${msgid} is not an int32`);
    }
    if (this.table.has(msgid)) {
      throw new InvalidArgumentError(`a handler for msgid ${msgid} is already registered`);
    }
    this.table.set(msgid, entry);
    return this;
  }

  /**
   * Decodes and handles one frame. Never throws: every failure goes to `observer`, so one bad frame
   * or one buggy handler cannot take down the endpoint (or the process).
   */
  dispatch(msgid: number, body: Uint8Array, ctx: C, observer: DispatchObserver<C>): void {
    const entry = this.table.get(msgid);
    if (entry === undefined) {
      observer.unknownMsgid(msgid, ctx);
      return;
    }
    let message: unknown = body;
    if (entry.decode !== undefined) {
      try {
        message = entry.decode(body);
      } catch (err) {
        observer.protocolError(asBadBody(err, msgid, body), msgid, ctx);
        return;
      }
    }
    let result: void | Promise<void>;
    try {
      result = entry.handler(message as never, ctx, msgid);
    } catch (err) {
      report(err, msgid, ctx, observer);
      return;
    }
    if (result !== undefined && typeof (result as Promise<void>).then === 'function') {
      (result as Promise<void>).then(undefined, (err: unknown) => report(err, msgid, ctx, observer));
    }
  }
}

function report<C>(err: unknown, msgid: number, ctx: C, observer: DispatchObserver<C>): void {
  // MESSAGE_TOO_LARGE is raised by our own send of an oversized reply: the handler's bug, not the peer's.
  if (err instanceof ProtocolError && err.code !== ErrorCode.MESSAGE_TOO_LARGE) {
    observer.protocolError(err, msgid, ctx);
  } else {
    observer.handlerError(err, msgid, ctx);
  }
}

function asBadBody(err: unknown, msgid: number, body: Uint8Array): ProtocolError {
  if (err instanceof ProtocolError) return err;
  return new ProtocolError(
    ErrorCode.BAD_BODY,
    `body of ${body.length} bytes does not decode (msgid ${msgid})`,
    {
      cause: err,
    },
  );
}
