/**
 * The side channel of the shm hand-off benchmark: a Unix socket between sender and receiver that
 * carries either a batch id (shared-memory modes) or the whole payload (the socket anchor), and the
 * receiver's acknowledgement. Pure framing, no I/O.
 *
 *   sender -> receiver  'B' u8 mode, u32 seq, u32 batchId         (10 bytes)
 *                       'P' u8 0,    u32 seq, u32 len, len bytes  (10 + len bytes)
 *   receiver -> sender  u32 seq                                   (4 bytes)
 */
export const HEAD = 10;
export const MODE_ADDON = 0;
export const MODE_FILE = 1;

export type ChannelMessage =
  { kind: 'B'; mode: number; seq: number; batchId: number } | { kind: 'P'; seq: number; payload: Buffer };

export function batchMessage(mode: number, seq: number, batchId: number): Buffer {
  const b = Buffer.allocUnsafe(HEAD);
  b.write('B', 0, 'latin1');
  b.writeUInt8(mode, 1);
  b.writeUInt32LE(seq, 2);
  b.writeUInt32LE(batchId, 6);
  return b;
}

export function payloadHead(seq: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(HEAD);
  b.write('P', 0, 'latin1');
  b.writeUInt8(0, 1);
  b.writeUInt32LE(seq, 2);
  b.writeUInt32LE(len, 6);
  return b;
}

/** Reassembles messages from chunks. A payload split over chunks is joined once (one copy), as a real receiver would. */
export class ChannelDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private head: Buffer | undefined;
  private need = HEAD;

  push(chunk: Buffer): ChannelMessage[] {
    const out: ChannelMessage[] = [];
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes >= this.need) {
      const all =
        this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
      const take = all.subarray(0, this.need);
      const rest = all.subarray(this.need);
      this.pending = rest.length ? [rest] : [];
      this.pendingBytes = rest.length;
      if (!this.head) {
        if (take.toString('latin1', 0, 1) === 'B') {
          out.push({
            kind: 'B',
            mode: take.readUInt8(1),
            seq: take.readUInt32LE(2),
            batchId: take.readUInt32LE(6),
          });
          continue;
        }
        this.head = Buffer.from(take);
        this.need = take.readUInt32LE(6);
        continue;
      }
      out.push({ kind: 'P', seq: this.head.readUInt32LE(2), payload: take });
      this.head = undefined;
      this.need = HEAD;
    }
    return out;
  }
}
