import { ErrorCode, InvalidArgumentError, isLarsError } from '../../errors.js';
import { ShmBuffer } from '../../shm/shm-buffer.js';
import { Control } from '../wire/control.js';
import { parseDataFrame, readU32, ReplyStatus, type DataFields } from '../wire/data-frame.js';
import { BusMsgId } from '../wire/msg-id.js';
import { BusMsg, SubjectCache } from './bus-msg.js';
import type { ClientSide } from './client-side.js';
import type { DataOut } from './data-out.js';
import { ERROR_CODE_HEADER } from './reply-errors.js';
import { BusResponder, type BusHandler, type BusReply, type ServeOptions } from './responder.js';

const EMPTY = new Uint8Array(0);

/** Errors a handler throws that reach the caller as the bus's statuses, not as a handler failure. */
const PASSED_ON: Readonly<Record<string, number>> = {
  [ErrorCode.BUS_NO_RESPONDERS]: ReplyStatus.NO_RESPONDERS,
  [ErrorCode.BUS_OVERLOADED]: ReplyStatus.OVERLOADED,
  [ErrorCode.CLOSED]: ReplyStatus.CLOSED,
  [ErrorCode.MESSAGE_TOO_LARGE]: ReplyStatus.TOO_LARGE,
};

/**
 * The client's served topics: SERVE/UNSERVE on the wire (replayed after every reconnect), and each
 * relayed REQ run through its topic's handler, the result (or the thrown error) sent back as REP.
 * A reply for a request that arrived on an earlier connection is not sent: the bus forgot it.
 */
export class Responders {
  private readonly bySid = new Map<number, BusResponder>();
  private readonly byTopic = new Map<string, BusResponder>();
  private readonly topics = new SubjectCache();
  /** Answers requests for topics this client does not serve (the bus bridge's forward). */
  private fallback: BusResponder | undefined;

  constructor(
    private readonly host: ClientSide,
    private readonly out: DataOut,
    private readonly clientName: string,
  ) {}

  add(topic: string, handler: BusHandler, opts: ServeOptions): BusResponder {
    if (this.byTopic.get(topic)?.active)
      throw new InvalidArgumentError(`this client already serves "${topic}"`);
    const c = opts.concurrency ?? 0;
    if (!Number.isInteger(c) || c < 0 || c > 65_535)
      throw new InvalidArgumentError(`concurrency must be an integer 1-65535, got ${c}`);
    const r = new BusResponder(
      { unserve: (x) => this.drop(x) },
      this.host.nextSid(),
      topic,
      opts.queue ?? '',
      c,
      handler,
    );
    this.bySid.set(r.sid, r);
    this.byTopic.set(topic, r);
    if (this.host.link.isConnected) this.host.link.stage(BusMsgId.Serve, frame(r));
    return r;
  }

  /** @internal Requests the bus relays for topics not served here (the bridge: forward to NATS). */
  serveUnmatched(handler: BusHandler): void {
    this.fallback = new BusResponder({ unserve: () => {} }, 0, '>', '', 0, handler);
  }

  all(): BusResponder[] {
    return [...this.bySid.values()];
  }

  replay(): void {
    // A new session: stopped topics are gone for good (the bus relays nothing more for them).
    for (const [topic, r] of this.byTopic) if (!this.bySid.has(r.sid)) this.byTopic.delete(topic);
    for (const r of this.bySid.values()) this.host.link.stage(BusMsgId.Serve, frame(r));
  }

  /** The bus refused served topic `sid`; returns it (now stopped). */
  refused(sid: number): BusResponder | undefined {
    const r = this.bySid.get(sid);
    if (!r) return undefined;
    r.markStopped();
    this.drop(r);
    if (this.byTopic.get(r.topic) === r) this.byTopic.delete(r.topic);
    return r;
  }

  stopAll(): void {
    for (const r of this.bySid.values()) r.markStopped();
  }

