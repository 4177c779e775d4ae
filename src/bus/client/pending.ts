import { TimeoutError } from '../../errors.js';

/** A request or control query waiting for its answer. */
export interface Waiting<T> {
  readonly id: number;
  /** The link generation it was written to (a lost connection fails exactly those). */
  readonly gen: number;
  readonly what: string;
  resolve(value: T): void;
  reject(err: Error): void;
}

/**
 * Answers awaited by id, each with a timeout and an optional AbortSignal. The TimeoutError is created
 * when the timer fires (capturing a stack per request cost more than the request itself, see
 * bench/RESULTS.md of the SDK); its message names what timed out. Timers are unref()'d.
 */
export class PendingTable<T> {
  private readonly entries = new Map<number, Entry<T>>();
  private nextId = 1;

  /** `timeout(what, ms)` builds the error of an entry whose time ran out. */
  constructor(readonly timeout: (what: string, ms: number) => Error = defaultTimeout) {}

  get size(): number {
    return this.entries.size;
  }

  allocate(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xfffffffe ? 1 : this.nextId + 1;
    return id;
  }

  add(id: number, gen: number, what: string, timeoutMs: number, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const e = new Entry<T>(this, id, gen, what, resolve, reject);
      this.entries.set(id, e);
      if (timeoutMs > 0) {
        e.timer = setTimeout(expire, timeoutMs, this, id, timeoutMs);
        e.timer.unref();
      }
      if (signal) {
        e.signal = signal;
        e.onAbort = () => this.fail(id, abortReason(signal));
        signal.addEventListener('abort', e.onAbort, { once: true });
      }
    });
  }

  /** Takes the entry (its timer and abort listener are released); undefined when unknown or finished. */
  take(id: number): Waiting<T> | undefined {
    const e = this.entries.get(id);
    if (e === undefined) return undefined;
    this.entries.delete(id);
    e.release();
    return e;
  }

  fail(id: number, err: Error): void {
    this.take(id)?.reject(err);
  }

  /** Fails every entry written to generation `gen` (or all with `gen` undefined). */
  failAll(err: Error, gen?: number): void {
    for (const e of [...this.entries.values()]) if (gen === undefined || e.gen === gen) this.fail(e.id, err);
  }
}

class Entry<T> implements Waiting<T> {
  timer: NodeJS.Timeout | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;

  constructor(
    readonly table: PendingTable<T>,
    readonly id: number,
    readonly gen: number,
    readonly what: string,
    readonly resolve: (value: T) => void,
    readonly reject: (err: Error) => void,
  ) {}

  release(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.signal && this.onAbort) this.signal.removeEventListener('abort', this.onAbort);
  }
}

function expire<T>(table: PendingTable<T>, id: number, ms: number): void {
  const e = table.take(id);
  e?.reject(table.timeout(e.what, ms));
}

function defaultTimeout(what: string, ms: number): Error {
  return new TimeoutError(`${what}: no answer within ${ms} ms`);
}

function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new DOMException('the operation was aborted', 'AbortError');
}
