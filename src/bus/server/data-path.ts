import { HEADER_LEN } from '../../protocol/frame.js';
import { DEFAULT_BUS_REQUEST_TIMEOUT_MS } from '../defaults.js';
import {
  DATA_MIN_BODY,
  DataFields,
  PayloadKind,
  parseDataFrame,
  readU32,
  ReplyStatus,
  SHM_PUB_PAYLOAD_BYTES,
  writeForward,
} from '../wire/data-frame.js';
import { BusMsgId } from '../wire/msg-id.js';
import { checkSubject } from '../wire/subject.js';
import type { BusConn } from './bus-conn.js';
import type { BusEngine } from './bus-engine.js';
import { ProcState, type Proc } from './proc.js';
import { releaseShm, shmPub, shmRep, shmReq } from './shm-path.js';
import type { BusSub } from './subscription.js';
import type { QueueGroup } from './sublist.js';

/**
 * The hot path of the bus: PUB, REQ and REP frames, handled straight from the bytes of the inbound
 * chunk. No protobuf, no per-message allocation for a repeated subject: the subject and its match
 * are cached per connection; each receiver gets the publisher's body copied into its staging buffer
 * with only `id` (its sid / request id) and `aux` (the sender's proc number) patched.
 */
const fields = new DataFields();

/** Longest a relayed request is remembered by the bus, whatever timeout its caller asked for. */
const MAX_REQUEST_TIMEOUT_MS = 3_600_000;

/** Subject of a data frame, from the connection's one-entry cache or decoded and validated. */
function subjectOf(
  engine: BusEngine,
  conn: BusConn,
  buf: Uint8Array,
  s: number,
  n: number,
  op: number,
  id: number,
): string | undefined {
  const cached = conn.lastSubjBytes;
  if (n === conn.lastSubjLen) {
    let same = true;
    for (let i = 0; i < n; i++) {
      if (cached[i] !== buf[s + i]) {
        same = false;
        break;
      }
    }
    if (same) return conn.lastSubj;
  }
  const subject = Buffer.from(buf.buffer, buf.byteOffset + s, n).toString('latin1');
  const bad = checkSubject(subject, op === BusMsgId.Pub ? 'subject' : 'topic');
  if (bad !== undefined) {
    engine.invalid(conn, op, id, bad, subject);
    return undefined;
  }
  for (let i = 0; i < n; i++) cached[i] = buf[s + i] as number;
  conn.lastSubjLen = n;
  conn.lastSubj = subject;
  return subject;
}

/** Checks shared by PUB and REQ; returns false (after answering) when the frame cannot be routed. */
function acceptable(
  engine: BusEngine,
  conn: BusConn,
  op: number,
  id: number,
  buf: Uint8Array,
  start: number,
  len: number,
): boolean {
  if (!parseDataFrame(buf, start, len, fields)) {
    engine.badBody(conn, op, id, `malformed ${op === BusMsgId.Pub ? 'PUB' : 'REQ'} frame of ${len} bytes`);
    return false;
  }
  const payloadLen = fields.end - fields.payloadStart;
  if (fields.kind === PayloadKind.SHM) return shmAcceptable(engine, conn, op, id, payloadLen);
  if (fields.kind !== PayloadKind.INLINE) {
    engine.invalid(conn, op, id, `payload kind ${fields.kind} is not known (0 inline, 1 shared memory)`);
    return false;
  }
  if (payloadLen > engine.settings.maxPayload) {
    engine.stats.dropped.too_large += 1;
    engine.tooLarge(conn, op, id, payloadLen);
    return false;
  }
  return true;
}

/** A kind-1 payload: exactly a handle and an options byte, from a proc whose pid the kernel gave. */
function shmAcceptable(
  engine: BusEngine,
  conn: BusConn,
  op: number,
  id: number,
  payloadLen: number,
): boolean {
  if (payloadLen !== SHM_PUB_PAYLOAD_BYTES) {
    engine.invalid(
      conn,
      op,
      id,
      `a shared-memory payload is ${SHM_PUB_PAYLOAD_BYTES} bytes, got ${payloadLen}`,
    );
    return false;
  }
  if (conn.proc?.creds === undefined) {
    engine.invalid(
      conn,
      op,
      id,
      'the bus does not know your pid (no SO_PEERCRED): shared-memory payloads need it',
    );
    return false;
  }
  return true;
}

