import { isIP, Socket } from 'node:net';
import { ClosedError, ConnectionError, ErrorCode, ProtocolError, TimeoutError } from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { tracer } from '../log/trace.js';
import {
  codecs,
  FrameDecoder,
  MAX_BODY_LEN,
  type Codec,
  type KnownMsgId,
  type MessageMap,
} from '../protocol/index.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import type { DispatchObserver, FrameDispatcher } from './dispatcher.js';
import { DropOldestQueue } from './drop-oldest-queue.js';
import { FrameWriter } from './frame-writer.js';
import { nextTransportId, type RemoteAddress, type Transport } from './transport.js';

const trace = tracer('net');

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = { initialMs: 100, maxMs: 10_000, jitter: 0.2 };
export const DEFAULT_MAX_QUEUED_FRAMES = 1024;
export const DEFAULT_CLIENT_MAX_OUTBOUND_BYTES = 8 * 1024 * 1024;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** How long close() waits for the server to close its side after our end before destroying. */
export const DEFAULT_CLIENT_LINGER_MS = 2_000;

export interface TcpClientOptions {
  host: string;
  port: number;
  backoff?: BackoffOptions;
  /** Frames kept while disconnected; past it the oldest is dropped. Default 1024. */
  maxQueuedFrames?: number;
  /** Outbound cap while connected; past it the connection is cut (and redialled). Default 8 MiB. */
  maxOutboundBytes?: number;
  connectTimeoutMs?: number;
  lingerMs?: number;
  logger?: Logger;
  dispatcher: FrameDispatcher<TcpClient>;
  /**
   * Fires on every (re)connect, before frames queued while disconnected are flushed (so a
   * re-subscription goes out first). Frames it sends leave in the same write as the queue.
   */
  onConnect?: (client: TcpClient) => void;
  /** Fires once per established connection that ended; `reason` undefined for an orderly close. */
  onDisconnect?: (client: TcpClient, reason: Error | undefined) => void;
  /**
   * Connect on demand: a send() while idle dials (start() is not needed), and after a connection
   * ends the client redials only while frames are queued or `stayConnected()` is true; otherwise it
   * goes back to 'idle' until the next send(). Servers cut connections that complete no frame within
   * their handshake_timeout (issue 11), so a link with nothing to say must not hold one open.
   */
  onDemand?: { stayConnected(): boolean };
}

export interface TcpClientStats {
  connects: number;
  disconnects: number;
  dialFailures: number;
  /** Frames currently waiting for a connection. */
  queued: number;
  /** Frames dropped: oldest evicted from a full queue, or still queued at close/destroy. */
  dropped: number;
  framesIn: number;
  framesOut: number;
  unknownMsgid: number;
  protocolErrors: number;
  handlerErrors: number;
  slowPeerCuts: number;
}

export type TcpClientState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'closing' | 'closed';

interface QueuedFrame {
  readonly msgid: number;
  readonly body: Uint8Array;
}

/**
 * A reconnecting TCP client speaking Lars frames; inbound frames go through the same Dispatcher as
 * on the server (the context is the client itself).
 *
 * - start() works whether or not the server is listening: the client dials, and on failure or
 *   disconnect redials forever after Backoff delays (exponential, jittered). Exactly one dial is in
 *   flight at any time; each dial gets a fresh socket with its own listeners, and the old one is
 *   dropped whole, so nothing accumulates across reconnects.
 * - send() while connected writes (batched like the server); while not connected it queues.
 *   Queue policy: bounded by maxQueuedFrames; when full the OLDEST frame is dropped and counted in
 *   `stats.dropped` (fresh state beats stale). Frames in flight when a connection breaks are lost:
 *   callers that need delivery re-send from onConnect.
 * - close(): stop redialling, flush what is written, end the connection and resolve when the socket is
 *   closed; frames still queued for a connection that does not exist are dropped (counted).
 *   destroy(): the same without flushing. Both idempotent; send() afterwards throws ClosedError.
 * - Every timer is unref()'d: a waiting client never keeps the process alive.
 */
export class TcpClient implements Transport {
  readonly id = nextTransportId();
  readonly remote: RemoteAddress;
  readonly stats: TcpClientStats = {
    connects: 0,
    disconnects: 0,
    dialFailures: 0,
    queued: 0,
    dropped: 0,
    framesIn: 0,
    framesOut: 0,
    unknownMsgid: 0,
    protocolErrors: 0,
    handlerErrors: 0,
    slowPeerCuts: 0,
  };

