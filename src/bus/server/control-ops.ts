import {
  BusError,
  ClosedError,
  ErrorCode,
  InvalidArgumentError,
  ProtocolError,
  type LarsError,
} from '../../errors.js';
import { Control, type Hello, type Serve, type Sub } from '../wire/control.js';
import { BusMsgId, busMsgIdName } from '../wire/msg-id.js';
import { checkName, checkSubject, checkSubscription } from '../wire/subject.js';
import type { BusConn } from './bus-conn.js';
import type { BusEngine } from './bus-engine.js';
import type { Proc } from './proc.js';
import { procInfo, topicServers } from './queries.js';
import { ServeReg } from './router.js';
import { BusSub } from './subscription.js';

/** Longest public/private info a proc may register. */
const MAX_INFO_BYTES = 4_096;
/** Largest concurrency a server may ask for. */
const MAX_CONCURRENCY = 65_535;

/**
 * Control frames (protobuf bodies): registration, subscriptions, served topics, queries, liveness.
 * Every failure is an ERR for that operation; the connection stays (DESIGN §9 bad input).
 */
export function handleControl(engine: BusEngine, conn: BusConn, msgid: number, body: Uint8Array): void {
  try {
    dispatch(engine, conn, msgid, body);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    fail(engine, conn, msgid, idOf(msgid, body), err);
  }
}

function dispatch(engine: BusEngine, conn: BusConn, msgid: number, body: Uint8Array): void {
  switch (msgid) {
    case BusMsgId.Hello:
      return hello(engine, conn, Control.hello.decode(body));
    case BusMsgId.Ping:
      return conn.sendControl(
        BusMsgId.Pong,
        Control.pong.encode({ req_id: Control.ping.decode(body).req_id }),
      );
  }
  const known =
    msgid === BusMsgId.Sub ||
    msgid === BusMsgId.Unsub ||
    msgid === BusMsgId.Serve ||
    msgid === BusMsgId.Unserve ||
    msgid === BusMsgId.QueryTopic ||
    msgid === BusMsgId.QueryProc ||
    msgid === BusMsgId.Heartbeat ||
    msgid === BusMsgId.Unregister;
  if (!known) {
    engine.stats.unknownMsgid += 1;
    return fail(engine, conn, msgid, 0, new InvalidArgumentError(`unknown operation ${busMsgIdName(msgid)}`));
  }
  const proc = conn.proc;
  if (proc === undefined) return engine.notRegistered(conn, msgid, idOf(msgid, body));
  switch (msgid) {
    case BusMsgId.Sub:
      return subscribe(engine, conn, proc, Control.sub.decode(body));
    case BusMsgId.Unsub: {
      const sub = proc.subs.get(Control.unsub.decode(body).sid);
      if (sub) {
        proc.subs.delete(sub.sid);
        engine.sublist.remove(sub);
      }
      return;
    }
    case BusMsgId.Serve:
      return serve(engine, conn, proc, Control.serve.decode(body));
    case BusMsgId.Unserve: {
      const reg = proc.serves.get(Control.unserve.decode(body).sid);
      if (reg) {
        proc.serves.delete(reg.sid);
        engine.router.remove(reg);
      }
      return;
    }
    case BusMsgId.QueryTopic: {
      const q = Control.queryTopic.decode(body);
      if (q.topic !== '') {
        const bad = checkSubject(q.topic, 'topic');
        if (bad) return fail(engine, conn, msgid, q.req_id, new InvalidArgumentError(bad), q.topic);
      }
      const servers = topicServers(engine.router, q.topic, engine.now());
      return conn.sendControl(BusMsgId.TopicInfo, Control.topicInfo.encode({ req_id: q.req_id, servers }));
    }
    case BusMsgId.QueryProc: {
      const q = Control.queryProc.decode(body);
      const now = engine.now();
      const list: Proc[] =
        q.name === '' ? [...engine.procs.all()] : [engine.procs.get(q.name)].filter((p) => p !== undefined);
      const procs = list.map((p) => procInfo(p, now, p === proc));
      return conn.sendControl(BusMsgId.ProcList, Control.procList.encode({ req_id: q.req_id, procs }));
    }
    case BusMsgId.Heartbeat:
      return; // heard() already counted it: any frame keeps a proc normal
    case BusMsgId.Unregister:
      conn.proc = undefined;
      engine.procs.detach(proc, 'unregistered');
      engine.failServed(proc, `the responder ${proc.name} unregistered`);
      return;
  }
}

