import { randomUUID } from 'node:crypto';
import { Histogram } from 'prom-client';
import {
  BusError,
  ErrorCode,
  InvalidArgumentError,
  isLarsError,
  LarsError,
  ProtocolError,
  TimeoutError,
} from '../../errors.js';
import { defaultShmSocket } from '../../shm/socket-path.js';
import { silentLogger, type Logger } from '../../log/silent.js';
import { Control, NoticeKind } from '../wire/control.js';
import { ReplyStatus, statusReplyLength, writeStatusReply } from '../wire/data-frame.js';
import { BusMsgId, busMsgIdName, isDataMsgId } from '../wire/msg-id.js';
import type { BusConn } from './bus-conn.js';
import { BusStats } from './bus-stats.js';
import { handleControl } from './control-ops.js';
import { handlePub, handleRep, handleReq } from './data-path.js';
import type { Proc } from './proc.js';
import { ProcTable } from './proc-table.js';
import { BRIDGE_PROC_NAME } from '../bridge/bridge-settings.js';
import type { NatsBridge } from '../bridge/nats-bridge.js';
import { Router, ServeReg, type PendingRequest } from './router.js';
import type { BusSettings } from './settings.js';
import { ShmRelay } from './shm-relay.js';
import { SlowConsumers } from './slow-consumers.js';
import { Sublist, type SubEntry } from './sublist.js';
import type { BusSub } from './subscription.js';

/** Buckets (seconds) of lars_bus_request_seconds: relayed round trips are tens of µs to seconds. */
const REQUEST_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5];

export interface BusEngineOptions {
  settings: BusSettings;
  logger?: Logger;
  /** Monotonic clock in ms; injected by tests. Default performance.now. */
  now?: () => number;
  /** Socket of lars shm for shared-memory payloads (default LARS_SHM_SOCKET or the data directory's). */
  shmSocket?: string;
}

/**
 * The bus's state and operations, independent of how connections arrive (BusService listens; tests
 * may attach connections directly): procs and their states, the subscription index, request routing,
 * outbound scheduling, the slow-consumer policy and the periodic sweep. Single-threaded: every
 * change happens on one event loop, which realises the seed's one-lock center without locks.
 */
export class BusEngine {
  readonly settings: BusSettings;
  readonly stats = new BusStats();
  readonly sublist = new Sublist<BusSub>();
  readonly router = new Router();
  readonly procs: ProcTable;
  readonly conns = new Set<BusConn>();
  readonly busId = randomUUID();
  readonly log: Logger;
  readonly now: () => number;
  readonly requestSeconds: Histogram;
  /** The slow-consumer policy (drops, episodes with one notice each, cuts at the write deadline). */
  readonly slow: SlowConsumers;
  /** The bridge to NATS, when `[bus.bridge]` is configured (set by BusService). */
  bridge: NatsBridge | undefined;
  /** The connection to lars shm that moves shared-memory payloads (opened on first use). */
  readonly relay: ShmRelay;
  /** Set by lameDuck(): publishes are dropped (counted `closing`), requests fail with CLOSED. */
  lameDuck = false;
  /** `canTake(reg)`: the server's connection has room (bound once, used by Router.pick). */
  readonly canTake = (reg: ServeReg): boolean => {
    const conn = reg.proc.conn;
    return conn !== undefined && this.hasRoom(conn, 0);
  };

  /** Topics whose requests go to the bridge when no local server takes them (`[bus.bridge] forward`). */
  private readonly forwards = new Sublist<SubEntry>();
  private forwardReg: ServeReg | undefined;

  private dirty: BusConn[] = [];
  private spareDirty: BusConn[] = [];
  private flushScheduled = false;
  private readonly flushAll = (): void => this.runFlush();

  constructor(options: BusEngineOptions) {
    this.settings = options.settings;
    this.log = options.logger ?? silentLogger;
    this.now = options.now ?? (() => performance.now());
    this.requestSeconds = new Histogram({
      name: 'lars_bus_request_seconds',
      help: 'relayed request round trip through the bus (request in to reply out)',
      buckets: REQUEST_BUCKETS,
      registers: [],
    });
    this.slow = new SlowConsumers(this.settings, this.stats, this.log, this.now);
    this.relay = new ShmRelay(options.shmSocket ?? defaultShmSocket(), this.log);
    this.procs = new ProcTable({
      offlineMs: this.settings.offlineMs,
      killMs: this.settings.killMs,
      now: this.now,
      onState: (proc, from, to, why) =>
        this.log.info({ proc: proc.name, num: proc.num, from, to, why }, 'proc state changed'),
      onRemove: (proc, why) => this.removed(proc, why),
    });
  }