  private readonly options: TcpClientOptions;
  private readonly logger: Logger;
  private readonly backoff: Backoff;
  private readonly queue: DropOldestQueue<QueuedFrame>;
  private readonly decoder = new FrameDecoder();
  private readonly observer: DispatchObserver<TcpClient>;
  private readonly maxOutboundBytes: number;
  private _state: TcpClientState = 'idle';
  private socket: Socket | undefined;
  private writer: FrameWriter | undefined;
  private reason: Error | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private redialTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private established = false;
  /** close() came while dialling with frames queued: send them once connected, then end. */
  private flushOnConnect = false;
  private handlerErrorLogged = false;
  private outageLogged = false;
  private closing: Promise<void> | undefined;
  private resolveClosing: (() => void) | undefined;

  constructor(options: TcpClientOptions) {
    this.options = options;
    this.logger = (options.logger ?? silentLogger).child({ client: `${options.host}:${options.port}` });
    this.backoff = new Backoff(options.backoff ?? DEFAULT_BACKOFF);
    this.queue = new DropOldestQueue(options.maxQueuedFrames ?? DEFAULT_MAX_QUEUED_FRAMES);
    this.maxOutboundBytes = options.maxOutboundBytes ?? DEFAULT_CLIENT_MAX_OUTBOUND_BYTES;
    const family = isIP(options.host);
    this.remote = {
      address: options.host,
      port: options.port,
      family: family === 6 ? 'IPv6' : family === 4 ? 'IPv4' : '',
    };
    const stats = this.stats;
    this.observer = {
      unknownMsgid(msgid) {
        stats.unknownMsgid += 1;
        trace?.(`client: unknown msgid ${msgid} skipped`);
      },
      protocolError: (err: ProtocolError) => this.protocolViolation(err),
      handlerError: (err, msgid) => {
        stats.handlerErrors += 1;
        if (!this.handlerErrorLogged) {
          this.handlerErrorLogged = true;
          this.logger.error(
            { msgid, err },
            'message handler failed (further failures on this connection are only counted)',
          );
        }
      },
    };
  }

  get state(): TcpClientState {
    return this._state;
  }

  get connected(): boolean {
    return this._state === 'connected';
  }

  /** True after close() or destroy(); a merely disconnected client is not closed (it queues). */
  get closed(): boolean {
    return this._state === 'closing' || this._state === 'closed';
  }

  /** Starts dialling. Idempotent; throws ClosedError after close. */
  start(): this {
    if (this.closed) throw new ClosedError('tcp client is closed');
    if (this._state === 'idle') this.dial();
    return this;
  }

  send<K extends KnownMsgId>(msgid: K, message: MessageMap[K]): void {
    if (this.closed) throw new ClosedError('tcp client is closed');
    this.push(msgid, (codecs[msgid] as Codec<MessageMap[K]>).encode(message));
  }

  sendRaw(msgid: number, body: Uint8Array): void {
    if (this.closed) throw new ClosedError('tcp client is closed');
    this.push(msgid, body);
  }

  /** Graceful shutdown (see class comment). Transport contract: `reason` is only traced. */
  close(reason?: Error): Promise<void> {
    if (this.closing) return this.closing;
    trace?.(`client closing${reason ? ` (${reason.message})` : ''}`);
    const socket = this.socket;
    if (this._state === 'connecting' && socket !== undefined && this.queue.length > 0) {
      // Frames sent just before close() while the (on-demand) dial is in flight, e.g. an agent's
      // last statistics: delivered once connected, then the connection ends (bounded by lingerMs).
      const done = this.beginClose(true);
      this.lingerTimer = setTimeout(destroySocket, this.options.lingerMs ?? DEFAULT_CLIENT_LINGER_MS, socket);
      this.lingerTimer.unref();
      return done;
    }
    const done = this.beginClose();
    if (socket !== undefined && this.writer !== undefined) {
      this.writer.flush();
      socket.end();
      this.lingerTimer = setTimeout(destroySocket, this.options.lingerMs ?? DEFAULT_CLIENT_LINGER_MS, socket);
      this.lingerTimer.unref();
    } else if (socket !== undefined) {
      socket.destroy();
    }
    this.maybeFinishClose();
    return done;
  }

