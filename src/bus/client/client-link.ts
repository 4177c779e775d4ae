import { createConnection, type Socket } from 'node:net';
import { FrameDecoder, type FrameVisitor } from '../../protocol/frame-decoder.js';
import { OutBuffer } from '../wire/out-buffer.js';

/** What the link reports to the client that owns it. */
export interface LinkHandler {
  /** The socket connected: stage HELLO and replays (they go out before anything already staged). */
  opened(): void;
  frame: FrameVisitor;
  /** A framing violation from the bus: the link is being destroyed. */
  violation(err: Error): void;
  /** The socket is gone (`err`: why, when known). */
  closed(err: Error | undefined): void;
  /** A write completed (the owner checks its 'drain' condition). */
  written(): void;
}

/**
 * The client's side of one bus connection at a time: dials the Unix socket, feeds the frame decoder,
 * and stages outbound frames in an OutBuffer written once per event-loop turn (publishes made in one
 * turn leave in one write). Staged bytes survive a disconnection (they are sent after the next HELLO),
 * so publishing while the bus restarts is buffered up to the owner's bound.
 */
export class ClientLink {
  readonly out = new OutBuffer(16 * 1024);
  /** Bumped for every socket: requests remember the one they were written to. */
  gen = 0;
  /** performance.now() of the last write (heartbeats are sent only when idle). */
  lastSentMs = 0;
  private socket: Socket | undefined;
  private connected = false;
  private flushScheduled = false;
  private readonly writes: Buffer[] = [];
  private readonly decoder: FrameDecoder;
  private readonly afterWrite: () => void;
  private readonly flushNow = (): void => this.flush();

  constructor(
    private readonly path: string,
    maxFrame: number,
    private readonly handler: LinkHandler,
  ) {
    this.decoder = new FrameDecoder({ maxBodyLen: maxFrame });
    this.afterWrite = () => {
      const b = this.writes.shift();
      if (b) this.out.recycle(b);
      this.handler.written();
    };
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** A socket exists (connected or still dialing): staged frames will go to generation `gen`. */
  get hasSocket(): boolean {
    return this.socket !== undefined;
  }

  /** Staged bytes plus bytes the socket has not handed to the kernel yet. */
  get pendingBytes(): number {
    return this.out.used + (this.socket?.writableLength ?? 0);
  }

  dial(): void {
    if (this.socket) return;
    this.gen += 1;
    this.decoder.reset();
    const socket = createConnection(this.path);
    this.socket = socket;
    let error: Error | undefined;
    socket.on('connect', () => {
      this.connected = true;
      // HELLO and the replays go out before anything staged while disconnected.
      const earlier = this.out.take();
      this.handler.opened();
      if (earlier) {
        this.out.appendBytes(earlier);
        this.out.recycle(earlier);
      }
      this.flush();
    });
    socket.on('data', (chunk: Buffer) => {
      this.decoder.visit(chunk, this.handler.frame);
      const failure = this.decoder.failure;
      if (failure) {
        this.handler.violation(failure);
        socket.destroy(failure);
      }
    });
    socket.on('error', (err: Error) => {
      error ??= err;
    });
    socket.on('close', () => {
      this.socket = undefined;
      this.connected = false;
      this.writes.length = 0;
      this.handler.closed(error);
    });
  }

  /** Stages a frame with an opaque body and schedules the write. */
  stage(msgid: number, body: Uint8Array): void {
    this.out.appendFrame(msgid, body);
    this.schedule();
  }

  /** Writes staged frames at the end of this event-loop turn. */
  schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushNow);
  }

  flush(): void {
    this.flushScheduled = false;
    const socket = this.socket;
    if (!this.connected || socket === undefined) return;
    const buf = this.out.take();
    if (buf === undefined) return;
    this.writes.push(buf);
    this.lastSentMs = performance.now();
    socket.write(buf, this.afterWrite);
  }

  /** Writes what is staged, then ends the socket; destroys it after `lingerMs`. */
  end(lingerMs: number): Promise<void> {
    const socket = this.socket;
    if (!socket) return Promise.resolve();
    this.flush();
    return new Promise((resolve) => {
      const timer = setTimeout(() => socket.destroy(), lingerMs);
      timer.unref();
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.end();
    });
  }

  destroy(): void {
    this.socket?.destroy();
  }
}
