import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import { ClosedError, ErrorCode, type ProtocolError } from '../errors.js';
import { LogLimiter } from '../log/log-limiter.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { tracer } from '../log/trace.js';
import {
  codecs,
  encodeFrame,
  parseDatagram,
  type Codec,
  type KnownMsgId,
  type MessageMap,
} from '../protocol/index.js';
import { nativeSockets, nativeUdp, type NativeUdp } from '../native/native-addon.js';
import { BatchReceiver, type BatchSource } from './udp-batch-receiver.js';
import type { DispatchObserver, FrameDispatcher } from './dispatcher.js';
import { takeInheritedFd } from './inherited-sockets.js';
import { ipv4ToNumber, numericLookup } from './udp-address.js';
import { nextTransportId, type RemoteAddress, type Transport } from './transport.js';

const trace = tracer('net');

/** Bursts of requests arrive at the agent's ports: ask the kernel for a roomy receive buffer. */
export const DEFAULT_UDP_RECV_BUFFER_BYTES = 4 * 1024 * 1024;

export interface UdpEndpointOptions {
  host: string;
  /** 0 picks a free port; bind() resolves with the real one. */
  port: number;
  dispatcher: FrameDispatcher<UdpPeer>;
  logger?: Logger;
  /**
   * SO_RCVBUF request. Default 4 MiB. With the native addon the endpoint asks with SO_RCVBUFFORCE,
   * which a privileged process gets even above net.core.rmem_max; otherwise the kernel caps it there.
   */
  recvBufferSize?: number;
  sendBufferSize?: number;
  /**
   * Drop malformed and oversized datagrams in the kernel (issue 11): with the native addon, a socket
   * filter keeps only datagrams that are exactly one frame of at most `maxLen` bytes, so junk never
   * takes receive-buffer space from real requests nor wakes the process. Such drops are counted by
   * the kernel (`kernelDrops`), not in `malformed`. Without the addon the endpoint drops them itself.
   */
  datagramFilter?: { maxLen: number };
  /**
   * Sees every well-sized datagram before the generic parse and dispatch (issue 17: the agent answers
   * get_host and report from here without allocating). Returns true when it handled the datagram;
   * false hands it, untouched, to the generic path. It must not throw.
   */
  fastPath?: (datagram: Buffer, rinfo: RemoteInfo, endpoint: UdpEndpoint) => boolean;
  /**
   * Read datagrams in batches through the native addon (recvmmsg, no objects per datagram; issue 17)
   * instead of node:dgram, when the addon is there and the host is IPv4. Datagrams longer than the
   * datagram filter's maxLen (64 KiB without a filter) are dropped as malformed.
   */
  batchReceive?: boolean;
}

export interface UdpEndpointStats {
  datagramsIn: number;
  datagramsOut: number;
  /** Dropped: shorter than a header, bad length, or size != 8 + msglen. */
  malformed: number;
  /** Dropped: the body did not decode (or a handler declared it a protocol violation). */
  badBody: number;
  unknownMsgid: number;
  handlerErrors: number;
  sendErrors: number;
}

/**
 * The sender of one datagram, handed to handlers as `ctx`: `reply()` (alias of `send()`) answers to
 * the datagram's source address (DESIGN §2). UDP has no connection, so `close()` does nothing and
 * `closed` mirrors the endpoint; `id` is the endpoint's.
 */
export class UdpPeer implements Transport {
  constructor(
    private readonly endpoint: UdpEndpoint,
    readonly remote: RemoteAddress & { readonly port: number },
  ) {}

  get id(): number {
    return this.endpoint.id;
  }

  get closed(): boolean {
    return this.endpoint.closed;
  }

  send<K extends KnownMsgId>(msgid: K, message: MessageMap[K]): void {
    this.endpoint.sendTo(
      this.remote.port,
      this.remote.address,
      msgid,
      (codecs[msgid] as Codec<MessageMap[K]>).encode(message),
    );
  }

  reply<K extends KnownMsgId>(msgid: K, message: MessageMap[K]): void {
    this.send(msgid, message);
  }

