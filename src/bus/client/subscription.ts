import { ClosedError, type LarsError } from '../../errors.js';
import type { BusMsg } from './bus-msg.js';
import { SubjectCache } from './bus-msg.js';

/** Messages a subscription's iterator may hold before the oldest unread ones are kept and new ones dropped. */
export const DEFAULT_SUB_MAX_PENDING = 65_536;

export interface SubscribeOptions {
  /** Queue group: subscribers sharing a queue name get each message once between them. */
  queue?: string;
  /** NATS semantics: `a.b` receives only `a.b` (default: `a.b` and every descendant `a.b.c…`). */
  exact?: boolean;
  /** Called for each message instead of queueing it for the async iterator (fastest). */
  callback?: (msg: BusMsg) => void;
  /** Iterator queue bound; past it messages are dropped and reported ('slowConsumer'). */
  maxPending?: number;
}

/** What the client does for a subscription (kept narrow so the subscription stays testable). */
export interface SubscriptionOwner {
  unsubscribe(sub: Subscription): void;
  clientDrop(sub: Subscription, dropped: number): void;
  callbackError(err: unknown): void;
}

/**
 * A subscription: an async iterable of messages (or a callback), bounded. `unsubscribe()` ends it:
 * the iterator finishes after the messages already queued. A subscription the bus refused ends with
 * that error (the iterator throws it): it never looks like silence (P3).
 */
export class Subscription implements AsyncIterable<BusMsg> {
  /** @internal Decodes subjects of this subscription's messages. */
  readonly subjects = new SubjectCache();
  private readonly queue: (BusMsg | undefined)[] = [];
  private head = 0;
  private waiter: ((r: IteratorResult<BusMsg>) => void) | undefined;
  private failWaiter: ((err: Error) => void) | undefined;
  private _received = 0;
  private _dropped = 0;
  private episodeDropped = 0;
  private ended = false;
  private error: LarsError | undefined;
  private readonly maxPending: number;
  private readonly callback: ((msg: BusMsg) => void) | undefined;

  constructor(
    private readonly owner: SubscriptionOwner,
    readonly sid: number,
    readonly subject: string,
    readonly queueName: string,
    readonly exact: boolean,
    options: SubscribeOptions,
  ) {
    this.maxPending = options.maxPending ?? DEFAULT_SUB_MAX_PENDING;
    this.callback = options.callback;
  }

  /** Messages received. */
  get received(): number {
    return this._received;
  }

  /** Messages dropped by this client because the iterator fell behind (the bus reports its own). */
  get dropped(): number {
    return this._dropped;
  }

  get closed(): boolean {
    return this.ended;
  }

  unsubscribe(): void {
    if (this.ended) return;
    this.owner.unsubscribe(this);
    this.end();
  }

  /** @internal Returns false when the message was not taken (ended, or dropped: queue full). */
  push(msg: BusMsg): boolean {
    if (this.ended) return false;
    this._received += 1;
    if (this.callback) {
      try {
        this.callback(msg);
      } catch (err) {
        this.owner.callbackError(err);
      }
      return true;
    }
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      this.failWaiter = undefined;
      waiter({ value: msg, done: false });
      return true;
    }
    if (this.queue.length - this.head >= this.maxPending) {
      this._dropped += 1;
      this.episodeDropped += 1;
      return false;
    }
    this.queue.push(msg);
    return true;
  }

  /** @internal Ends the iterator (after queued messages), with an error if the bus refused it. */
  end(err?: LarsError): void {
    if (this.ended) return;
    this.ended = true;
    this.error = err;
    if (this.waiter && this.head === this.queue.length) {
      const w = this.waiter;
      const f = this.failWaiter;
      this.waiter = undefined;
      this.failWaiter = undefined;
      if (err && f) f(err);
      else w({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<BusMsg> {
    return {
      next: () => this.next(),
      return: () => {
        this.unsubscribe();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  private next(): Promise<IteratorResult<BusMsg>> {
    if (this.callback)
      return Promise.reject(new ClosedError('a subscription with a callback cannot be iterated'));
    if (this.head < this.queue.length) {
      const msg = this.queue[this.head] as BusMsg;
      this.queue[this.head] = undefined;
      this.head += 1;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      this.reportDrops();
      return Promise.resolve({ value: msg, done: false });
    }
    if (this.ended)
      return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
    this.reportDrops();
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.failWaiter = reject;
    });
  }

  /** One 'slowConsumer' report per episode, once the reader has caught up to half the bound. */
  private reportDrops(): void {
    if (this.episodeDropped === 0 || (this.queue.length - this.head) * 2 > this.maxPending) return;
    const n = this.episodeDropped;
    this.episodeDropped = 0;
    this.owner.clientDrop(this, n);
  }
}