  // ---- connections -------------------------------------------------------------------------------

  attach(conn: BusConn): void {
    this.conns.add(conn);
    this.stats.connectionsAccepted += 1;
  }

  /** Bytes arrived from `conn`: its proc is alive (any frame counts, DESIGN §9). */
  heard(conn: BusConn, bytes: number): void {
    this.stats.bytesIn += bytes;
    const proc = conn.proc;
    if (proc !== undefined) this.procs.revive(proc, this.now());
  }

  onFrame(conn: BusConn, msgid: number, buf: Uint8Array, start: number, len: number): void {
    if (conn.gated > 0 && isDataMsgId(msgid)) {
      conn.held.push({ msgid, buf, start, len });
      return;
    }
    try {
      if (msgid === BusMsgId.Pub) handlePub(this, conn, buf, start, len);
      else if (msgid === BusMsgId.Req) handleReq(this, conn, buf, start, len);
      else if (msgid === BusMsgId.Rep) handleRep(this, conn, buf, start, len);
      else handleControl(this, conn, msgid, buf.subarray(start, start + len));
    } catch (err) {
      this.stats.internalErrors += 1;
      this.log.error(
        { conn: conn.id, op: busMsgIdName(msgid), err: (err as Error).message },
        'internal error',
      );
      conn.sendErr(
        msgid,
        0,
        new LarsError(ErrorCode.INVALID_ARGUMENT, `internal error: ${(err as Error).message}`),
      );
    }
  }

  /** A framing violation (bad length in a header): ERR, then the connection is closed. */
  framingViolation(conn: BusConn, err: ProtocolError): void {
    this.stats.protocolErrors += 1;
    if (!conn.violationLogged) {
      conn.violationLogged = true;
      this.log.warn(
        { conn: conn.id, proc: conn.proc?.name, code: err.code, err: err.message },
        'protocol violation; closing',
      );
    }
    conn.sendErr(0, 0, err);
    conn.end(err);
  }

  connectionClosed(conn: BusConn, reason: Error | undefined, lostMsgs: number): void {
    this.conns.delete(conn);
    // Shared-memory batches made for this connection and not taken are released now, not at their ttl.
    if (conn.shmTagged) this.relay.cancelTag(conn.id);
    conn.held.length = 0;
    this.slow.forget(conn);
    this.stats.dropped.disconnect += lostMsgs;
    const proc = conn.proc;
    conn.proc = undefined;
    if (proc !== undefined && proc.conn === conn) {
      this.procs.detach(proc, 'disconnected');
      this.failServed(proc, `the responder ${proc.name} closed its connection`);
      this.log.debug({ proc: proc.name, reason: reason?.message }, 'connection closed');
    }
  }

  // ---- shared-memory hand-offs (issue 14) ---------------------------------------------------------

  /**
   * A hand-off of `conn` waits for lars shm: its later data frames wait too (FIFO per publisher), and
   * its socket is paused so that at most what was already read waits here.
   */
  gate(conn: BusConn): void {
    conn.gated += 1;
    if (conn.gated === 1) conn.socket.pause();
  }

  /** A hand-off of `conn` ended: run the frames that waited, in order, until one waits again. */
  ungate(conn: BusConn): void {
    conn.gated -= 1;
    if (conn.gated > 0) return;
    const held = conn.held;
    while (held.length > 0 && conn.gated === 0) {
      const f = held.shift()!;
      if (!conn.closed) this.onFrame(conn, f.msgid, f.buf, f.start, f.len);
    }
    if (conn.gated === 0 && !conn.closed) conn.socket.resume();
  }

  /** lars shm refused a hand-off (or is down): the sender hears it (ERR), the drop is counted. */
  shmFailed(conn: BusConn, op: number, id: number, err: unknown, subject: string): void {
    const e = isLarsError(err) ? err : new LarsError(ErrorCode.INVALID_ARGUMENT, String(err));
    this.log.debug({ conn: conn.id, code: e.code, err: e.message }, 'shared-memory hand-off failed');
    conn.sendErr(
      op,
      id,
      new LarsError(e.code, `shared-memory payload not handed over: ${e.message}`),
      subject,
    );
  }