export function handlePub(
  engine: BusEngine,
  conn: BusConn,
  buf: Uint8Array,
  start: number,
  len: number,
): void {
  const stats = engine.stats;
  stats.msgsIn += 1;
  const from = conn.proc;
  if (from === undefined) return engine.notRegistered(conn, BusMsgId.Pub, 0);
  from.msgsIn += 1;
  if (!acceptable(engine, conn, BusMsgId.Pub, 0, buf, start, len)) return;
  if (engine.lameDuck) {
    stats.dropped.closing += 1;
    // A shared-memory payload nobody will receive goes back to the pool (best effort: shutting down).
    if (fields.kind === PayloadKind.SHM) releaseShm(engine, from, buf, fields.payloadStart);
    return;
  }
  const subject = subjectOf(engine, conn, buf, fields.subjStart, fields.subjLen, BusMsgId.Pub, 0);
  if (subject === undefined) return;
  if (fields.kind === PayloadKind.SHM)
    return shmPub(engine, conn, from, subject, buf, start, fields.payloadStart);
  const m = engine.sublist.match(subject);
  const plain = m.plain;
  const groups = m.groups;
  if (plain.length === 0 && groups.length === 0) {
    stats.dropped.no_interest += 1;
    return;
  }
  // The bridge's export subscriptions get inline payloads straight from this chunk (no socket hop).
  const bridgeProc = engine.bridge !== undefined ? engine.bridgeProc() : undefined;
  let exported = false;
  const hdrStart = fields.hdrStart;
  const hdrLen = fields.hdrLen;
  const payloadStart = fields.payloadStart;
  const end = fields.end;
  for (let i = 0; i < plain.length; i++) {
    const sub = plain[i] as BusSub;
    if (sub.proc === bridgeProc) {
      if (!exported) sub.msgs += 1;
      exported = true;
      continue;
    }
    if (deliver(engine, sub.proc, BusMsgId.Msg, buf, start, len, sub.sid, from, true)) sub.msgs += 1;
  }
  for (let g = 0; g < groups.length; g++)
    deliverToGroup(engine, groups[g] as QueueGroup<BusSub>, buf, start, len, from);
  if (exported) engine.bridge!.exportInline(subject, buf, hdrStart, hdrLen, payloadStart, end);
}

/** One member of a queue group gets the message: round robin over members able to take it. */
function deliverToGroup(
  engine: BusEngine,
  group: QueueGroup<BusSub>,
  buf: Uint8Array,
  start: number,
  len: number,
  from: Proc,
): void {
  const members = group.members;
  const n = members.length;
  const need = HEADER_LEN + len;
  let anyNormal: BusSub | undefined;
  for (let k = 0; k < n; k++) {
    const i = (group.cursor + k) % n;
    const sub = members[i] as BusSub;
    const conn = sub.proc.conn;
    if (sub.proc.state !== ProcState.NORMAL || conn === undefined) continue;
    anyNormal ??= sub;
    if (!engine.hasRoom(conn, need)) continue;
    group.cursor = i + 1;
    if (deliver(engine, sub.proc, BusMsgId.Msg, buf, start, len, sub.sid, from, true)) sub.msgs += 1;
    return;
  }
  // Nobody could take it: every member offline, or every normal one full.
  const blame = anyNormal ?? (members[group.cursor % n] as BusSub);
  deliver(engine, blame.proc, BusMsgId.Msg, buf, start, len, blame.sid, from, true);
}

/**
 * Stages one data frame for `dest`. `bounded`: subject to the slow-consumer limits (publishes);
 * replies and relayed requests are bounded by request credits instead. Returns false when dropped
 * (counted by reason).
 */
export function deliver(
  engine: BusEngine,
  dest: Proc,
  msgid: number,
  buf: Uint8Array,
  start: number,
  len: number,
  id: number,
  from: Proc,
  bounded: boolean,
): boolean {
  const conn = dest.conn;
  if (dest.state !== ProcState.NORMAL || conn === undefined) {
    engine.stats.dropped.offline += 1;
    dest.dropped += 1;
    return false;
  }
  const need = HEADER_LEN + len;
  if (bounded && !engine.hasRoom(conn, need)) {
    engine.slow.drop(conn, dest);
    return false;
  }
  if (!conn.known.has(from.num)) engine.introduce(conn, from);
  const out = conn.out;
  const target = out.reserve(need);
  out.commit(writeForward(target, out.used, msgid, buf, start, len, id, from.num), 1);
  if (!conn.dirty) engine.markDirty(conn);
  const stats = engine.stats;
  stats.msgsOut += 1;
  stats.bytesOut += need;
  dest.msgsOut += 1;
  return true;
}

