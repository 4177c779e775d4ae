import { ClosedError, type ProtocolError } from '../errors.js';
import {
  codecs,
  encodeFrame,
  parseDatagram,
  type Codec,
  type KnownMsgId,
  type MessageMap,
} from '../protocol/index.js';
import type { DispatchObserver, FrameDispatcher } from './dispatcher.js';
import { nextTransportId, type RemoteAddress, type Transport } from './transport.js';

export interface MemoryTransportStats {
  framesIn: number;
  framesOut: number;
  unknownMsgid: number;
  protocolErrors: number;
  handlerErrors: number;
}

/**
 * One end of an in-memory connection (STYLE §2): protocol code (agent, dns, reporter handlers) can be
 * exercised without sockets. Frames are encoded and parsed exactly as on the wire and delivered to
 * the other end's dispatcher on a later microtask, so handlers never re-enter each other.
 * A protocol violation closes both ends, as on TCP. Build pairs with `memoryPair()`.
 */
export class MemoryTransport implements Transport {
  readonly id = nextTransportId();
  readonly stats: MemoryTransportStats = {
    framesIn: 0,
    framesOut: 0,
    unknownMsgid: 0,
    protocolErrors: 0,
    handlerErrors: 0,
  };
  /** Why this end was closed (undefined while open or for a plain close()). */
  closeReason: Error | undefined;
  /** Errors thrown by handlers on this end, for tests to assert on. */
  readonly handlerErrors: unknown[] = [];

  private peer: MemoryTransport | undefined;
  private _closed = false;
  private readonly observer: DispatchObserver<MemoryTransport>;

  constructor(
    private readonly dispatcher: FrameDispatcher<MemoryTransport>,
    readonly remote: RemoteAddress,
  ) {
    this.observer = {
      unknownMsgid: () => {
        this.stats.unknownMsgid += 1;
      },
      protocolError: (err: ProtocolError) => {
        this.stats.protocolErrors += 1;
        this.close(err);
      },
      handlerError: (err) => {
        this.stats.handlerErrors += 1;
        this.handlerErrors.push(err);
      },
    };
  }

  get closed(): boolean {
    return this._closed;
  }

  send<K extends KnownMsgId>(msgid: K, message: MessageMap[K]): void {
    this.sendRaw(msgid, (codecs[msgid] as Codec<MessageMap[K]>).encode(message));
  }

  sendRaw(msgid: number, body: Uint8Array): void {
    if (this._closed) throw new ClosedError(`memory transport ${this.id} is closed`);
    const frame = encodeFrame(msgid, body);
    const peer = this.peer;
    this.stats.framesOut += 1;
    queueMicrotask(() => peer?.receive(frame));
  }

  /** Closes both ends (frames already in flight are still delivered). Idempotent. */
  close(reason?: Error): void {
    if (this._closed) return;
    this._closed = true;
    this.closeReason = reason;
    this.peer?.close();
  }

  /** @internal */
  connect(peer: MemoryTransport): void {
    this.peer = peer;
  }

  private receive(frame: Buffer): void {
    const { msgid, body } = parseDatagram(frame);
    this.stats.framesIn += 1;
    this.dispatcher.dispatch(msgid, body, this, this.observer);
  }
}

/** Two connected in-memory ends: frames sent on `a` are handled by `b`'s dispatcher and vice versa. */
export function memoryPair(
  aDispatcher: FrameDispatcher<MemoryTransport>,
  bDispatcher: FrameDispatcher<MemoryTransport>,
): [MemoryTransport, MemoryTransport] {
  const a = new MemoryTransport(aDispatcher, { address: 'memory-b', port: 0, family: 'memory' });
  const b = new MemoryTransport(bDispatcher, { address: 'memory-a', port: 0, family: 'memory' });
  a.connect(b);
  b.connect(a);
  return [a, b];
}
