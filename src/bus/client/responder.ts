import type { ShmBuffer } from '../../shm/shm-buffer.js';
import type { BusMsg } from './bus-msg.js';

/**
 * What a handler may return: the reply payload (with optional headers), or nothing (empty reply).
 * A ShmBuffer goes back by reference (issue 14); it is no longer the handler's unless `keep`.
 */
export type BusReply =
  | Uint8Array
  | string
  | ShmBuffer
  | void
  | undefined
  | { data?: Uint8Array | string | ShmBuffer; headers?: Record<string, string>; keep?: boolean };

export type BusHandler = (req: BusMsg) => BusReply | Promise<BusReply>;

export interface ServeOptions {
  /** Label shown in queries (every server of a topic shares its requests round robin). */
  queue?: string;
  /** Requests the bus may hand this server at once (credits); default the bus's (256). */
  concurrency?: number;
}

/** What the client does for a responder. */
export interface ResponderOwner {
  unserve(r: BusResponder): void;
}

/**
 * A served topic (seed RegisterRPC): `handler` answers each request the bus relays here. The reply is
 * what it returns; a throw becomes LARS_ERR_BUS_HANDLER at the caller, with the thrown error's code
 * and message. `stop()` unregisters the topic; requests already running still reply.
 */
export class BusResponder {
  private _handled = 0;
  private _failed = 0;
  /** @internal Requests being handled. */
  inFlight = 0;
  private idle: (() => void)[] = [];
  private stopped = false;

  constructor(
    private readonly owner: ResponderOwner,
    readonly sid: number,
    readonly topic: string,
    readonly queue: string,
    readonly concurrency: number,
    readonly handler: BusHandler,
  ) {}

  get handled(): number {
    return this._handled;
  }

  get failed(): number {
    return this._failed;
  }

  get active(): boolean {
    return !this.stopped;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.owner.unserve(this);
  }

  /** Resolves when no request is being handled. */
  settled(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** @internal */
  markStopped(): void {
    this.stopped = true;
  }

  /** @internal */
  done(ok: boolean): void {
    this.inFlight -= 1;
    if (ok) this._handled += 1;
    else this._failed += 1;
    if (this.inFlight === 0 && this.idle.length > 0) for (const f of this.idle.splice(0)) f();
  }
}
