/** A data frame as the link delivered it (a view of its chunk: chunks are never reused). */
interface Held {
  msgid: number;
  buf: Uint8Array;
  start: number;
  len: number;
}

/**
 * Keeps inbound data frames in order while a shared-memory message is being taken from lars shm
 * (RECV is a round trip): frames behind it wait, so a subscriber sees messages in the order the bus
 * sent them (FIFO per publisher, issue 14). `handle` returns a promise for a frame that must be
 * waited for, nothing for one handled at once. Bounded by the bus: it sends no more than its
 * per-connection queue limits.
 */
export class InboundGate {
  private readonly waiting: Held[] = [];
  private busy = false;

  constructor(
    private readonly handle: (
      msgid: number,
      buf: Uint8Array,
      start: number,
      len: number,
    ) => Promise<void> | void,
  ) {}

  push(msgid: number, buf: Uint8Array, start: number, len: number): void {
    if (this.busy) {
      this.waiting.push({ msgid, buf, start, len });
      return;
    }
    this.run(msgid, buf, start, len);
  }

  /** Frames still waiting are dropped (the connection they came on is gone). */
  clear(): void {
    this.waiting.length = 0;
  }

  private run(msgid: number, buf: Uint8Array, start: number, len: number): void {
    const p = this.handle(msgid, buf, start, len);
    if (p === undefined) return;
    this.busy = true;
    const next = (): void => {
      this.busy = false;
      while (!this.busy && this.waiting.length > 0) {
        const h = this.waiting.shift()!;
        this.run(h.msgid, h.buf, h.start, h.len);
      }
    };
    p.then(next, next);
  }
}
