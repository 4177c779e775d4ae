import type { RemoteInfo } from 'node:dgram';
import type { NativeUdp } from '../native/native-addon.js';

/** Datagrams read per recvmmsg (the addon's maximum). */
const BATCH = 64;
/** recvmmsg calls per wake-up at most, so one busy socket cannot starve the rest of the event loop. */
const BATCHES_PER_WAKE = 4;

/**
 * The source of the datagram being handled, reused for every datagram (no object per datagram). It
 * reads like dgram's RemoteInfo; `address` is formatted only when somebody asks for it (the generic
 * path), the hot path replies through `ip` and `port`.
 */
export class BatchSource implements RemoteInfo {
  ip = 0;
  port = 0;
  size = 0;
  readonly family = 'IPv4' as const;

  get address(): string {
    const ip = this.ip;
    return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
  }
}

/**
 * Drains a non-blocking IPv4 UDP socket in batches (issue 17): one JavaScript call per wake-up,
 * recvmmsg into one fixed buffer, each datagram handed on as a view of it with a shared source.
 * `onDatagram` must not keep the view past its return (the buffer is refilled by the next batch).
 * A length of -1 is a truncated datagram (longer than `slot`) or a non-IPv4 source.
 */
export class BatchReceiver {
  readonly source = new BatchSource();
  private readonly buf: Buffer;
  private readonly meta = new Int32Array(BATCH * 4);
  private watcher: unknown;

  constructor(
    private readonly udp: NativeUdp,
    private readonly fd: number,
    private readonly slot: number,
    private readonly onDatagram: (view: Buffer, len: number, source: BatchSource) => void,
    private readonly onError: (err: unknown) => void,
  ) {
    this.buf = Buffer.allocUnsafe(slot * BATCH);
  }

  start(): void {
    this.watcher ??= this.udp.udpWatch(this.fd, () => this.drain());
  }

  stop(): void {
    if (this.watcher !== undefined) this.udp.udpUnwatch(this.watcher);
    this.watcher = undefined;
  }

  /** Sends `len` bytes of `buf` from `offset` to ip:port; bytes sent or -errno. */
  sendTo(buf: Uint8Array, offset: number, len: number, ip: number, port: number): number {
    return this.udp.udpSendTo(this.fd, buf, offset, len, ip, port);
  }

  private drain(): void {
    const { buf, meta, slot, source } = this;
    for (let b = 0; b < BATCHES_PER_WAKE && this.watcher !== undefined; b++) {
      let n: number;
      try {
        n = this.udp.udpRecvBatch(this.fd, buf, slot, meta);
      } catch (err) {
        this.onError(err);
        return;
      }
      for (let i = 0; i < n; i++) {
        const len = meta[4 * i]!;
        source.ip = meta[4 * i + 1]! >>> 0;
        source.port = meta[4 * i + 2]!;
        source.size = len;
        const at = i * slot;
        this.onDatagram(buf.subarray(at, at + (len < 0 ? 0 : len)), len, source);
      }
      if (n < BATCH) return;
    }
  }
}
