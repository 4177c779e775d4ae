import type { ShmNotice } from '../wire-codec.js';

/** What the core needs from a connection: a way to tell it something and a way to cut it. */
export interface PeerSink {
  notify(notice: ShmNotice): void;
  /** Close the connection (reclaim). Its close is then reported to the core like any other. */
  kill(reason: string): void;
}

/**
 * One client connection as the daemon's core sees it: who it is (once verified) and what it holds
 * (the seed's `lmemRef`, block -> reference count). Only the core mutates it.
 */
export class ShmPeer {
  /** Kernel (or proven) pid; 0 until verified. */
  pid = 0;
  /** Set by reclaim: its holdings are already gone, its close releases nothing more. */
  reclaimed = false;
  readonly held = new Map<number, number>();
  /** Bytes of the distinct blocks it holds (class sizes). */
  heldBytes = 0;

  constructor(
    readonly id: number,
    readonly sink: PeerSink,
  ) {}

  get verified(): boolean {
    return this.pid > 0;
  }
}

/** All connections of one process, and the batches it sent that are still in flight. */
export interface ProcRecord {
  readonly pid: number;
  readonly name: string;
  readonly peers: Set<ShmPeer>;
  sentBatches: number;
  sentBytes: number;
}
