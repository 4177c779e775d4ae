// Used by the client SDK: imports nothing but protocol, errors and log (DESIGN §7, STYLE §5).
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { ClosedError, InvalidArgumentError, QueueFullError, TimeoutError } from '../errors.js';
import { silentLogger, type Logger } from '../log/logger.js';
import {
  codecs,
  encodeFrame,
  isKnownMsgId,
  parseDatagram,
  type Codec,
  type KnownMsgId,
  type MessageMap,
} from '../protocol/index.js';

export const DEFAULT_UDP_REQUEST_TIMEOUT_MS = 1_000;
export const DEFAULT_UDP_MAX_IN_FLIGHT = 1024;
/**
 * SO_RCVBUF of the client socket. Many requests in flight means bursts of replies: the kernel's
 * default (~200 KiB, about 270 small datagrams with their overhead) silently drops the rest.
 */
export const DEFAULT_UDP_CLIENT_RECV_BUFFER_BYTES = 2 * 1024 * 1024;

export type ReplyKey = string | number;

/**
 * Extracts the matching key from a decoded reply, or undefined when the reply carries none.
 * The default, `seqOrRouteKey`, uses `seq` when the message has one (GetHostResponse) and
 * `modid:cmdid` otherwise (route responses carry no sequence number on the wire).
 */
export type ReplyKeyFn = (msgid: number, message: unknown) => ReplyKey | undefined;

export function seqOrRouteKey(_msgid: number, message: unknown): ReplyKey | undefined {
  const m = message as { seq?: unknown; modid?: unknown; cmdid?: unknown };
  if (typeof m.seq === 'number') return m.seq;
  if (typeof m.modid === 'number' && typeof m.cmdid === 'number') return `${m.modid}:${m.cmdid}`;
  return undefined;
}

export interface UdpClientOptions {
  /** Local address to bind (ephemeral port) and, unless remoteHost is set, where requests go. Default 127.0.0.1. */
  host?: string;
  remoteHost?: string;
  /** Requests awaiting a reply; past it request() rejects with QueueFullError. Default 1024. */
  maxInFlight?: number;
  /** Default per-request timeout. */
  timeoutMs?: number;
  replyKey?: ReplyKeyFn;
  /** SO_RCVBUF request (the kernel may cap it at net.core.rmem_max). Default 2 MiB. */
  recvBufferSize?: number;
  /** Codecs for reply msgids outside the protocol's known set. */
  codecs?: ReadonlyMap<number, Codec<unknown>>;
  logger?: Logger;
}

export interface UdpRequestOptions<R extends number> {
  /** The msgid the reply must carry. */
  replyMsgid: R;
  /** The key the reply must carry (see ReplyKeyFn). */
  key: ReplyKey;
  timeoutMs?: number;
}

export interface UdpClientStats {
  requests: number;
  replies: number;
  timeouts: number;
  /** Replies matching no waiting request: late (after their timeout) or foreign. Ignored. */
  unmatched: number;
  /** Datagrams that were not one valid frame or whose body did not decode. Ignored. */
  malformed: number;
  rejectedFull: number;
  sendErrors: number;
}

