import type { Socket } from 'node:net';
import { ClosedError, ConnectionError, ErrorCode, ShmError } from '../errors.js';
import { FrameWriter } from '../net/frame-writer.js';
import { FrameDecoder } from '../protocol/frame-decoder.js';
import { decodeReply, encodeRequest, type ShmNotice, type ShmRequest } from './wire-codec.js';
import { ShmMsg, statusCode } from './wire-ids.js';

/** Outbound bytes a client may have queued before its link is cut (the daemon is not reading). */
export const CLIENT_MAX_OUTBOUND_BYTES = 8 * 1024 * 1024;

interface Pending {
  reqid: number;
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
}

/**
 * One connection to the daemon: pipelined requests, replies matched in order (the daemon answers
 * strictly in request order, so a reply that is not for the oldest pending request is a protocol
 * violation that ends the link), unsolicited NOTICE frames handed to `onNotice`. When the socket
 * closes, every pending request fails with NOT_CONNECTED and `onClose` runs once.
 */
export class ShmLink {
  private readonly decoder = new FrameDecoder();
  private readonly writer: FrameWriter;
  private readonly pending: Pending[] = [];
  private head = 0;
  private lastReqid = 0;
  private closedReason: Error | undefined;
  private readonly closed: Promise<void>;

  constructor(
    private readonly socket: Socket,
    private readonly onNotice: (n: ShmNotice) => void,
    onClose: (reason: Error) => void,
  ) {
    this.writer = new FrameWriter(socket, CLIENT_MAX_OUTBOUND_BYTES);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) =>
      this.fail(
        new ConnectionError(ErrorCode.NOT_CONNECTED, `lars shm connection failed: ${err.message}`, {
          cause: err,
        }),
      ),
    );
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.fail(new ConnectionError(ErrorCode.NOT_CONNECTED, 'connection to lars shm lost'));
        onClose(this.closedReason!);
        resolve();
      });
    });
  }

  get isClosed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Sends a request; resolves with the reply payload, rejects with ShmError for an error status. */
  request(req: ShmRequest): Promise<Buffer> {
    if (this.closedReason) return Promise.reject(this.closedReason);
    this.lastReqid = (this.lastReqid + 1) >>> 0;
    const reqid = this.lastReqid;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.push({ reqid, resolve, reject });
      if (!this.writer.append(req.cmd, encodeRequest(reqid, req))) {
        this.destroy(new ConnectionError(ErrorCode.SLOW_PEER, 'lars shm is not reading our requests'));
      }
    });
  }

  /** Flushes queued requests, ends the connection; resolves once the socket is closed. */
  end(): Promise<void> {
    if (!this.closedReason) {
      this.writer.flush();
      this.socket.end();
      const t = setTimeout(() => this.socket.destroy(), 2_000);
      t.unref();
    }
    return this.closed;
  }

  destroy(reason?: Error): Promise<void> {
    this.fail(reason ?? new ClosedError('shm client closed'));
    this.writer.discard();
    this.socket.destroy();
    return this.closed;
  }

  private onData(chunk: Buffer): void {
    for (const f of this.decoder.push(chunk)) {
      if (f.msgid === ShmMsg.REPLY) this.onReply(f.body);
      else if (f.msgid === ShmMsg.NOTICE) this.notice(f.body);
      // Other msgids (a newer daemon's) are skipped.
    }
    if (this.decoder.failure) this.destroy(this.decoder.failure);
  }

  private onReply(body: Uint8Array): void {
    let reply;
    try {
      reply = decodeReply(body);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    const p = this.pending[this.head];
    if (!p || p.reqid !== reply.reqid) {
      this.destroy(
        new ShmError(
          ErrorCode.SHM_INVALID_ARGUMENT,
          `reply ${reply.reqid} out of order (expected ${p?.reqid ?? 'none'})`,
        ),
      );
      return;
    }
    this.pending[this.head] = undefined as unknown as Pending;
    this.head += 1;
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
    if (reply.status === 0) p.resolve(Buffer.from(reply.payload));
    else p.reject(new ShmError(statusCode(reply.status), reply.payload.toString('utf8')));
  }

  private notice(body: Uint8Array): void {
    try {
      this.onNotice(JSON.parse(Buffer.from(body).toString('utf8')) as ShmNotice);
    } catch {
      // A malformed notice is ignored: it carries no reply anyone waits for.
    }
  }

  private fail(reason: Error): void {
    this.closedReason ??= reason;
    const waiting = this.pending.slice(this.head);
    this.pending.length = 0;
    this.head = 0;
    for (const p of waiting) p?.reject(this.closedReason);
  }
}
