import { ErrorCode, InvalidArgumentError, ProtocolError, QueueFullError } from '../../errors.js';
import { writeHandle } from '../../shm/handle.js';
import { ShmBuffer } from '../../shm/shm-buffer.js';
import {
  dataFrameLength,
  encodeHeaders,
  PayloadKind,
  SHM_HANDLE_BYTES,
  SHM_OPT_KEEP,
  SHM_PUB_PAYLOAD_BYTES,
  writeDataFrame,
} from '../wire/data-frame.js';
import type { ClientLink } from './client-link.js';

/**
 * Encodes the client's data frames (PUB, REQ, REP) straight into the link's staging buffer: one
 * bounds check, no Buffer per message. Publishes and requests are bounded by `maxOutboundBytes`
 * (LARS_ERR_QUEUE_FULL, then `drained()` says when to resume); replies are bounded by the bus's
 * request credits instead. A ShmBuffer payload travels as its handle (issue 14), whatever its size.
 */
export class DataOut {
  /** The bus's max_payload, known after HELLO_OK. */
  maxPayload: number | undefined;
  private needDrain = false;

  constructor(
    private readonly link: ClientLink,
    private readonly name: string,
    private readonly maxOutboundBytes: number,
  ) {}

  stage(
    msgid: number,
    id: number,
    aux: number,
    flags: number,
    subject: string,
    data: Uint8Array | string | ShmBuffer,
    headers: Record<string, string> | undefined,
    bounded: boolean,
    keep = false,
  ): void {
    if (data instanceof ShmBuffer)
      return this.stageShm(msgid, id, aux, flags, subject, data, headers, bounded, keep);
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
    this.stagePayload(msgid, id, aux, flags, subject, payload, headers, bounded, PayloadKind.INLINE);
  }

  /**
   * A shared-memory buffer goes by reference (issue 14): its 16-byte handle and an options byte.
   * Unless `keep`, the buffer is no longer this process's once staged (the bus moves the reference).
   */
  private stageShm(
    msgid: number,
    id: number,
    aux: number,
    flags: number,
    subject: string,
    buf: ShmBuffer,
    headers: Record<string, string> | undefined,
    bounded: boolean,
    keep: boolean,
  ): void {
    buf.check();
    buf.flush();
    const payload = Buffer.allocUnsafe(SHM_PUB_PAYLOAD_BYTES);
    writeHandle(payload, 0, buf.handle);
    payload[SHM_HANDLE_BYTES] = keep ? SHM_OPT_KEEP : 0;
    this.stagePayload(msgid, id, aux, flags, subject, payload, headers, bounded, PayloadKind.SHM);
    if (!keep) buf.markSent();
  }

  private stagePayload(
    msgid: number,
    id: number,
    aux: number,
    flags: number,
    subject: string,
    payload: Uint8Array,
    headers: Record<string, string> | undefined,
    bounded: boolean,
    kind: number,
  ): void {
    let hdr: Uint8Array | undefined;
    if (headers !== undefined) {
      const h = encodeHeaders(headers);
      if (typeof h === 'string') throw new InvalidArgumentError(h);
      hdr = h.length > 0 ? h : undefined;
    }
    if (this.maxPayload !== undefined && payload.length > this.maxPayload)
      throw new ProtocolError(
        ErrorCode.MESSAGE_TOO_LARGE,
        `payload of ${payload.length} bytes is over the bus's max_payload of ${this.maxPayload} bytes`,
      );
    const need = dataFrameLength(subject.length, hdr?.length ?? 0, payload.length);
    if (bounded && this.link.pendingBytes + need > this.maxOutboundBytes) {
      this.needDrain = true;
      throw new QueueFullError(
        `bus client ${this.name}: ${this.link.pendingBytes} bytes waiting to be sent (max ${this.maxOutboundBytes}); wait for 'drain'`,
      );
    }
    const out = this.link.out;
    const target = out.reserve(need);
    out.commit(writeDataFrame(target, out.used, msgid, id, aux, flags, subject, hdr, payload, kind), 1);
    this.link.schedule();
  }

  /** After a write completed: true, once, when a refused publisher may resume ('drain'). */
  drained(): boolean {
    if (!this.needDrain || this.link.pendingBytes > this.maxOutboundBytes / 2) return false;
    this.needDrain = false;
    return true;
  }
}