  /** Abortive shutdown: queued and unflushed frames are discarded. Idempotent. */
  destroy(err?: Error): Promise<void> {
    const done = this.beginClose();
    this.reason ??= err;
    this.dropWriter();
    this.socket?.destroy();
    this.maybeFinishClose();
    return done;
  }

  /** `flushOnConnect`: keep the queue for the dial in flight (see close()); otherwise drop it. */
  private beginClose(flushOnConnect = false): Promise<void> {
    if (!this.closing) {
      this.closing = new Promise((resolve) => {
        this.resolveClosing = resolve;
      });
      this.transition('closing');
      this.clearTimer('redialTimer');
      this.flushOnConnect = flushOnConnect;
      if (!flushOnConnect) this.dropQueue();
    }
    return this.closing;
  }

  private dropQueue(): void {
    const n = this.queue.clear();
    this.stats.dropped += n;
    this.stats.queued = 0;
  }

  private maybeFinishClose(): void {
    if (this._state !== 'closing' || this.socket !== undefined) return;
    // A dial that never connected (or a destroy) leaves what close() kept for it undelivered.
    this.flushOnConnect = false;
    this.dropQueue();
    this.clearTimer('lingerTimer');
    this.transition('closed');
    this.resolveClosing?.();
  }

  private push(msgid: number, body: Uint8Array): void {
    // Checked here, at the caller, so an oversized frame never waits in the queue to throw later
    // from the flush on reconnect.
    if (body.length > MAX_BODY_LEN) {
      throw new ProtocolError(
        ErrorCode.MESSAGE_TOO_LARGE,
        `message body of ${body.length} bytes exceeds the ${MAX_BODY_LEN}-byte frame limit (msgid ${msgid})`,
      );
    }
    const writer = this.writer;
    if (writer !== undefined && this._state === 'connected') {
      if (writer.append(msgid, body)) {
        this.stats.framesOut += 1;
      } else {
        this.cutSlowPeer(writer);
      }
      return;
    }
    if (this.queue.push({ msgid, body }) !== undefined) this.stats.dropped += 1;
    this.stats.queued = this.queue.length;
    if (this._state === 'idle' && this.options.onDemand) this.dial();
  }

