import { ClosedError, ConnectionError, ErrorCode } from '../errors.js';
import type { Backoff } from '../net/backoff.js';
import type { ShmLink } from './client-link.js';
import { dialSession, type ShmSession } from './client-session.js';
import type { ShmMode } from './reports.js';
import type { ShmNotice } from './wire-codec.js';

export type ShmClientState = 'connecting' | 'ready' | 'reconnecting' | 'closed';

export interface KeeperOptions {
  socketPath: string;
  mode: ShmMode;
  /** Redial with this backoff after the daemon went away; undefined: stay disconnected. */
  backoff: Backoff | undefined;
  /** How long ready() waits for a (re)connection. */
  waitMs: number;
  onState(state: ShmClientState): void;
  onNotice(n: ShmNotice): void;
  /** The session was lost (daemon gone): its segment is already unmapped. */
  onLost(session: ShmSession): void;
}

/**
 * Keeps a ShmClient connected: the current session, the state machine (connecting -> ready ->
 * reconnecting -> ready ... -> closed), redials with backoff (one dial at a time, timers unref'd),
 * and callers waiting for the next session.
 */
export class SessionKeeper {
  session: ShmSession | undefined;
  private _state: ShmClientState = 'connecting';
  private waiters: { resolve: (s: ShmSession) => void; reject: (e: Error) => void }[] = [];
  private redialTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: KeeperOptions) {}

  get state(): ShmClientState {
    return this._state;
  }

  /** The first connection: rejects when the daemon cannot be reached (no retry). */
  async open(): Promise<void> {
    this.session = await this.dial();
    this.setState('ready');
  }

  /** The current session, waiting for a reconnection if one is under way. */
  ready(): Promise<ShmSession> {
    const s = this.session;
    if (this._state === 'ready' && s && !s.link.isClosed) return Promise.resolve(s);
    if (this._state === 'closed') return Promise.reject(new ClosedError('the shm client is closed'));
    if (!this.o.backoff)
      return Promise.reject(new ConnectionError(ErrorCode.NOT_CONNECTED, 'not connected to lars shm'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(
          new ConnectionError(
            ErrorCode.NOT_CONNECTED,
            `lars shm at ${this.o.socketPath} not reachable within ${this.o.waitMs} ms`,
          ),
        );
      }, this.o.waitMs);
      timer.unref();
      const waiter = {
        resolve: (x: ShmSession) => {
          clearTimeout(timer);
          resolve(x);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Stops everything; returns the session for the caller to end (close or destroy). */
  close(): ShmSession | undefined {
    this.setState('closed');
    if (this.redialTimer) clearTimeout(this.redialTimer);
    this.redialTimer = undefined;
    for (const w of this.waiters.splice(0)) w.reject(new ClosedError('the shm client is closed'));
    const s = this.session;
    this.session = undefined;
    return s;
  }

  private dial(): Promise<ShmSession> {
    return dialSession(this.o.socketPath, this.o.mode, this.o.waitMs, {
      onNotice: (n) => this.o.onNotice(n),
      onClose: (link) => this.linkClosed(link),
    });
  }

  private linkClosed(link: ShmLink): void {
    const s = this.session;
    if (!s || s.link !== link || this._state === 'closed') return;
    s.segment.close();
    this.session = undefined;
    this.o.onLost(s);
    this.setState('reconnecting');
    this.scheduleRedial();
  }

  private scheduleRedial(): void {
    const backoff = this.o.backoff;
    if (!backoff || this._state === 'closed') return;
    this.redialTimer = setTimeout(() => {
      this.redialTimer = undefined;
      this.dial().then(
        (s) => {
          if (this._state === 'closed') {
            void s.link.destroy().then(() => s.segment.close());
            return;
          }
          backoff.reset();
          this.session = s;
          this.setState('ready');
          for (const w of this.waiters.splice(0)) w.resolve(s);
        },
        () => this.scheduleRedial(),
      );
    }, backoff.next());
    this.redialTimer.unref();
  }

  private setState(state: ShmClientState): void {
    if (this._state === state) return;
    this._state = state;
    this.o.onState(state);
  }
}