  onReq(buf: Uint8Array, start: number, len: number, f: DataFields, shm?: ShmBuffer): void {
    if (!parseDataFrame(buf, start, len, f)) return void shm?.release();
    const rid = readU32(buf, start);
    const topic = this.topics.decode(buf, f.subjStart, f.subjLen);
    // A stopped topic still answers the requests the bus relayed before it read our UNSERVE.
    const r = this.byTopic.get(topic) ?? this.fallback;
    const gen = this.host.link.gen;
    if (r === undefined) {
      void shm?.release();
      this.reply(rid, ReplyStatus.NO_RESPONDERS, undefined, `${this.clientName} no longer serves "${topic}"`);
      return;
    }
    const msg = new BusMsg(buf, f, this.host.nameOf(readU32(buf, start + 4)), undefined, topic, shm);
    r.inFlight += 1;
    let result: BusReply | Promise<BusReply>;
    try {
      result = r.handler(msg);
    } catch (err) {
      this.failed(rid, gen, r, err);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (v) => this.replied(rid, gen, r, v),
        (err: unknown) => this.failed(rid, gen, r, err),
      );
    } else {
      this.replied(rid, gen, r, result);
    }
  }

  private replied(rid: number, gen: number, r: BusResponder, v: BusReply): void {
    r.done(true);
    if (!this.current(gen)) return;
    let data: Uint8Array | string | ShmBuffer | undefined;
    let headers: Record<string, string> | undefined;
    let keep = false;
    if (
      v === undefined ||
      v === null ||
      typeof v === 'string' ||
      v instanceof Uint8Array ||
      v instanceof ShmBuffer
    )
      data = v ?? undefined;
    else {
      data = v.data;
      headers = v.headers;
      keep = v.keep === true;
    }
    try {
      this.reply(rid, ReplyStatus.OK, headers, data ?? EMPTY, keep);
    } catch (err) {
      // An unencodable reply (too large, bad headers) reaches the caller as the handler's failure.
      const code = isLarsError(err) ? err.code : 'Error';
      this.reply(rid, ReplyStatus.HANDLER_ERROR, { [ERROR_CODE_HEADER]: code }, (err as Error).message);
    }
  }

  private failed(rid: number, gen: number, r: BusResponder, err: unknown): void {
    r.done(false);
    if (!this.current(gen)) return;
    const code = isLarsError(err) ? err.code : err instanceof Error ? err.name : 'Error';
    const message = err instanceof Error ? err.message : String(err);
    // A responder that asked elsewhere (the bridge) passes the far end's outcome on as the bus's own.
    const passOn = PASSED_ON[code];
    if (passOn !== undefined) this.reply(rid, passOn, undefined, message);
    else this.reply(rid, ReplyStatus.HANDLER_ERROR, { [ERROR_CODE_HEADER]: code }, message);
  }

  private current(gen: number): boolean {
    return gen === this.host.link.gen && this.host.link.isConnected;
  }

  /** A request whose shared-memory payload could not be taken fails at its caller (issue 14). */
  shmFailed(buf: Uint8Array, start: number, err: unknown): void {
    const code = isLarsError(err) ? err.code : 'Error';
    this.reply(readU32(buf, start), ReplyStatus.SHM_FAILED, undefined, `${code}: ${(err as Error).message}`);
  }

  private reply(
    rid: number,
    status: number,
    headers: Record<string, string> | undefined,
    data: Uint8Array | string | ShmBuffer,
    keep = false,
  ): void {
    this.out.stage(BusMsgId.Rep, rid, 0, status, '', data, headers, false, keep);
  }

  private drop(r: BusResponder): void {
    if (!this.bySid.delete(r.sid)) return;
    if (this.host.link.isConnected)
      this.host.link.stage(BusMsgId.Unserve, Control.unserve.encode({ sid: r.sid }));
  }
}

function frame(r: BusResponder): Uint8Array {
  return Control.serve.encode({ sid: r.sid, topic: r.topic, queue: r.queue, concurrency: r.concurrency });
}