  sendRaw(msgid: number, body: Uint8Array): void {
    this.endpoint.sendTo(this.remote.port, this.remote.address, msgid, body);
  }

  close(): void {}
}

/**
 * A UDP endpoint serving Lars frames: exactly one frame per datagram (protocol parseDatagram),
 * dispatched by msgid. Malformed datagrams and undecodable bodies are dropped and counted, unknown
 * msgids counted; none of them affects the next datagram. Sends are fire-and-forget: a send error is
 * counted (and the first one logged), it never throws into the handler.
 *
 * close() (alias destroy()) unbinds; idempotent; sends afterwards throw ClosedError.
 */
export class UdpEndpoint {
  readonly id = nextTransportId();
  readonly stats: UdpEndpointStats = {
    datagramsIn: 0,
    datagramsOut: 0,
    malformed: 0,
    badBody: 0,
    unknownMsgid: 0,
    handlerErrors: 0,
    sendErrors: 0,
  };

  private readonly options: UdpEndpointOptions;
  private readonly logger: Logger;
  /** node:dgram socket; undefined in batch mode (the addon reads and writes the descriptor). */
  private readonly socket: Socket | undefined;
  private batch: BatchReceiver | undefined;
  private readonly batchUdp: NativeUdp | undefined;
  private readonly observer: DispatchObserver<UdpPeer>;
  private readonly onSent: (err: Error | null) => void;
  private bound: Promise<RemoteAddress> | undefined;
  private _closed = false;
  private closing: Promise<void> | undefined;
  private readonly warnings: LogLimiter<'malformed' | 'handler' | 'send'>;
  /** The socket's descriptor when it was inherited or created natively (filter, drop counter). */
  private fd: number | undefined;
  private filtered = false;

  constructor(options: UdpEndpointOptions) {
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.warnings = new LogLimiter(this.logger);
    const udp = options.batchReceive && isIPv4(options.host) ? nativeUdp() : undefined;
    this.batchUdp = udp && nativeSockets() ? udp : undefined;
    this.socket = this.batchUdp
      ? undefined
      : createSocket({ type: isIPv6(options.host) ? 'udp6' : 'udp4', lookup: numericLookup });
    const stats = this.stats;
    this.observer = {
      unknownMsgid(msgid, peer) {
        stats.unknownMsgid += 1;
        trace?.(`udp: unknown msgid ${msgid} from ${peer.remote.address}:${peer.remote.port}`);
      },
      protocolError: (err: ProtocolError, msgid, peer) => {
        stats.badBody += 1;
        this.warnLimited(
          'malformed',
          { msgid, from: `${peer.remote.address}:${peer.remote.port}`, code: err.code },
          'malformed datagram dropped',
        );
      },
      handlerError: (err, msgid) => {
        stats.handlerErrors += 1;
        this.warnLimited('handler', { msgid, err }, 'udp message handler failed');
      },
    };
    this.onSent = (err) => {
      if (err) {
        stats.sendErrors += 1;
        this.warnLimited('send', { err: err.message }, 'udp send failed');
      }
    };
    this.socket?.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
  }

  /** Datagrams are read in batches by the native addon (see batchReceive). */
  get batched(): boolean {
    return this.batchUdp !== undefined;
  }

  get closed(): boolean {
    return this._closed;
  }

