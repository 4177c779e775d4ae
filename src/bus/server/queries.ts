import type { WireProcInfo, WireTopicServer } from '../wire/control.js';
import { ProcState, type Proc } from './proc.js';
import type { Router } from './router.js';

/**
 * What queries (QUERY_PROC, QUERY_TOPIC) and the admin routes (/procs, /subs) report about procs,
 * built from the live tables on demand (never on the hot path).
 */
export function procInfo(proc: Proc, nowMs: number, withPrivate: boolean): WireProcInfo {
  const conn = proc.conn;
  return {
    name: proc.name,
    num: proc.num,
    pid: proc.creds?.pid ?? 0,
    uid: proc.creds?.uid ?? 0,
    creds_known: proc.creds !== undefined,
    public_info: proc.publicInfo,
    private_info: withPrivate ? proc.privateInfo : '',
    state: proc.state,
    connected: conn !== undefined,
    idle_ms: Math.max(0, Math.round(nowMs - proc.lastHeardMs)),
    msgs_in: proc.msgsIn,
    msgs_out: proc.msgsOut,
    dropped: proc.dropped,
    pending_bytes: conn ? conn.pendingBytes : 0,
    serves: [...proc.serves.values()].map((s) => ({
      sid: s.sid,
      topic: s.topic,
      queue: s.queue,
      concurrency: s.concurrency,
      in_flight: s.inFlight,
      requests: s.requests,
    })),
    subscriptions: [...proc.subs.values()].map((s) => ({
      sid: s.sid,
      subject: s.subject,
      queue: s.queue,
      exact: s.exact,
      msgs: s.msgs,
    })),
  };
}

/** Servers of `topic` ('' = every served topic), seed QueryTopic: online = the proc is normal. */
export function topicServers(router: Router, topic: string, nowMs: number): WireTopicServer[] {
  const names = topic === '' ? [...router.topicNames()].sort() : [topic];
  const out: WireTopicServer[] = [];
  for (const t of names) {
    for (const reg of router.servers(t)) {
      const info = procInfo(reg.proc, nowMs, false);
      info.serves = [];
      info.subscriptions = [];
      out.push({ topic: t, proc: info, online: reg.proc.state === ProcState.NORMAL, queue: reg.queue });
    }
  }
  return out;
}

/** JSON of GET /procs (like nats-server /connz): every proc, without private info. */
export function procsJson(procs: Iterable<Proc>, nowMs: number): unknown {
  const list = [...procs].map((p) => {
    const i = procInfo(p, nowMs, false);
    return {
      name: i.name,
      num: i.num,
      pid: i.creds_known ? i.pid : null,
      uid: i.creds_known ? i.uid : null,
      state: i.state,
      offlineReason: p.offlineReason ?? null,
      connected: i.connected,
      idleMs: i.idle_ms,
      publicInfo: i.public_info,
      msgsIn: i.msgs_in,
      msgsOut: i.msgs_out,
      dropped: i.dropped,
      pendingBytes: i.pending_bytes,
      serves: i.serves?.map((s) => ({
        topic: s.topic,
        queue: s.queue,
        concurrency: s.concurrency,
        inFlight: s.in_flight,
      })),
      subscriptions: i.subscriptions?.map((s) => ({
        subject: s.subject,
        queue: s.queue,
        exact: s.exact,
        msgs: s.msgs,
      })),
    };
  });
  return { count: list.length, procs: list };
}

/** JSON of GET /subs (like nats-server /subsz): every subscription and served topic. */
export function subsJson(procs: Iterable<Proc>, router: Router): unknown {
  const subscriptions: unknown[] = [];
  for (const p of procs)
    for (const s of p.subs.values())
      subscriptions.push({
        proc: p.name,
        sid: s.sid,
        subject: s.subject,
        queue: s.queue,
        exact: s.exact,
        msgs: s.msgs,
      });
  const topics = [...router.topicNames()].sort().map((t) => ({
    topic: t,
    servers: router.servers(t).map((r) => ({
      proc: r.proc.name,
      state: r.proc.state,
      queue: r.queue,
      concurrency: r.concurrency,
      inFlight: r.inFlight,
      requests: r.requests,
    })),
  }));
  return {
    subscriptions: subscriptions.length,
    list: subscriptions,
    topics,
    pendingRequests: router.pending.size,
  };
}