  // ---- output ------------------------------------------------------------------------------------

  markDirty(conn: BusConn): void {
    if (conn.dirty) return;
    conn.dirty = true;
    this.dirty.push(conn);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushAll);
    }
  }

  /** Writes every connection that got output this turn: one write per destination per turn. */
  private runFlush(): void {
    this.flushScheduled = false;
    const list = this.dirty;
    this.dirty = this.spareDirty;
    for (let i = 0; i < list.length; i++) (list[i] as BusConn).flush();
    list.length = 0;
    this.spareDirty = list;
  }

  hasRoom(conn: BusConn, bytes: number): boolean {
    const s = this.settings;
    return conn.pendingMsgs < s.maxPendingMsgs && conn.pendingBytes + bytes <= s.maxPendingBytes;
  }

  introduce(conn: BusConn, proc: Proc): void {
    proc.nameBody ??= Control.procName.encode({ num: proc.num, name: proc.name });
    conn.known.add(proc.num);
    conn.sendControl(BusMsgId.ProcName, proc.nameBody);
  }

  /** A bus-made REP: a request that fails without reaching a server (or whose server failed). */
  replyStatus(conn: BusConn, id: number, status: number, detail: string): void {
    if (conn.closed) return;
    const out = conn.out;
    const target = out.reserve(statusReplyLength(detail));
    out.commit(writeStatusReply(target, out.used, id, status, detail), 1);
    this.markDirty(conn);
  }

  // ---- requests ----------------------------------------------------------------------------------

  /** The bridge's proc on this bus (its client in this very process), when it is registered. */
  bridgeProc(): Proc | undefined {
    const proc = this.procs.get(BRIDGE_PROC_NAME);
    if (proc === undefined || (proc.creds !== undefined && proc.creds.pid !== process.pid)) return undefined;
    return proc;
  }

  /** `[bus.bridge] forward`: requests on these subjects (no local server) go to the bridge proc. */
  setForwards(patterns: readonly string[]): void {
    for (const subject of patterns) this.forwards.insert({ subject, queue: '', exact: false });
  }

  /**
   * The bridge as the server of a request on `topic` no local server takes, when `topic` is to be
   * forwarded and the bridge (proc `lars-bridge` of this very process) is there to take it.
   */
  forwardServer(topic: string): ServeReg | undefined {
    if (this.forwards.count === 0) return undefined;
    const m = this.forwards.match(topic);
    if (m.plain.length === 0) return undefined;
    const proc = this.bridgeProc();
    if (proc === undefined || proc.state !== 'normal' || proc.conn === undefined) return undefined;
    if (this.forwardReg?.proc !== proc)
      this.forwardReg = new ServeReg(proc, 0, '>', 'bridge', this.settings.defaultConcurrency * 16);
    const reg = this.forwardReg;
    return reg.inFlight < reg.concurrency && this.hasRoom(proc.conn, 0) ? reg : undefined;
  }

  whyNoServer(topic: string, status: number): string {
    const regs = this.router.servers(topic);
    if (status === ReplyStatus.OVERLOADED)
      return `all ${regs.length} servers of "${topic}" are at their in-flight limit`;
    if (regs.length === 0) return `no proc serves "${topic}"`;
    return `${regs.length} server(s) of "${topic}" registered, none online`;
  }

  observeRequest(ms: number): void {
    this.requestSeconds.observe(ms / 1000);
  }

  /** Pending requests served by `proc` fail at once with CLOSED (responder death, P3/P7). */
  failServed(proc: Proc, why: string): void {
    for (const p of this.router.servedBy(proc)) this.failPending(p, ReplyStatus.CLOSED, why);
  }

  private failPending(p: PendingRequest, status: number, why: string): void {
    this.router.finish(p);
    this.stats.requests.closed += 1;
    const conn = p.caller.conn;
    if (conn !== undefined) this.replyStatus(conn, p.callerId, status, why);
  }

  // ---- errors for one operation (the connection stays) ------------------------------------------

  invalid(conn: BusConn, op: number, id: number, message: string, subject = ''): void {
    this.badRequest(conn, op, id, new InvalidArgumentError(message), subject, ReplyStatus.INVALID);
  }

  badBody(conn: BusConn, op: number, id: number, message: string): void {
    this.badRequest(conn, op, id, new ProtocolError(ErrorCode.BAD_BODY, message), '', ReplyStatus.INVALID);
  }

  tooLarge(conn: BusConn, op: number, id: number, bytes: number): void {
    const err = new ProtocolError(
      ErrorCode.MESSAGE_TOO_LARGE,
      `payload of ${bytes} bytes is over the bus's max_payload of ${this.settings.maxPayload} bytes`,
    );
    this.badRequest(conn, op, id, err, '', ReplyStatus.TOO_LARGE);
  }

  notRegistered(conn: BusConn, op: number, id: number): void {
    const err = new BusError(
      ErrorCode.BUS_NOT_REGISTERED,
      `${busMsgIdName(op)} before HELLO: register first`,
    );
    this.badRequest(conn, op, id, err, '', ReplyStatus.NOT_REGISTERED);
  }

  /** Requests fail through a REP status (their caller waits on it); other operations get ERR. */
  badRequest(conn: BusConn, op: number, id: number, err: LarsError, subject: string, status: number): void {
    this.stats.badRequests += 1;
    if (op === BusMsgId.Req) this.replyStatus(conn, id, status, err.message);
    else conn.sendErr(op, id, err, subject);
  }

  // ---- time --------------------------------------------------------------------------------------

  /** Proc states, request expiry, slow-consumer deadlines (every sweepMs). */
  sweep(): void {
    const now = this.now();
    this.procs.sweep(now);
    for (const p of this.router.expired(now)) {
      this.router.finish(p);
      this.stats.requests.timeout += 1;
    }
    this.slow.sweep(now);
  }

  /** A proc left the table: release what it held (DESIGN §9 killme / replacement). */
  private removed(proc: Proc, why: 'killme' | 'replaced'): void {
    for (const sub of proc.subs.values()) this.sublist.remove(sub);
    proc.subs.clear();
    for (const reg of proc.serves.values()) this.router.remove(reg);
    proc.serves.clear();
    this.failServed(
      proc,
      `the responder ${proc.name} was ${why === 'killme' ? 'removed (silent past kill_ms)' : 'replaced'}`,
    );
    const conn = proc.conn;
    proc.conn = undefined;
    this.log.info({ proc: proc.name, num: proc.num, why }, 'proc removed');
    // Connected yet silent past kill_ms: a hung process. Its shared memory goes back (DESIGN §9);
    // a proc that disconnected or unregistered has nothing to reclaim here (lars shm saw its close).
    if (why === 'killme' && conn !== undefined && proc.creds !== undefined)
      this.relay.reclaim(proc.creds.pid, proc.name);
    if (conn === undefined) return;
    conn.proc = undefined;
    if (why === 'replaced') {
      conn.sendControl(
        BusMsgId.Notice,
        Control.notice.encode({
          kind: NoticeKind.TAKEN_OVER,
          message: `another connection took over the name ${proc.name}`,
        }),
      );
      conn.end(new BusError(ErrorCode.BUS_NAME_IN_USE, `taken over: ${proc.name}`));
    } else {
      conn.destroy(
        new TimeoutError(`proc ${proc.name} silent for kill_ms (${this.settings.killMs} ms): removed`),
      );
    }
  }

  /** Shutdown, step 1: stop taking publishes and requests, tell every client (NOTICE LAME_DUCK). */
  startLameDuck(): void {
    if (this.lameDuck) return;
    this.lameDuck = true;
    const body = Control.notice.encode({ kind: NoticeKind.LAME_DUCK, message: 'the bus is shutting down' });
    for (const conn of this.conns) conn.sendControl(BusMsgId.Notice, body);
  }

  /** Shutdown, step 2: pending requests fail with CLOSED. */
  failAllPending(): void {
    for (const p of [...this.router.pending.values()])
      this.failPending(p, ReplyStatus.CLOSED, 'the bus is shutting down');
  }

  /** Bytes still queued towards clients (for the linger wait). */
  pendingOutBytes(): number {
    let n = 0;
    for (const c of this.conns) n += c.pendingBytes;
    return n;
  }
}
