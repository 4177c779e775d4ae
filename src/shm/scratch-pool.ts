/** Most bytes of file-mode scratch buffers a client keeps for reuse. */
export const SCRATCH_MAX_BYTES = 64 * 1024 * 1024;
/** Most buffers kept per block size. */
export const SCRATCH_PER_SIZE = 4;

/**
 * File mode only: reusable process memory for ShmBuffer.bytes(). A fresh multi-megabyte Buffer costs
 * a page fault per 4 KiB on first touch (more than the copy itself); reusing the buffers of released
 * or sent blocks keeps file-mode hand-offs at two copies (pwrite, pread). Bounded by count per size
 * and total bytes; what does not fit is left to the garbage collector.
 */
export class ScratchPool {
  private readonly free = new Map<number, Buffer[]>();
  private bytes = 0;

  /** A buffer of exactly `capacity` bytes (content unspecified). */
  take(capacity: number): Buffer {
    const list = this.free.get(capacity);
    const b = list?.pop();
    if (b) {
      this.bytes -= capacity;
      return b;
    }
    return Buffer.allocUnsafeSlow(capacity);
  }

  give(b: Buffer): void {
    const list = this.free.get(b.length) ?? [];
    if (list.length >= SCRATCH_PER_SIZE || this.bytes + b.length > SCRATCH_MAX_BYTES) return;
    list.push(b);
    this.free.set(b.length, list);
    this.bytes += b.length;
  }

  clear(): void {
    this.free.clear();
    this.bytes = 0;
  }
}
