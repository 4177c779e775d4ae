import type { BusConn } from './bus-conn.js';
import type { ServeReg } from './router.js';
import type { BusSub } from './subscription.js';

export const ProcState = { NORMAL: 'normal', OFFLINE: 'offline', KILLME: 'killme' } as const;
export type ProcState = (typeof ProcState)[keyof typeof ProcState];

/** Why a proc left the normal state (logs, /procs). */
export type OfflineReason = 'silent' | 'unregistered' | 'disconnected' | 'replaced';

export interface PeerCreds {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * One registered proc (seed ProcInfo + node state). It owns its subscriptions and served topics;
 * they outlive its connection until the proc is removed (killme) or replaced, so a proc that
 * reconnects under the same name simply replays them on the new session.
 */
export class Proc {
  state: ProcState = ProcState.NORMAL;
  offlineReason: OfflineReason | undefined;
  /** Monotonic ms (the bus's clock) of the last frame from this proc. */
  lastHeardMs: number;
  /** Set while connected; cleared when the socket closes or the proc unregisters. */
  conn: BusConn | undefined;
  readonly subs = new Map<number, BusSub>();
  readonly serves = new Map<number, ServeReg>();
  msgsIn = 0;
  msgsOut = 0;
  dropped = 0;
  /** Encoded PROC_NAME body introducing this proc to receivers (built once, on first use). */
  nameBody: Uint8Array | undefined;

  constructor(
    readonly name: string,
    readonly num: number,
    readonly creds: PeerCreds | undefined,
    readonly publicInfo: string,
    readonly privateInfo: string,
    conn: BusConn,
    nowMs: number,
  ) {
    this.conn = conn;
    this.lastHeardMs = nowMs;
  }

  get connected(): boolean {
    return this.conn !== undefined;
  }
}
