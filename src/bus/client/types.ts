import type { ShmClient, ShmClientOptions } from '../../shm/shm-client.js';
import type { WireProcInfo, WireTopicServer } from '../wire/control.js';

export type BusClientState = 'connecting' | 'ready' | 'reconnecting' | 'closed';
export type BusProcState = 'normal' | 'offline' | 'killme';

export interface BusClientOptions {
  /** Proc name, unique among live procs of the bus (1-64 printable ASCII bytes). */
  name: string;
  /** Unix socket of the bus. Default: LARS_BUS_SOCKET, else <LARS_DATA_DIR or ./lars-data>/bus/bus.sock. */
  socket?: string;
  publicInfo?: string;
  /** Only returned to this proc itself by queryProc. */
  privateInfo?: string;
  /** Replace a live proc of the same name instead of failing with LARS_ERR_BUS_NAME_IN_USE. */
  takeover?: boolean;
  /** Heartbeat interval while otherwise quiet. Default: what the bus asks for (1000 ms). */
  heartbeatMs?: number;
  /** Reconnect with backoff and jitter after the connection is lost (default on), or false. */
  reconnect?: false | { initialMs?: number; maxMs?: number; jitter?: number };
  /** Bytes buffered (connected or not) before publish() throws LARS_ERR_QUEUE_FULL. Default 16 MiB. */
  maxOutboundBytes?: number;
  /** How long connect() waits for the bus to come up (0 = forever). Default 10 s. */
  connectTimeoutMs?: number;
  /** Default timeout of request() and queries. Default 5 s. */
  requestTimeoutMs?: number;
  /**
   * lars shm for shared-memory messages this client receives: a connected ShmClient (stays the
   * caller's), or options to connect one on the first such message (closed with this client).
   * Default: connect with default options (LARS_SHM_SOCKET) when first needed.
   */
  shm?: ShmClient | ShmClientOptions;
}

export interface PublishOptions {
  headers?: Record<string, string>;
  /** A ShmBuffer payload stays this process's too (each receiver gets a new reference). */
  keep?: boolean;
}

export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** A ShmBuffer payload stays this process's too. */
  keep?: boolean;
}

export interface ProcInfo {
  name: string;
  /** Kernel-reported (SO_PEERCRED) pid and uid; undefined when the bus could not read them. */
  pid: number | undefined;
  uid: number | undefined;
  publicInfo: string;
  /** Present only when a proc queries itself. */
  privateInfo?: string;
  state: BusProcState;
  connected: boolean;
  /** Milliseconds since the bus last heard from it. */
  idleMs: number;
  serves: { topic: string; queue: string; concurrency: number; inFlight: number; requests: number }[];
  subscriptions: { subject: string; queue: string; exact: boolean; msgs: number }[];
  msgsIn: number;
  msgsOut: number;
  dropped: number;
  pendingBytes: number;
}

export interface TopicServerInfo {
  topic: string;
  proc: ProcInfo;
  /** The serving proc is normal (seed QueryTopic "online"). */
  online: boolean;
  queue: string;
}

/** Payload of the 'slowConsumer' event: messages lost for this client, where, and (client side) for which subscription. */
export interface SlowConsumerEvent {
  dropped: number;
  where: 'bus' | 'client';
  subject?: string;
  message: string;
}

/** What HELLO_OK told this client. */
export interface BusSession {
  procNum: number;
  busId: string;
  heartbeatMs: number;
  offlineMs: number;
  killMs: number;
  maxPayload: number;
  /** An offline proc of the same name was replaced (or a live one taken over). */
  replaced: boolean;
  /** This process as the kernel reported it to the bus (undefined when unknown). */
  pid: number | undefined;
  uid: number | undefined;
}

export function toProcInfo(p: WireProcInfo): ProcInfo {
  const known = p.creds_known === true;
  return {
    name: p.name ?? '',
    pid: known ? (p.pid ?? 0) : undefined,
    uid: known ? (p.uid ?? 0) : undefined,
    publicInfo: p.public_info ?? '',
    ...(p.private_info ? { privateInfo: p.private_info } : {}),
    state: (p.state ?? 'offline') as BusProcState,
    connected: p.connected === true,
    idleMs: Number(p.idle_ms ?? 0),
    serves: (p.serves ?? []).map((s) => ({
      topic: s.topic ?? '',
      queue: s.queue ?? '',
      concurrency: s.concurrency ?? 0,
      inFlight: s.in_flight ?? 0,
      requests: Number(s.requests ?? 0),
    })),
    subscriptions: (p.subscriptions ?? []).map((s) => ({
      subject: s.subject ?? '',
      queue: s.queue ?? '',
      exact: s.exact === true,
      msgs: Number(s.msgs ?? 0),
    })),
    msgsIn: Number(p.msgs_in ?? 0),
    msgsOut: Number(p.msgs_out ?? 0),
    dropped: Number(p.dropped ?? 0),
    pendingBytes: Number(p.pending_bytes ?? 0),
  };
}

export function toTopicServer(t: WireTopicServer): TopicServerInfo {
  return {
    topic: t.topic ?? '',
    proc: toProcInfo(t.proc ?? {}),
    online: t.online === true,
    queue: t.queue ?? '',
  };
}