  private dial(): void {
    this.redialTimer = undefined;
    this.transition('connecting');
    this.reason = undefined;
    const socket = new Socket({ allowHalfOpen: false });
    this.socket = socket;
    const connectTimeout = new TimeoutError(
      `connect to ${this.options.host}:${this.options.port} timed out after ${this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS} ms`,
    );
    this.connectTimer = setTimeout(
      destroySocket,
      this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      socket,
      connectTimeout,
    );
    this.connectTimer.unref();
    socket.once('connect', () => this.onConnected(socket));
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', (err: Error) => {
      if (socket === this.socket) this.reason ??= err;
    });
    socket.on('close', () => this.onSocketClose(socket));
    socket.connect({ host: this.options.host, port: this.options.port });
  }

  private onConnected(socket: Socket): void {
    if (socket === this.socket && this._state === 'closing' && this.flushOnConnect) {
      this.flushQueueAndEnd(socket);
      return;
    }
    if (socket !== this.socket || this._state !== 'connecting') return;
    this.clearTimer('connectTimer');
    socket.setNoDelay(true);
    this.decoder.reset();
    this.handlerErrorLogged = false;
    this.established = true;
    const writer = new FrameWriter(socket, this.maxOutboundBytes);
    this.writer = writer;
    this.stats.connects += 1;
    if (this.outageLogged || this.backoff.attempts > 0) {
      this.logger.info({ attempts: this.backoff.attempts }, 'connected');
    }
    this.outageLogged = false;
    this.backoff.reset();
    this.transition('connected');
    writer.beginBatch();
    try {
      this.options.onConnect?.(this);
    } catch (err) {
      this.logger.error({ err }, 'onConnect hook failed');
    }
    // A slow-peer cut during the flush unsets this.writer; the rest then stays queued.
    while (this.writer === writer && this.queue.length > 0) {
      const f = this.queue.shift()!;
      this.push(f.msgid, f.body);
    }
    this.stats.queued = this.queue.length;
    writer.endBatch();
  }

  private flushQueueAndEnd(socket: Socket): void {
    this.clearTimer('connectTimer');
    this.flushOnConnect = false;
    const writer = new FrameWriter(socket, this.maxOutboundBytes);
    writer.beginBatch();
    while (this.queue.length > 0) {
      const f = this.queue.shift()!;
      if (!writer.append(f.msgid, f.body)) {
        this.stats.dropped += 1 + this.queue.length;
        this.queue.clear();
        break;
      }
      this.stats.framesOut += 1;
    }
    this.stats.queued = 0;
    writer.endBatch();
    socket.end();
  }

  private onData(socket: Socket, chunk: Buffer): void {
    if (socket !== this.socket || this._state !== 'connected') return;
    const frames = this.decoder.push(chunk);
    const n = frames.length;
    if (n > 0) {
      const writer = this.writer!;
      const { dispatcher } = this.options;
      writer.beginBatch();
      for (let i = 0; i < n && socket === this.socket && !socket.destroyed; i++) {
        const f = frames[i]!;
        this.stats.framesIn += 1;
        dispatcher.dispatch(f.msgid, f.body, this, this.observer);
      }
      writer.endBatch();
    }
    const failure = this.decoder.failure;
    if (failure !== undefined) this.protocolViolation(failure);
  }

  private protocolViolation(err: ProtocolError): void {
    const socket = this.socket;
    if (socket === undefined || socket.destroyed) return;
    this.stats.protocolErrors += 1;
    this.logger.warn({ code: err.code, err: err.message }, 'protocol violation from server: reconnecting');
    this.reason ??= err;
    this.dropWriter();
    socket.destroy();
  }

  private cutSlowPeer(writer: FrameWriter): void {
    this.stats.slowPeerCuts += 1;
    const pending = writer.pendingBytes;
    this.logger.warn({ pending, limit: this.maxOutboundBytes }, 'server not reading: connection cut');
    this.reason ??= new ConnectionError(
      ErrorCode.SLOW_PEER,
      `${pending} outbound bytes pending to ${this.options.host}:${this.options.port}, limit ${this.maxOutboundBytes}`,
    );
    this.dropWriter();
    this.socket?.destroy();
  }

  /** After a cut, sends queue for the next connection instead of hitting a dead writer. */
  private dropWriter(): void {
    this.writer?.discard();
    this.writer = undefined;
  }

  private onSocketClose(socket: Socket): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    this.clearTimer('connectTimer');
    const wasConnected = this.established;
    this.established = false;
    this.dropWriter();
    const reason = this.reason;
    const onDemand = this.options.onDemand;
    // On demand with nothing queued and no reason to stay: idle until the next send().
    const goIdle =
      !this.closed && onDemand !== undefined && this.queue.length === 0 && !onDemand.stayConnected();
    if (wasConnected) {
      this.stats.disconnects += 1;
      if (goIdle) {
        this.logger.debug({ err: reason?.message }, 'disconnected: idle until there is something to send');
      } else if (!this.closed) {
        this.logger.warn({ err: reason?.message }, 'disconnected: will reconnect');
        this.outageLogged = true;
      }
      try {
        this.options.onDisconnect?.(this, reason);
      } catch (err) {
        this.logger.error({ err }, 'onDisconnect hook failed');
      }
    } else if (!this.closed) {
      this.stats.dialFailures += 1;
      if (!this.outageLogged) {
        // One line per outage, not one per failed dial.
        this.outageLogged = true;
        this.logger.warn({ err: reason?.message }, 'cannot connect: retrying with backoff');
      }
    }
    if (this.closed) {
      this.maybeFinishClose();
      return;
    }
    if (goIdle) {
      this.transition('idle');
      return;
    }
    const delay = this.backoff.next();
    this.transition('waiting');
    trace?.(`client redial in ${delay} ms (attempt ${this.backoff.attempts})`);
    this.redialTimer = setTimeout(redial, delay, this);
    this.redialTimer.unref();
  }

  /** @internal timer callback */
  redialNow(): void {
    if (this._state === 'waiting') this.dial();
  }

  private transition(to: TcpClientState): void {
    trace?.(`client ${this.options.host}:${this.options.port} ${this._state} -> ${to}`);
    this._state = to;
  }

  private clearTimer(name: 'connectTimer' | 'redialTimer' | 'lingerTimer'): void {
    const t = this[name];
    if (t !== undefined) {
      clearTimeout(t);
      this[name] = undefined;
    }
  }
}

function redial(client: TcpClient): void {
  client.redialNow();
}

function destroySocket(socket: Socket, err?: Error): void {
  socket.destroy(err);
}
