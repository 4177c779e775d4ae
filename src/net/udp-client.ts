// Used by the client SDK: imports nothing but protocol, errors and log (DESIGN §7, STYLE §5).
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import {
  ClosedError,
  ConnectionError,
  ErrorCode,
  InvalidArgumentError,
  QueueFullError,
  TimeoutError,
} from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
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
  /** Create each request's TimeoutError when it starts, so its stack names the caller. Default false. */
  captureStacks?: boolean;
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
  slot: Slot;
  port: number;
  /** performance.now() after which the request times out. */
  deadline: number;
  /** Set when stacks are captured at arm time (captureStacks); otherwise built on expiry. */
  error: TimeoutError | undefined;
  describe: string;
}

interface PortSocket {
  socket: Socket;
  connected: boolean;
  /** Frames sent before the socket finished connecting (bounded by maxInFlight). */
  queue: Buffer[];
}

/** Map key of a waiting request: a number for numeric reply keys (no string per request). */
type Slot = number | string;

function slotOf(msgid: number, key: ReplyKey): Slot {
  return typeof key === 'number' && key >= 0 && key <= 0xffffffff
    ? msgid * 4294967296 + key
    : `${msgid}|${key}`;
}

/** Longest wait between two timeout sweeps; a request times out at most this late. */
const MAX_SWEEP_MS = 50;

