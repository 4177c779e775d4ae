import { ErrorCode, InvalidArgumentError, ProtocolError, QueueFullError } from '../../errors.js';
import { dataFrameLength, encodeHeaders, writeDataFrame } from '../wire/data-frame.js';
import type { ClientLink } from './client-link.js';

/**
 * Encodes the client's data frames (PUB, REQ, REP) straight into the link's staging buffer: one
 * bounds check, no Buffer per message. Publishes and requests are bounded by `maxOutboundBytes`
 * (LARS_ERR_QUEUE_FULL, then `drained()` says when to resume); replies are bounded by the bus's
 * request credits instead.
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
    data: Uint8Array | string,
    headers: Record<string, string> | undefined,
    bounded: boolean,
  ): void {
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
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
    out.commit(writeDataFrame(target, out.used, msgid, id, aux, flags, subject, hdr, payload), 1);
    this.link.schedule();
  }

  /** After a write completed: true, once, when a refused publisher may resume ('drain'). */
  drained(): boolean {
    if (!this.needDrain || this.link.pendingBytes > this.maxOutboundBytes / 2) return false;
    this.needDrain = false;
    return true;
  }
}