  /** Binds the socket. Idempotent (same promise); rejects with ClosedError after close. */
  bind(): Promise<RemoteAddress> {
    if (this._closed) return Promise.reject(new ClosedError('udp endpoint is closed'));
    if (this.bound) return this.bound;
    if (this.batchUdp) {
      this.bound = new Promise((resolve, reject) => {
        try {
          resolve(this.bindBatched(this.batchUdp!));
        } catch (err) {
          reject(err as Error);
        }
      });
      return this.bound;
    }
    const socket = this.socket!;
    this.bound = new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      socket.once('error', onError);
      const onBound = (): void => {
        socket.off('error', onError);
        socket.on('error', (err) => this.logger.error({ err }, 'udp socket error'));
        this.applyBufferSizes();
        const a = socket.address();
        this.logger.info(
          { host: a.address, port: a.port, inherited, filtered: this.filtered },
          'udp endpoint bound',
        );
        resolve({ address: a.address, port: a.port, family: a.family });
      };
      let inherited = false;
      try {
        // Under `lars up` the master holds the socket across restarts (inherited-sockets.ts).
        const fd = takeInheritedFd('udp', this.options.host, this.options.port);
        inherited = fd !== undefined;
        this.fd = fd ?? this.nativeFd();
      } catch (err) {
        reject(err as Error);
        return;
      }
      if (this.fd !== undefined) {
        this.prepareFd(this.fd);
        socket.bind({ fd: this.fd, exclusive: true }, onBound);
      } else {
        socket.bind({ port: this.options.port, address: this.options.host }, onBound);
      }
    });
    return this.bound;
  }

  /** Batch mode: the descriptor (inherited or made by the addon), its filter and buffer, the watcher. */
  private bindBatched(udp: NativeUdp): RemoteAddress {
    const sockets = nativeSockets()!;
    const fd = takeInheritedFd('udp', this.options.host, this.options.port);
    const inherited = fd !== undefined;
    this.fd = fd ?? sockets.bindUdp(this.options.host, this.options.port);
    this.prepareFd(this.fd);
    this.applyBufferSizes();
    const port = udp.udpLocalPort(this.fd);
    const slot = this.options.datagramFilter?.maxLen ?? 65536;
    this.batch = new BatchReceiver(
      udp,
      this.fd,
      slot,
      (view, len, source) => this.onBatchDatagram(view, len, source),
      (err) => this.logger.error({ err }, 'udp receive failed'),
    );
    this.batch.start();
    this.logger.info(
      { host: this.options.host, port, inherited, filtered: this.filtered, batched: true },
      'udp endpoint bound',
    );
    return { address: this.options.host, port, family: 'IPv4' };
  }

  /**
   * Datagrams the kernel dropped for this socket (the filter's, and a full receive buffer's), when
   * it can tell (native addon); undefined otherwise.
   */
  get kernelDrops(): number | undefined {
    const sockets = nativeSockets();
    if (this.fd === undefined || this._closed || !sockets) return undefined;
    try {
      return sockets.socketDrops(this.fd);
    } catch {
      return undefined;
    }
  }

  /** A natively created socket when a filter is wanted and the addon is there (throws EADDRINUSE...). */
  private nativeFd(): number | undefined {
    const sockets = nativeSockets();
    if (!this.options.datagramFilter || !sockets) return undefined;
    return sockets.bindUdp(this.options.host, this.options.port);
  }

  private prepareFd(fd: number): void {
    const sockets = nativeSockets();
    const filter = this.options.datagramFilter;
    if (!sockets) return;
    try {
      if (filter) {
        sockets.attachDatagramFilter(fd, filter.maxLen);
        this.filtered = true;
      }
    } catch (err) {
      this.logger.warn(
        { err },
        'could not attach the datagram filter: malformed datagrams are dropped in user space',
      );
    }
  }

  /** @internal Used by UdpPeer. Throws ClosedError after close. */
  sendTo(port: number, address: string, msgid: number, body: Uint8Array): void {
    if (this._closed) throw new ClosedError('udp endpoint is closed');
    const frame = encodeFrame(msgid, body);
    if (this.batch) return this.sendBatched(frame, frame.length, ipv4ToNumber(address), port);
    this.stats.datagramsOut += 1;
    this.socket!.send(frame, port, address, this.onSent);
  }

  /**
   * Sends `len` bytes of an already framed datagram. The bytes are handed to the socket as they are:
   * the caller gives a buffer it does not reuse. Throws ClosedError after close.
   */
  sendFrameTo(port: number, address: string, frame: Buffer, len: number): void {
    if (this._closed) throw new ClosedError('udp endpoint is closed');
    if (this.batch) return this.sendBatched(frame, len, ipv4ToNumber(address), port);
    this.stats.datagramsOut += 1;
    this.socket!.send(frame, 0, len, port, address, this.onSent);
  }

  /**
   * Answers the datagram being handled (`from` is the rinfo handed to the fast path): in batch mode
   * straight to its numeric source, without formatting an address. Throws ClosedError after close.
   */
  replyFrame(from: RemoteInfo, frame: Buffer, len: number): void {
    if (this._closed) throw new ClosedError('udp endpoint is closed');
    if (this.batch && from === this.batch.source)
      this.sendBatched(frame, len, this.batch.source.ip, from.port);
    else this.sendFrameTo(from.port, from.address, frame, len);
  }

  /** sendto through the addon; a full send buffer or any other failure is counted, never thrown. */
  private sendBatched(frame: Uint8Array, len: number, ip: number | undefined, port: number): void {
    const sent = ip === undefined ? -1 : this.batch!.sendTo(frame, 0, len, ip, port);
    if (sent >= 0) {
      this.stats.datagramsOut += 1;
      return;
    }
    this.stats.sendErrors += 1;
    this.warnLimited('send', { errno: -sent, port }, 'udp send failed');
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this._closed = true;
    if (this.batchUdp) {
      this.batch?.stop();
      if (this.fd !== undefined) {
        try {
          nativeSockets()!.closeFd(this.fd);
        } catch {
          // Never bound (bind failed): nothing to release.
        }
      }
      this.closing = Promise.resolve();
      return this.closing;
    }
    const socket = this.socket!;
    this.closing = new Promise((resolve) => {
      try {
        socket.close(() => resolve());
      } catch {
        // Already closed by a failed bind: nothing left to release.
        resolve();
      }
    });
    return this.closing;
  }

  destroy(): Promise<void> {
    return this.close();
  }

  /** Batch mode: the fast path sees the view; the generic path gets its own copy and rinfo. */
  private onBatchDatagram(view: Buffer, len: number, source: BatchSource): void {
    if (this._closed) return;
    this.stats.datagramsIn += 1;
    if (len < 0) {
      this.stats.malformed += 1;
      this.warnLimited('malformed', { from: source.address }, 'malformed datagram dropped (truncated)');
      return;
    }
    if (this.options.fastPath?.(view, source, this)) return;
    this.dispatchGeneric(Buffer.from(view), {
      address: source.address,
      family: 'IPv4',
      port: source.port,
      size: len,
    });
  }

  private onMessage(datagram: Buffer, rinfo: RemoteInfo): void {
    if (this._closed) return;
    this.stats.datagramsIn += 1;
    if (this.options.fastPath?.(datagram, rinfo, this)) return;
    this.dispatchGeneric(datagram, rinfo);
  }

  /** Parse, count and dispatch one datagram the fast path left alone. */
  private dispatchGeneric(datagram: Buffer, rinfo: RemoteInfo): void {
    let msgid: number;
    let body: Uint8Array;
    try {
      ({ msgid, body } = parseDatagram(datagram));
    } catch (err) {
      this.stats.malformed += 1;
      this.warnLimited(
        'malformed',
        {
          from: `${rinfo.address}:${rinfo.port}`,
          size: datagram.length,
          code: (err as ProtocolError).code ?? ErrorCode.DATAGRAM_SIZE,
        },
        'malformed datagram dropped',
      );
      return;
    }
    this.options.dispatcher.dispatch(msgid, body, new UdpPeer(this, rinfo), this.observer);
  }

  private applyBufferSizes(): void {
    const size = this.options.recvBufferSize ?? DEFAULT_UDP_RECV_BUFFER_BYTES;
    const sockets = nativeSockets();
    try {
      if (this.fd !== undefined && sockets) sockets.setRecvBuffer(this.fd, size);
      else this.socket?.setRecvBufferSize(size);
      if (this.options.sendBufferSize !== undefined)
        this.socket?.setSendBufferSize(this.options.sendBufferSize);
    } catch (err) {
      this.logger.warn({ err }, 'could not set udp socket buffer sizes');
    }
  }

  /** A flood must not flood logs: see LogLimiter (the counters hold the exact numbers). */
  private warnLimited(kind: 'malformed' | 'handler' | 'send', obj: object, msg: string): void {
    if (!this.warnings.warn(kind, obj, msg)) trace?.(`udp: ${msg}`);
  }
}