function hello(engine: BusEngine, conn: BusConn, m: Hello): void {
  if (conn.proc !== undefined)
    return fail(
      engine,
      conn,
      BusMsgId.Hello,
      0,
      new InvalidArgumentError(`this connection is already registered as ${conn.proc.name}`),
    );
  if (engine.lameDuck)
    return fail(engine, conn, BusMsgId.Hello, 0, new ClosedError('the bus is shutting down'));
  const bad = checkName(m.name, 'proc name');
  if (bad) return fail(engine, conn, BusMsgId.Hello, 0, new InvalidArgumentError(bad));
  if (Buffer.byteLength(m.public_info) > MAX_INFO_BYTES || Buffer.byteLength(m.private_info) > MAX_INFO_BYTES)
    return fail(
      engine,
      conn,
      BusMsgId.Hello,
      0,
      new InvalidArgumentError(`public/private info is limited to ${MAX_INFO_BYTES} bytes`),
    );
  const r = engine.procs.register(m.name, conn, conn.creds, {
    publicInfo: m.public_info,
    privateInfo: m.private_info,
    takeover: m.takeover,
  });
  if (!r.ok) {
    const pid = r.holder.creds ? ` (pid ${r.holder.creds.pid})` : '';
    const err = new BusError(
      ErrorCode.BUS_NAME_IN_USE,
      `proc name "${m.name}" is held by a live proc${pid}; connect with takeover to replace it`,
    );
    return fail(engine, conn, BusMsgId.Hello, 0, err);
  }
  conn.proc = r.proc;
  conn.known.clear();
  const s = engine.settings;
  conn.sendControl(
    BusMsgId.HelloOk,
    Control.helloOk.encode({
      proc_num: r.proc.num,
      bus_id: engine.busId,
      heartbeat_ms: s.heartbeatMs,
      offline_ms: s.offlineMs,
      kill_ms: s.killMs,
      max_payload: s.maxPayload,
      replaced: r.replaced !== undefined,
      pid: conn.creds?.pid ?? 0,
      uid: conn.creds?.uid ?? 0,
      creds_known: conn.creds !== undefined,
    }),
  );
  engine.log.info(
    {
      proc: m.name,
      num: r.proc.num,
      pid: conn.creds?.pid,
      uid: conn.creds?.uid,
      replaced: r.replaced !== undefined,
    },
    'proc registered',
  );
}

function subscribe(engine: BusEngine, conn: BusConn, proc: Proc, m: Sub): void {
  const bad = checkSubscription(m.subject) ?? (m.queue !== '' ? checkName(m.queue, 'queue name') : undefined);
  if (bad) return fail(engine, conn, BusMsgId.Sub, m.sid, new InvalidArgumentError(bad), m.subject);
  if (proc.subs.has(m.sid))
    return fail(
      engine,
      conn,
      BusMsgId.Sub,
      m.sid,
      new InvalidArgumentError(`subscription id ${m.sid} is in use`),
      m.subject,
    );
  if (overLimit(engine, conn, proc, BusMsgId.Sub, m.sid, m.subject)) return;
  const sub = new BusSub(proc, m.sid, m.subject, m.queue, m.exact);
  proc.subs.set(m.sid, sub);
  engine.sublist.insert(sub);
}

function serve(engine: BusEngine, conn: BusConn, proc: Proc, m: Serve): void {
  const bad =
    checkSubject(m.topic, 'topic') ?? (m.queue !== '' ? checkName(m.queue, 'queue name') : undefined);
  if (bad) return fail(engine, conn, BusMsgId.Serve, m.sid, new InvalidArgumentError(bad), m.topic);
  if (proc.serves.has(m.sid))
    return fail(
      engine,
      conn,
      BusMsgId.Serve,
      m.sid,
      new InvalidArgumentError(`serve id ${m.sid} is in use`),
      m.topic,
    );
  if (overLimit(engine, conn, proc, BusMsgId.Serve, m.sid, m.topic)) return;
  const concurrency = Math.min(MAX_CONCURRENCY, m.concurrency || engine.settings.defaultConcurrency);
  const reg = new ServeReg(proc, m.sid, m.topic, m.queue, concurrency);
  proc.serves.set(m.sid, reg);
  engine.router.add(reg);
}

function overLimit(
  engine: BusEngine,
  conn: BusConn,
  proc: Proc,
  op: number,
  sid: number,
  subject: string,
): boolean {
  const max = engine.settings.maxSubsPerConn;
  if (proc.subs.size + proc.serves.size < max) return false;
  const err = new BusError(
    ErrorCode.BUS_LIMIT,
    `at most ${max} subscriptions and served topics per connection`,
    subject,
  );
  fail(engine, conn, op, sid, err, subject);
  return true;
}

function fail(engine: BusEngine, conn: BusConn, op: number, id: number, err: LarsError, subject = ''): void {
  engine.stats.badRequests += 1;
  conn.sendErr(op, id, err, subject);
}

/** The id an ERR should carry for a control request, read leniently (0 when the body is unusable). */
function idOf(msgid: number, body: Uint8Array): number {
  try {
    switch (msgid) {
      case BusMsgId.Sub:
        return Control.sub.decode(body).sid;
      case BusMsgId.Serve:
        return Control.serve.decode(body).sid;
      case BusMsgId.QueryTopic:
        return Control.queryTopic.decode(body).req_id;
      case BusMsgId.QueryProc:
        return Control.queryProc.decode(body).req_id;
    }
  } catch {
    // an undecodable body gets id 0
  }
  return 0;
}
