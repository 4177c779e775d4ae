import { isLarsError } from '../../errors.js';
import { HEADER_LEN } from '../../protocol/frame.js';
import type { ShmHandle } from '../../shm/index.js';
import { ReplyStatus, SHM_MSG_PAYLOAD_BYTES, SHM_OPT_KEEP, writeShmForward } from '../wire/data-frame.js';
import { BusMsgId } from '../wire/msg-id.js';
import type { BusConn } from './bus-conn.js';
import type { BusEngine } from './bus-engine.js';
import { ProcState, type Proc } from './proc.js';
import type { PendingRequest, ServeReg } from './router.js';
import type { QueueGroup } from './sublist.js';
import type { BusSub } from './subscription.js';

/**
 * Shared-memory payloads on the bus (issue 14). A PUB, REQ or REP of payload kind 1 carries the
 * handle of a `lars shm` buffer the sender holds. The bus asks lars shm to TRANSFER that reference
 * from the sender's process (kernel pid) into one batch per receiving process, then sends each
 * receiver the handle and its batch id; the receiver's client takes the batch (RECV) and gets the
 * same memory. No payload byte crosses a socket. Until lars shm answered, further data frames of the
 * sending connection wait (FIFO per publisher holds), see BusEngine.gate.
 */

/** Bytes of a forwarded kind-1 frame, for the slow-consumer room check (subject and headers aside). */
const SHM_FRAME_ROOM = HEADER_LEN + 64 + SHM_MSG_PAYLOAD_BYTES;

/** The handle and options of a client's kind-1 payload at `p` (length checked by the caller). */
export function shmPayload(buf: Uint8Array, p: number): { handle: ShmHandle; keep: boolean } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    handle: {
      pool: b.readUInt32LE(p),
      block: b.readUInt32LE(p + 4),
      gen: b.readUInt32LE(p + 8),
      len: b.readUInt32LE(p + 12),
    },
    keep: ((b[p + 16] as number) & SHM_OPT_KEEP) !== 0,
  };
}

/** Releases the reference a kind-1 payload of `from` carries, unless it asked to keep it. */
export function releaseShm(engine: BusEngine, from: Proc, buf: Uint8Array, payloadStart: number): void {
  const { handle, keep } = shmPayload(buf, payloadStart);
  if (!keep && from.creds !== undefined)
    engine.relay.transfer(from.creds.pid, handle, [], false).catch(() => {});
}

/**
 * lars shm refused a transfer (quota, too many addressees): the sender already counts its reference
 * as sent, so the bus gives it back, unless the sender kept it.
 */
function releaseRefused(engine: BusEngine, fromPid: number, handle: ShmHandle, keep: boolean): void {
  if (!keep) engine.relay.transfer(fromPid, handle, [], false).catch(() => {});
}

/**
 * Runs a transfer's continuation and always lets the sender's connection go on; a failure in it is
 * logged, never an unhandled rejection that would stop the bus.
 */
function ungateAfter(engine: BusEngine, conn: BusConn, body: () => void): void {
  try {
    body();
  } catch (err) {
    engine.log.error({ err }, 'shared-memory hand-off: internal error');
  } finally {
    engine.ungate(conn);
  }
}

function failure(err: unknown): string {
  return isLarsError(err) ? `${err.code}: ${err.message}` : String(err);
}

/** Whether `sub`'s proc can take a message now; counts the drop when not. */
function takes(engine: BusEngine, sub: BusSub): boolean {
  const proc = sub.proc;
  const conn = proc.conn;
  if (proc.state !== ProcState.NORMAL || conn === undefined) {
    engine.stats.dropped.offline += 1;
    proc.dropped += 1;
    return false;
  }
  if (!engine.hasRoom(conn, SHM_FRAME_ROOM)) {
    engine.slow.drop(conn, proc);
    return false;
  }
  if (proc.creds === undefined) {
    // Without its kernel pid the bus cannot address lars shm to it.
    engine.stats.dropped.shm += 1;
    proc.dropped += 1;
    return false;
  }
  return true;
}

