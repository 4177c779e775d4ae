import type { LarsError } from '../../errors.js';
import type { ShmBuffer } from '../../shm/shm-buffer.js';
import { Control } from '../wire/control.js';
import { parseDataFrame, readU32, type DataFields } from '../wire/data-frame.js';
import { BusMsgId } from '../wire/msg-id.js';
import { BusMsg } from './bus-msg.js';
import type { ClientSide } from './client-side.js';
import { Subscription, type SubscribeOptions, type SubscriptionOwner } from './subscription.js';

/**
 * The client's subscriptions: SUB/UNSUB on the wire (replayed after every reconnect), and MSG frames
 * turned into BusMsg for the subscription they name.
 */
export class Subscriptions {
  private readonly subs = new Map<number, Subscription>();

  constructor(
    private readonly host: ClientSide,
    private readonly events: Pick<SubscriptionOwner, 'clientDrop' | 'callbackError'>,
  ) {}

  add(subject: string, opts: SubscribeOptions): Subscription {
    const owner: SubscriptionOwner = {
      unsubscribe: (s) => this.drop(s),
      clientDrop: (s, n) => this.events.clientDrop(s, n),
      callbackError: (err) => this.events.callbackError(err),
    };
    const sid = this.host.nextSid();
    const sub = new Subscription(owner, sid, subject, opts.queue ?? '', opts.exact === true, opts);
    this.subs.set(sid, sub);
    if (this.host.link.isConnected) this.host.link.stage(BusMsgId.Sub, frame(sub));
    return sub;
  }

  all(): Subscription[] {
    return [...this.subs.values()];
  }

  onMsg(buf: Uint8Array, start: number, len: number, fields: DataFields, shm?: ShmBuffer): void {
    const sub = this.subs.get(readU32(buf, start));
    if (sub === undefined || !parseDataFrame(buf, start, len, fields)) {
      void shm?.release();
      return;
    }
    const msg = new BusMsg(
      buf,
      fields,
      this.host.nameOf(readU32(buf, start + 4)),
      sub.subjects,
      undefined,
      shm,
    );
    // A shared-memory message nobody takes gives its reference back at once (issue 14).
    if (!sub.push(msg) && shm) void shm.release();
  }

  /** Stages every subscription again (a new connection, after HELLO). */
  replay(): void {
    for (const s of this.subs.values()) this.host.link.stage(BusMsgId.Sub, frame(s));
  }

  /** The bus refused subscription `sid`: its iterator ends with `err`. */
  refused(sid: number, err: LarsError): void {
    const s = this.subs.get(sid);
    if (!s) return;
    this.subs.delete(sid);
    s.end(err);
  }

  /** The client closed: every iterator ends (with `err` when the close was not requested). */
  endAll(err: LarsError | undefined): void {
    for (const s of this.subs.values()) s.end(err);
    this.subs.clear();
  }

  private drop(s: Subscription): void {
    if (!this.subs.delete(s.sid)) return;
    if (this.host.link.isConnected)
      this.host.link.stage(BusMsgId.Unsub, Control.unsub.encode({ sid: s.sid }));
  }
}

function frame(s: Subscription): Uint8Array {
  return Control.sub.encode({ sid: s.sid, subject: s.subject, queue: s.queueName, exact: s.exact });
}