/**
 * Request/reply over one UDP socket bound to an ephemeral port. Many requests may be in flight; each
 * reply is matched to its request by (reply msgid, key). Requests waiting on the same (msgid, key)
 * are all answered by the first matching reply (for route requests, which carry no sequence number,
 * that is the right answer for each of them).
 *
 * - Each request has a timeout. One sweep timer serves every waiting request (a timer per request
 *   cost more than the rest of the request). The TimeoutError is built when the request expires:
 *   capturing a stack when a request starts costs about 3 µs, a third of the per-request budget at
 *   100k requests/s, so it is opt-in (`captureStacks: true` creates it when the request is armed,
 *   so its stack names the caller, STYLE §7). Without it the message names the request.
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
  /** One connected socket per destination port (as the original C++ API): see transmit(). */
  private readonly sockets = new Map<number, PortSocket>();
  private readonly recvBufferSize: number;
  private readonly waiting = new Map<Slot, Waiter[]>();
  /** Every waiting request, for the timeout sweep. */
  private readonly armed = new Set<Waiter>();
  private readonly captureStacks: boolean;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepEveryMs = Infinity;
  private inFlight = 0;
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
    this.captureStacks = options.captureStacks ?? false;
    if (!(this.maxInFlight >= 1))
      throw new InvalidArgumentError(`maxInFlight ${this.maxInFlight} must be >= 1`);
    this.recvBufferSize = options.recvBufferSize ?? DEFAULT_UDP_CLIENT_RECV_BUFFER_BYTES;
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

  /** The local address of the socket used for `port` (or the first one), once one exists. */
  address(port?: number): { address: string; port: number } | undefined {
    const ps = port !== undefined ? this.sockets.get(port) : this.sockets.values().next().value;
    if (ps === undefined) return undefined;
    try {
      const a = ps.socket.address();
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
    const describe = `no reply (msgid ${opts.replyMsgid}, key ${opts.key}) from ${this.remoteHost}:${port} within ${timeoutMs} ms`;
    const slot = slotOf(opts.replyMsgid, opts.key);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        slot,
        port,
        deadline: performance.now() + timeoutMs,
        error: this.captureStacks ? new TimeoutError(describe) : undefined,
        describe,
      };
      this.armed.add(waiter);
      this.ensureSweep(timeoutMs);
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
    for (const list of this.waiting.values()) for (const w of list) w.reject(err);
    this.waiting.clear();
    this.armed.clear();
    this.stopSweep();
    this.inFlight = 0;
    const closes = [...this.sockets.values()].map(
      (ps) =>
        new Promise<void>((resolve) => {
          try {
            ps.socket.close(() => resolve());
          } catch {
            resolve();
          }
        }),
    );
    this.sockets.clear();
    this.closing = Promise.all(closes).then(() => undefined);
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

  /**
   * Sends through a socket connected to `port` (one per port, as the original C++ API did): a
   * connected socket skips the per-datagram address lookup (about 30% cheaper per send here), only
   * accepts datagrams from that peer, and reports ECONNREFUSED when nothing listens there.
   */
  private transmit(frame: Buffer, port: number): void {
    let ps = this.sockets.get(port);
    if (ps === undefined) ps = this.openSocket(port);
    if (ps.connected) {
      ps.socket.send(frame, this.onSent);
    } else if (ps.queue.length < this.maxInFlight) {
      ps.queue.push(frame);
    } else {
      this.stats.sendErrors += 1;
    }
  }

  private openSocket(port: number): PortSocket {
    const socket = createSocket({
      type: isIPv6(this.host) ? 'udp6' : 'udp4',
      recvBufferSize: this.recvBufferSize,
    });
    const ps: PortSocket = { socket, connected: false, queue: [] };
    this.sockets.set(port, ps);
    socket.on('message', (msg) => this.onMessage(msg));
    socket.on('error', (err) => this.onSocketError(err, port));
    // Bound to the wildcard address: the kernel picks the source address that reaches the agent
    // (binding the agent's own address fails when the agent is on another machine).
    socket.bind({ port: 0 }, () => {
      if (this._closed) return;
      socket.connect(port, this.remoteHost, () => {
        ps.connected = true;
        for (const frame of ps.queue) socket.send(frame, this.onSent);
        ps.queue = [];
      });
    });
    if (this.inFlight === 0) socket.unref();
    return ps;
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
    const list = key === undefined ? undefined : this.waiting.get(slotOf(msgid, key));
    if (list === undefined) {
      this.stats.unmatched += 1;
      return;
    }
    this.waiting.delete(list[0]!.slot);
    this.adjustInFlight(-list.length);
    this.stats.replies += 1;
    for (const w of list) {
      this.armed.delete(w);
      w.resolve(message);
    }
  }

  /** Runs the sweep at least every timeoutMs / 4 (and every MAX_SWEEP_MS at the most). */
  private ensureSweep(timeoutMs: number): void {
    const every = Math.max(1, Math.min(MAX_SWEEP_MS, Math.floor(timeoutMs / 4)));
    if (this.sweepTimer !== undefined && every >= this.sweepEveryMs) return;
    this.stopSweep();
    this.sweepEveryMs = every;
    // unref()'d: while requests wait, the referenced socket keeps the process alive.
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  private stopSweep(): void {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.sweepEveryMs = Infinity;
  }

  private sweep(): void {
    const now = performance.now();
    for (const w of this.armed) {
      if (w.deadline > now) continue;
      this.armed.delete(w);
      this.removeWaiter(w.slot, w);
      this.stats.timeouts += 1;
      w.reject(w.error ?? new TimeoutError(w.describe));
    }
    if (this.armed.size === 0) this.stopSweep();
  }

  private removeWaiter(slot: Slot, waiter: Waiter): void {
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
    if (this._closed) return;
    if (before === 0 && this.inFlight > 0) for (const ps of this.sockets.values()) ps.socket.ref();
    else if (before > 0 && this.inFlight === 0) for (const ps of this.sockets.values()) ps.socket.unref();
  }

  private onSocketError(err: Error, port: number): void {
    const code = (err as NodeJS.ErrnoException).code;
    // ECONNREFUSED: nothing listens on that port (an ICMP port-unreachable came back); the socket
    // stays usable. Anything else (a failed bind or connect): the socket is dropped, so the next
    // request opens a new one. Either way that port's requests fail now instead of timing out.
    const failure = new ConnectionError(
      ErrorCode.NOT_CONNECTED,
      code === 'ECONNREFUSED'
        ? `nothing listens at ${this.remoteHost}:${port} (ECONNREFUSED)`
        : `cannot reach ${this.remoteHost}:${port}: ${err.message}`,
      { cause: err },
    );
    if (code !== 'ECONNREFUSED') {
      this.logger.warn({ err: err.message, port }, 'udp client socket error');
      const ps = this.sockets.get(port);
      if (ps) {
        this.sockets.delete(port);
        try {
          ps.socket.close();
        } catch {
          // already closed
        }
      }
    }
    for (const w of [...this.armed]) {
      if (w.port !== port) continue;
      this.armed.delete(w);
      this.removeWaiter(w.slot, w);
      w.reject(failure);
    }
    if (this.armed.size === 0) this.stopSweep();
  }
}