/** One member of a queue group able to take the message (round robin), or none (drop counted). */
function pickMember(engine: BusEngine, group: QueueGroup<BusSub>): BusSub | undefined {
  const members = group.members;
  const n = members.length;
  for (let k = 0; k < n; k++) {
    const i = (group.cursor + k) % n;
    const sub = members[i] as BusSub;
    const conn = sub.proc.conn;
    if (sub.proc.state !== ProcState.NORMAL || conn === undefined || sub.proc.creds === undefined) continue;
    if (!engine.hasRoom(conn, SHM_FRAME_ROOM)) continue;
    group.cursor = i + 1;
    return sub;
  }
  takes(engine, members[group.cursor % n] as BusSub);
  return undefined;
}

/** Stages a kind-1 frame with the receiver's batch id; false when `dest` cannot take it any more. */
function deliverShm(
  engine: BusEngine,
  dest: Proc,
  msgid: number,
  buf: Uint8Array,
  start: number,
  payloadStart: number,
  id: number,
  from: Proc,
  batchId: number,
): boolean {
  const conn = dest.conn;
  if (dest.state !== ProcState.NORMAL || conn === undefined || conn.closed) {
    engine.stats.dropped.offline += 1;
    dest.dropped += 1;
    return false;
  }
  if (!conn.known.has(from.num)) engine.introduce(conn, from);
  const need = HEADER_LEN + payloadStart - start + SHM_MSG_PAYLOAD_BYTES;
  const out = conn.out;
  const target = out.reserve(need);
  out.commit(writeShmForward(target, out.used, msgid, buf, start, payloadStart, id, from.num, batchId), 1);
  if (!conn.dirty) engine.markDirty(conn);
  conn.shmTagged = true;
  engine.stats.msgsOut += 1;
  engine.stats.bytesOut += need;
  dest.msgsOut += 1;
  return true;
}

/** PUB of kind 1 from `from` (registered, with known creds), subject already validated. */
export function shmPub(
  engine: BusEngine,
  conn: BusConn,
  from: Proc,
  subject: string,
  buf: Uint8Array,
  start: number,
  payloadStart: number,
): void {
  const { handle, keep } = shmPayload(buf, payloadStart);
  const m = engine.sublist.match(subject);
  const receivers: BusSub[] = [];
  for (const sub of m.plain) if (takes(engine, sub)) receivers.push(sub);
  for (const g of m.groups) {
    const sub = pickMember(engine, g);
    if (sub) receivers.push(sub);
  }
  if (m.plain.length === 0 && m.groups.length === 0) engine.stats.dropped.no_interest += 1;
  if (receivers.length === 0 && keep) return;
  const targets = receivers.map((s) => ({ pid: s.proc.creds!.pid, tag: s.proc.conn!.id }));
  const fromPid = from.creds!.pid;
  engine.gate(conn);
  engine.relay.transfer(fromPid, handle, targets, keep).then(
    (ids) =>
      ungateAfter(engine, conn, () => {
        const undelivered: number[] = [];
        receivers.forEach((sub, i) => {
          const batch = ids[i] as number;
          // Batch 0: the receiver's process ended before lars shm could address it.
          if (batch === 0) engine.stats.dropped.offline += 1;
          else if (deliverShm(engine, sub.proc, BusMsgId.Msg, buf, start, payloadStart, sub.sid, from, batch))
            sub.msgs += 1;
          else undelivered.push(batch);
        });
        engine.relay.cancelBatches(undelivered);
      }),
    (err: unknown) =>
      ungateAfter(engine, conn, () => {
        engine.stats.dropped.shm += Math.max(1, receivers.length);
        releaseRefused(engine, fromPid, handle, keep);
        engine.shmFailed(conn, BusMsgId.Pub, 0, err, subject);
      }),
  );
}

