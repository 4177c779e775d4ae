import { InvalidArgumentError } from '../errors.js';

/**
 * A bounded FIFO that makes room by dropping its OLDEST item (a ring buffer: O(1) push and shift).
 * Used for frames sent while a client is disconnected: when the outage outlasts the queue, the
 * freshest state is what the peer needs (a newer report or request supersedes an older one).
 */
export class DropOldestQueue<T> {
  private readonly items: (T | undefined)[];
  private head = 0;
  private _length = 0;
  /** Items dropped to make room since construction. */
  dropped = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 0) {
      throw new InvalidArgumentError(`queue capacity ${capacity} must be a non-negative integer`);
    }
    this.items = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this._length;
  }

  /** Appends; returns the dropped oldest item when the queue was full (or `item` itself if capacity is 0). */
  push(item: T): T | undefined {
    const cap = this.capacity;
    if (cap === 0) {
      this.dropped += 1;
      return item;
    }
    if (this._length === cap) {
      const old = this.items[this.head];
      this.items[this.head] = item;
      this.head = (this.head + 1) % cap;
      this.dropped += 1;
      return old;
    }
    this.items[(this.head + this._length) % cap] = item;
    this._length += 1;
    return undefined;
  }

  shift(): T | undefined {
    if (this._length === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this._length -= 1;
    return item;
  }

  /** Empties the queue; returns how many items were discarded. */
  clear(): number {
    const n = this._length;
    this.items.fill(undefined);
    this.head = 0;
    this._length = 0;
    return n;
  }
}