export function handleReq(
  engine: BusEngine,
  conn: BusConn,
  buf: Uint8Array,
  start: number,
  len: number,
): void {
  const stats = engine.stats;
  stats.msgsIn += 1;
  const id = len >= 4 ? readU32(buf, start) : 0;
  const caller = conn.proc;
  if (caller === undefined)
    return engine.replyStatus(conn, id, ReplyStatus.NOT_REGISTERED, 'register (HELLO) first');
  caller.msgsIn += 1;
  if (!acceptable(engine, conn, BusMsgId.Req, id, buf, start, len)) return;
  // A request refused here gives its shared-memory reference back: the caller counted it as sent.
  const refuse = (): void => {
    if (fields.kind === PayloadKind.SHM) releaseShm(engine, caller, buf, fields.payloadStart);
  };
  const topic = subjectOf(engine, conn, buf, fields.subjStart, fields.subjLen, BusMsgId.Req, id);
  if (topic === undefined) return refuse();
  if (engine.lameDuck) {
    stats.requests.closed += 1;
    refuse();
    return engine.replyStatus(conn, id, ReplyStatus.CLOSED, 'the bus is shutting down');
  }
  let picked = engine.router.pick(topic, engine.canTake);
  if (picked === ReplyStatus.NO_RESPONDERS) picked = engine.forwardServer(topic) ?? picked;
  if (typeof picked === 'number') {
    if (picked === ReplyStatus.OVERLOADED) stats.requests.overloaded += 1;
    else stats.requests.no_responders += 1;
    refuse();
    return engine.replyStatus(conn, id, picked, engine.whyNoServer(topic, picked));
  }
  // The caller's timeout, capped: a pending request holds a server credit until it ends.
  const timeoutMs = Math.min(
    readU32(buf, start + 4) || DEFAULT_BUS_REQUEST_TIMEOUT_MS,
    MAX_REQUEST_TIMEOUT_MS,
  );
  if (fields.kind === PayloadKind.SHM)
    return shmReq(engine, conn, caller, id, picked, timeoutMs, buf, start, fields.payloadStart);
  const p = engine.router.open(caller, id, picked, engine.now(), timeoutMs);
  deliver(engine, picked.proc, BusMsgId.Req, buf, start, len, p.rid, caller, false);
}

export function handleRep(
  engine: BusEngine,
  conn: BusConn,
  buf: Uint8Array,
  start: number,
  len: number,
): void {
  const stats = engine.stats;
  stats.msgsIn += 1;
  const server = conn.proc;
  if (len < DATA_MIN_BODY || server === undefined) {
    if (server === undefined) return engine.notRegistered(conn, BusMsgId.Rep, 0);
    return engine.badBody(conn, BusMsgId.Rep, 0, `malformed REP frame of ${len} bytes`);
  }
  server.msgsIn += 1;
  const p = engine.router.pending.get(readU32(buf, start));
  if (p === undefined || p.server.proc !== server) {
    stats.lateReplies += 1;
    // A late shared-memory reply is dropped here: give the responder's reference back.
    if (
      parseDataFrame(buf, start, len, fields) &&
      fields.kind === PayloadKind.SHM &&
      fields.end - fields.payloadStart === SHM_PUB_PAYLOAD_BYTES
    )
      releaseShm(engine, server, buf, fields.payloadStart);
    return;
  }
  engine.router.finish(p);
  const status = buf[start + 8] as number;
  if (status === ReplyStatus.OK) stats.requests.ok += 1;
  else stats.requests.error += 1;
  engine.observeRequest(engine.now() - p.startMs);
  if (
    status === ReplyStatus.OK &&
    parseDataFrame(buf, start, len, fields) &&
    fields.kind === PayloadKind.SHM
  ) {
    if (fields.end - fields.payloadStart !== SHM_PUB_PAYLOAD_BYTES || server.creds === undefined) {
      const c = p.caller.conn;
      if (c !== undefined)
        engine.replyStatus(
          c,
          p.callerId,
          ReplyStatus.SHM_FAILED,
          'the responder sent a malformed shared-memory reply',
        );
      return;
    }
    return shmRep(engine, conn, server, p, buf, start, fields.payloadStart);
  }
  deliver(engine, p.caller, BusMsgId.Rep, buf, start, len, p.callerId, server, false);
}