/** REQ of kind 1: the reference moves to the picked server's process, then the request goes there. */
export function shmReq(
  engine: BusEngine,
  conn: BusConn,
  caller: Proc,
  callerId: number,
  reg: ServeReg,
  timeoutMs: number,
  buf: Uint8Array,
  start: number,
  payloadStart: number,
): void {
  const { handle, keep } = shmPayload(buf, payloadStart);
  const server = reg.proc;
  if (server.creds === undefined) {
    engine.stats.requests.error += 1;
    return engine.replyStatus(
      conn,
      callerId,
      ReplyStatus.SHM_FAILED,
      `the bus does not know the pid of ${server.name} (no SO_PEERCRED): it cannot take shared memory`,
    );
  }
  const p = engine.router.open(caller, callerId, reg, engine.now(), timeoutMs);
  const target = { pid: server.creds.pid, tag: server.conn!.id };
  engine.gate(conn);
  const callerPid = caller.creds!.pid;
  engine.relay.transfer(callerPid, handle, [target], keep).then(
    ([batch]) =>
      ungateAfter(engine, conn, () => {
        if (!batch) return failPendingShm(engine, p, `${server.name}'s process ended`);
        const open = engine.router.pending.get(p.rid) === p;
        if (
          !open ||
          !deliverShm(engine, server, BusMsgId.Req, buf, start, payloadStart, p.rid, caller, batch)
        )
          engine.relay.cancelBatches([batch]);
      }),
    (err: unknown) =>
      ungateAfter(engine, conn, () => {
        releaseRefused(engine, callerPid, handle, keep);
        failPendingShm(engine, p, err);
      }),
  );
}

/** REP of kind 1 for pending request `p` (already finished in the router). */
export function shmRep(
  engine: BusEngine,
  conn: BusConn,
  server: Proc,
  p: PendingRequest,
  buf: Uint8Array,
  start: number,
  payloadStart: number,
): void {
  const { handle, keep } = shmPayload(buf, payloadStart);
  const caller = p.caller;
  const callerConn = caller.conn;
  if (caller.creds === undefined || callerConn === undefined) {
    // The caller is gone (or cannot take shared memory): nobody receives the reply; release it.
    releaseShm(engine, server, buf, payloadStart);
    if (callerConn !== undefined)
      engine.replyStatus(callerConn, p.callerId, ReplyStatus.SHM_FAILED, 'the bus does not know your pid');
    return;
  }
  engine.gate(conn);
  const serverPid = server.creds!.pid;
  engine.relay.transfer(serverPid, handle, [{ pid: caller.creds.pid, tag: callerConn.id }], keep).then(
    ([batch]) =>
      ungateAfter(engine, conn, () => {
        // Batch 0: the caller's process ended; the reference was released with no addressee.
        if (
          batch &&
          !deliverShm(engine, caller, BusMsgId.Rep, buf, start, payloadStart, p.callerId, server, batch)
        )
          engine.relay.cancelBatches([batch]);
      }),
    (err: unknown) =>
      ungateAfter(engine, conn, () => {
        engine.stats.requests.error += 1;
        releaseRefused(engine, serverPid, handle, keep);
        const c = caller.conn;
        if (c !== undefined)
          engine.replyStatus(c, p.callerId, ReplyStatus.SHM_FAILED, `reply not handed over: ${failure(err)}`);
      }),
  );
}

function failPendingShm(engine: BusEngine, p: PendingRequest, err: unknown): void {
  if (engine.router.pending.get(p.rid) !== p) return;
  engine.router.finish(p);
  engine.stats.requests.error += 1;
  const c = p.caller.conn;
  if (c !== undefined)
    engine.replyStatus(c, p.callerId, ReplyStatus.SHM_FAILED, `request not handed over: ${failure(err)}`);
}