interface Waiter {
  resolve(message: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * Request/reply over one UDP socket bound to an ephemeral port. Many requests may be in flight; each
 * reply is matched to its request by (reply msgid, key). Requests waiting on the same (msgid, key)
 * are all answered by the first matching reply (for route requests, which carry no sequence number,
 * that is the right answer for each of them).
 *
 * - Each request has a timeout; the TimeoutError is created when its timer is armed, so its stack
 *   names the caller (STYLE §7).
 * - At most `maxInFlight` requests wait at once: beyond, request() rejects with QueueFullError.
 * - The socket is referenced only while requests are waiting: an idle client never keeps the
 *   process alive; timers are unref()'d.
 * - close() rejects waiting requests with ClosedError; request()/send() afterwards fail the same way.
 *   Idempotent; destroy() is the same (nothing to drain on UDP).
 */
export class UdpClient {
  readonly stats: UdpClientStats = {
    requests: 0,
    replies: 0,
    timeouts: 0,
    unmatched: 0,
    malformed: 0,
    rejectedFull: 0,
    sendErrors: 0,
  };

  private readonly host: string;
  private readonly remoteHost: string;
  private readonly maxInFlight: number;
  private readonly timeoutMs: number;
  private readonly replyKey: ReplyKeyFn;
  private readonly extraCodecs: ReadonlyMap<number, Codec<unknown>> | undefined;
  private readonly logger: Logger;
  private readonly socket: Socket;
  private readonly waiting = new Map<string, Waiter[]>();
  private inFlight = 0;
  private bound = false;
  private _closed = false;
  private closing: Promise<void> | undefined;
  private sendErrorLogged = false;
  private readonly onSent: (err: Error | null) => void;

  constructor(options: UdpClientOptions = {}) {
    this.host = options.host ?? '127.0.0.1';
    this.remoteHost = options.remoteHost ?? this.host;
    this.maxInFlight = options.maxInFlight ?? DEFAULT_UDP_MAX_IN_FLIGHT;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_UDP_REQUEST_TIMEOUT_MS;
    this.replyKey = options.replyKey ?? seqOrRouteKey;
    this.extraCodecs = options.codecs;
    this.logger = options.logger ?? silentLogger;
    if (!(this.maxInFlight >= 1))
      throw new InvalidArgumentError(`maxInFlight ${this.maxInFlight} must be >= 1`);
    this.socket = createSocket({
      type: isIPv6(this.host) ? 'udp6' : 'udp4',
      recvBufferSize: options.recvBufferSize ?? DEFAULT_UDP_CLIENT_RECV_BUFFER_BYTES,
    });
    this.socket.on('message', (msg) => this.onMessage(msg));
    this.socket.on('error', (err) => this.onSocketError(err));
    this.onSent = (err) => {
      if (err) {
        this.stats.sendErrors += 1;
        if (!this.sendErrorLogged) {
          this.sendErrorLogged = true;
          this.logger.warn({ err: err.message }, 'udp send failed (further ones are only counted)');
        }
      }
    };
  }

  get closed(): boolean {
    return this._closed;
  }

  /** Requests waiting for a reply. */
  get pending(): number {
    return this.inFlight;
  }

  /** The local address, once bound (after the first request or send). */
  address(): { address: string; port: number } | undefined {
    if (!this.bound) return undefined;
    try {
      const a = this.socket.address();
      return { address: a.address, port: a.port };
    } catch {
      return undefined;
    }
  }

  /**
   * Sends `message` to `port` on the remote host and resolves with the first reply carrying
   * `opts.replyMsgid` and `opts.key`. Never throws: every failure is a rejection
   * (TimeoutError, QueueFullError, ClosedError, ProtocolError for an oversized message, or the
   * socket's error).
   */
  request<K extends KnownMsgId, R extends KnownMsgId>(
    port: number,
    msgid: K,
    message: MessageMap[K],
    opts: UdpRequestOptions<R>,
  ): Promise<MessageMap[R]>;
  request<R = unknown>(
    port: number,
    msgid: number,
    body: Uint8Array,
    opts: UdpRequestOptions<number> & { raw: true },
  ): Promise<R>;
  request(
    port: number,
    msgid: number,
    message: unknown,
    opts: UdpRequestOptions<number> & { raw?: boolean },
  ): Promise<unknown> {
    if (this._closed) return Promise.reject(new ClosedError('udp client is closed'));
    if (this.inFlight >= this.maxInFlight) {
      this.stats.rejectedFull += 1;
      return Promise.reject(
        new QueueFullError(
          `udp client: ${this.inFlight} requests already in flight (max ${this.maxInFlight})`,
        ),
      );
    }
    let frame: Buffer;
    try {
      frame = this.encode(msgid, message, opts.raw === true);
    } catch (err) {
      return Promise.reject(err);
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    // Created here, not in the timer callback, so the stack points at the caller.
    const timeoutError = new TimeoutError(
      `no reply (msgid ${opts.replyMsgid}, key ${opts.key}) from ${this.remoteHost}:${port} within ${timeoutMs} ms`,
    );
    const slot = `${opts.replyMsgid}|${opts.key}`;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.removeWaiter(slot, waiter);
          this.stats.timeouts += 1;
          reject(timeoutError);
        }, timeoutMs),
      };
      waiter.timer.unref();
      const list = this.waiting.get(slot);
      if (list === undefined) this.waiting.set(slot, [waiter]);
      else list.push(waiter);
      this.adjustInFlight(1);
      this.stats.requests += 1;
      this.transmit(frame, port);
    });
  }

  /** Fire-and-forget (e.g. ReportRequest). Throws ClosedError after close. */
  send<K extends KnownMsgId>(port: number, msgid: K, message: MessageMap[K]): void {
    if (this._closed) throw new ClosedError('udp client is closed');
    this.transmit(this.encode(msgid, message, false), port);
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this._closed = true;
    const err = new ClosedError('udp client closed');
    for (const list of this.waiting.values()) {
      for (const w of list) {
        clearTimeout(w.timer);
        w.reject(err);
      }
    }
    this.waiting.clear();
    this.inFlight = 0;
    this.closing = new Promise((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
    return this.closing;
  }

  destroy(): Promise<void> {
    return this.close();
  }

  private encode(msgid: number, message: unknown, raw: boolean): Buffer {
    if (raw) return encodeFrame(msgid, message as Uint8Array);
    if (!isKnownMsgId(msgid))
      throw new InvalidArgumentError(`msgid ${msgid} has no codec: use a raw request`);
    return encodeFrame(msgid, (codecs[msgid] as Codec<unknown>).encode(message));
  }

  private transmit(frame: Buffer, port: number): void {
    if (!this.bound) {
      // dgram queues sends issued while the bind is in progress.
      this.bound = true;
      this.socket.bind({ port: 0, address: this.host });
      if (this.inFlight === 0) this.socket.unref();
    }
    this.socket.send(frame, port, this.remoteHost, this.onSent);
  }

  private onMessage(datagram: Buffer): void {
    let msgid: number;
    let message: unknown;
    try {
      const frame = parseDatagram(datagram);
      msgid = frame.msgid;
      const codec = isKnownMsgId(msgid) ? (codecs[msgid] as Codec<unknown>) : this.extraCodecs?.get(msgid);
      if (codec === undefined) {
        this.stats.unmatched += 1;
        return;
      }
      message = codec.decode(frame.body);
    } catch {
      this.stats.malformed += 1;
      return;
    }
    const key = this.replyKey(msgid, message);
    const slot = `${msgid}|${key}`;
    const list = key === undefined ? undefined : this.waiting.get(slot);
    if (list === undefined) {
      this.stats.unmatched += 1;
      return;
    }
    this.waiting.delete(slot);
    this.adjustInFlight(-list.length);
    this.stats.replies += 1;
    for (const w of list) {
      clearTimeout(w.timer);
      w.resolve(message);
    }
  }

  private removeWaiter(slot: string, waiter: Waiter): void {
    const list = this.waiting.get(slot);
    if (list === undefined) return;
    const i = list.indexOf(waiter);
    if (i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) this.waiting.delete(slot);
    this.adjustInFlight(-1);
  }

  /** Keeps the socket referenced exactly while requests wait for replies. */
  private adjustInFlight(delta: number): void {
    const before = this.inFlight;
    this.inFlight = before + delta;
    if (!this.bound || this._closed) return;
    if (before === 0 && this.inFlight > 0) this.socket.ref();
    else if (before > 0 && this.inFlight === 0) this.socket.unref();
  }

  private onSocketError(err: Error): void {
    // A bind failure (or another socket-level error) fails every waiting request at once instead of
    // letting each of them time out.
    this.logger.warn({ err: err.message }, 'udp client socket error');
    for (const list of this.waiting.values()) {
      for (const w of list) {
        clearTimeout(w.timer);
        w.reject(err);
      }
    }
    this.waiting.clear();
    this.adjustInFlight(-this.inFlight);
  }
}
