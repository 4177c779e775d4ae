import { createConnection, type Socket } from 'node:net';
import { encodeFrame, FrameDecoder } from '../../src/protocol/index.js';
import type { ShmHandle } from '../../src/shm/index.js';
import {
  decodeHandlesPayload,
  decodeReply,
  encodeRequest,
  type ShmRequest,
} from '../../src/shm/wire-codec.js';
import { ShmMsg } from '../../src/shm/wire-ids.js';

/**
 * Random and mutated commands for the shm daemon (issue 12: 100,000 of them must never stop it).
 * Each command is one frame: a random msgid with random bytes, a valid command with a few bytes
 * changed, a valid command on handles this connection really holds (so the daemon's state moves),
 * or, rarely, a frame header that breaks the framing (the daemon then closes that connection).
 */
export class ShmFuzzer {
  private seed: number;
  readonly held: ShmHandle[] = [];

  constructor(seed: number) {
    this.seed = seed >>> 0 || 1;
  }

  rnd(n: number): number {
    this.seed ^= this.seed << 13;
    this.seed >>>= 0;
    this.seed ^= this.seed >>> 17;
    this.seed ^= this.seed << 5;
    this.seed >>>= 0;
    return this.seed % n;
  }

  private bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.rnd(256);
    return b;
  }

  private handle(): ShmHandle {
    if (this.held.length && this.rnd(2) === 0) return this.held[this.rnd(this.held.length)]!;
    return { pool: this.rnd(4), block: this.rnd(5000), gen: this.rnd(4), len: this.rnd(1 << 24) };
  }

  private valid(selfPid: number): ShmRequest {
    const handles = (): ShmHandle[] => Array.from({ length: 1 + this.rnd(3) }, () => this.handle());
    switch (this.rnd(9)) {
      case 0:
        return {
          cmd: ShmMsg.ALLOC,
          size: [1, 4096, 65536, 1 << 20, 1 << 24, this.rnd(1 << 25)][this.rnd(6)]!,
          align: [0, 64, 4096, 3, 8192][this.rnd(5)]!,
          count: 1 + this.rnd(4),
        };
      case 1:
        return { cmd: ShmMsg.FREE, handles: handles() };
      case 2:
        return { cmd: ShmMsg.ADDREF, handles: handles() };
      case 3:
        return {
          cmd: ShmMsg.SEND,
          to: [selfPid, 1, 0, -1, this.rnd(1 << 22)][this.rnd(5)]!,
          ttlMs: [0, 1, 50, 999_999_999][this.rnd(4)]!,
          handles: handles(),
        };
      case 4:
        return { cmd: ShmMsg.RECV, batchId: this.rnd(2000) };
      case 5:
        return { cmd: ShmMsg.STAT };
      case 6:
        return { cmd: ShmMsg.HOLDERS };
      case 7:
        // Reclaim a pid that is not this process (that would only cut the fuzzing connections).
        return { cmd: ShmMsg.RECLAIM, pid: 2 + this.rnd(1 << 22), reason: this.rnd(4) };
      default:
        return {
          cmd: ShmMsg.HELLO,
          version: this.rnd(3),
          pid: [selfPid, 0, this.rnd(1 << 22)][this.rnd(3)]!,
        };
    }
  }

  /** One frame; `framing` true when it breaks the framing on purpose. */
  next(reqid: number, selfPid: number): { frame: Buffer; framing: boolean; cmd: ShmRequest | undefined } {
    const r = this.rnd(1000);
    if (r === 0) {
      const bad = Buffer.alloc(8);
      bad.writeInt32LE(0x4303, 0);
      bad.writeInt32LE(this.rnd(2) ? -5 : 1 << 20, 4);
      return { frame: bad, framing: true, cmd: undefined };
    }
    if (r < 350)
      return {
        frame: encodeFrame(0x4300 + this.rnd(24), this.bytes(this.rnd(72))),
        framing: false,
        cmd: undefined,
      };
    const req = this.valid(selfPid);
    const body = encodeRequest(reqid, req);
    if (r < 700) {
      for (let k = 1 + this.rnd(3); k > 0; k--)
        body[4 + this.rnd(Math.max(1, body.length - 4))] = this.rnd(256);
      return {
        frame: encodeFrame(this.rnd(8) === 0 ? 0x4300 + this.rnd(24) : req.cmd, body),
        framing: false,
        cmd: undefined,
      };
    }
    return { frame: encodeFrame(req.cmd, body), framing: false, cmd: req };
  }
}

export interface FuzzStats {
  commands: number;
  replies: number;
  errors: Record<number, number>;
  framingCuts: number;
  connections: number;
}

/**
 * Sends `total` fuzz commands over `conns` parallel connections in bursts of `burst`, each burst
 * waiting for all its replies (or the connection's close after a framing violation, then a new
 * connection). Resolves with what happened.
 */
export async function fuzzDaemon(socket: string, total: number, conns = 4, burst = 200): Promise<FuzzStats> {
  const stats: FuzzStats = { commands: 0, replies: 0, errors: {}, framingCuts: 0, connections: 0 };
  const perConn = Math.ceil(total / conns);
  await Promise.all(
    Array.from({ length: conns }, (_, i) =>
      fuzzOne(socket, perConn, burst, new ShmFuzzer(0x9e3779b9 + i), stats),
    ),
  );
  return stats;
}

async function fuzzOne(
  socket: string,
  total: number,
  burst: number,
  fz: ShmFuzzer,
  stats: FuzzStats,
): Promise<void> {
  let sent = 0;
  let reqid = 0;
  while (sent < total) {
    const s: Socket = createConnection(socket);
    stats.connections += 1;
    await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
    fz.held.length = 0;
    const decoder = new FrameDecoder();
    let closed = false;
    let expected = 0;
    let got = 0;
    let wake: (() => void) | undefined;
    const pendingAllocs = new Map<number, true>();
    s.on('data', (c: Buffer) => {
      for (const f of decoder.push(c)) {
        if (f.msgid !== ShmMsg.REPLY) continue;
        const rep = decodeReply(Buffer.from(f.body));
        got += 1;
        stats.replies += 1;
        if (rep.status !== 0) stats.errors[rep.status] = (stats.errors[rep.status] ?? 0) + 1;
        else if (pendingAllocs.has(rep.reqid)) {
          try {
            fz.held.push(...decodeHandlesPayload(rep.payload));
          } catch {
            // a mutated ALLOC reply shape: ignore
          }
        }
        pendingAllocs.delete(rep.reqid);
      }
      if (got >= expected) wake?.();
    });
    s.on('error', () => {});
    s.on('close', () => {
      closed = true;
      wake?.();
    });
    while (!closed && sent < total) {
      const frames: Buffer[] = [];
      let framing = false;
      for (let i = 0; i < burst && sent < total && !framing; i++) {
        reqid = (reqid + 1) >>> 0;
        const n = fz.next(reqid, process.pid);
        frames.push(n.frame);
        sent += 1;
        stats.commands += 1;
        if (n.framing) {
          framing = true;
          stats.framingCuts += 1;
        } else expected += 1;
        if (n.cmd?.cmd === ShmMsg.ALLOC) pendingAllocs.set(reqid, true);
      }
      s.write(Buffer.concat(frames));
      await new Promise<void>((r) => {
        wake = r;
        if (got >= expected || closed) r();
      });
      if (framing) await new Promise<void>((r) => (closed ? r() : s.once('close', () => r())));
    }
    s.destroy();
  }
}
