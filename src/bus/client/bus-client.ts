import { EventEmitter } from 'node:events';
import {
  BusError,
  ClosedError,
  ErrorCode,
  InvalidArgumentError,
  isLarsError,
  ProtocolError,
  TimeoutError,
} from '../../errors.js';
import { Backoff } from '../../net/backoff.js';
import {
  BUS_FRAME_OVERHEAD,
  DEFAULT_BUS_MAX_OUTBOUND_BYTES,
  DEFAULT_BUS_REQUEST_TIMEOUT_MS,
} from '../defaults.js';
import { defaultBusSocket } from '../socket-path.js';
import { Control, NoticeKind, type Err } from '../wire/control.js';
import type { ShmBuffer } from '../../shm/shm-buffer.js';
import { DataFields, parseDataFrame, PayloadKind, readU32, ReplyStatus } from '../wire/data-frame.js';
import { BUS_PROTOCOL_VERSION, BusMsgId } from '../wire/msg-id.js';
import { checkName, checkSubject, checkSubscription } from '../wire/subject.js';
import { BusMsg } from './bus-msg.js';
import { ClientLink } from './client-link.js';
import type { ClientSide } from './client-side.js';
import { ControlRequests } from './control-requests.js';
import { DataOut } from './data-out.js';
import { InboundGate } from './inbound-gate.js';
import { ShmReceiver } from './shm-receiver.js';
import { PendingTable } from './pending.js';
import { errFrameError, replyError } from './reply-errors.js';
import type { BusHandler, BusResponder, ServeOptions } from './responder.js';
import { Responders } from './responders.js';
import type { SubscribeOptions, Subscription } from './subscription.js';
import { Subscriptions } from './subscriptions.js';
import {
  type BusClientOptions,
  type BusClientState,
  type BusSession,
  type ProcInfo,
  type PublishOptions,
  type RequestOptions,
  type SlowConsumerEvent,
  type TopicServerInfo,
} from './types.js';

/** The client accepts frames up to the largest max_payload the bus can be configured with. */
const CLIENT_MAX_FRAME = 64 * 1024 * 1024 + BUS_FRAME_OVERHEAD;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_RECONNECT = { initialMs: 100, maxMs: 5_000, jitter: 0.5 };
/** close(): how long the bus gets to take what is staged before the socket is destroyed. */
const CLOSE_LINGER_MS = 2_000;
const EMPTY = new Uint8Array(0);

/**
 * Client of the same-host message bus (DESIGN §9; docs/bus.md): `import { BusClient } from 'lars/bus'`.
 * Imports nothing from servers or databases.
 *
 *     const bus = await BusClient.connect({ name: 'vss' });
 *     bus.publish('video.cam1', frame);
 *     for await (const m of bus.subscribe('video')) …          // 'video' and every 'video.…'
 *     bus.serve('svc.resize', (req) => resize(req.data));
 *     const rep = await bus.request('svc.resize', bytes, { timeoutMs: 1000 });
 *
 * Events: 'state' (state, previous), 'slowConsumer' (SlowConsumerEvent), 'drain' (publish may resume
 * after LARS_ERR_QUEUE_FULL), 'lameDuck' (the bus is shutting down), 'error' (asynchronous failures
 * such as a refused publish; only emitted when a listener is attached).
 */
export class BusClient extends EventEmitter {
  readonly name: string;
  readonly socketPath: string;
  private _state: BusClientState = 'connecting';
  private _session: BusSession | undefined;
  private readonly link: ClientLink;
  private readonly out: DataOut;
  private readonly subs: Subscriptions;
  private readonly responders: Responders;
  private readonly requestTimeoutMs: number;
  private readonly hello: Uint8Array;
  private readonly heartbeatOverride: number | undefined;
  private readonly backoff: Backoff | undefined;
  private sid = 1;
  private readonly requests = new PendingTable<BusMsg>(
    (topic, ms) =>
      new TimeoutError(
        `request to "${topic}" timed out after ${ms} ms (a responder took it but did not answer)`,
      ),
  );
  private readonly controls: ControlRequests;
  private readonly names = new Map<number, string>();
  private lastFromNum = -1;
  private lastFromName = '';
  private lastPubSubject = '';
  private lastReqTopic = '';
  private readonly fields = new DataFields();
  private readonly shmIn: ShmReceiver;
  private readonly inbound = new InboundGate((msgid, buf, start, len) => this.onData(msgid, buf, start, len));
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private firstReady: { resolve(): void; reject(err: Error): void } | undefined;
  private readonly ready: Promise<void>;
  private lastError: Error | undefined;
  private takenOver = false;
  private closing: Promise<void> | undefined;
  private _lateReplies = 0;

  /** Connects and registers; resolves once the bus accepted the name (waits for a bus not yet up). */
  static async connect(options: BusClientOptions): Promise<BusClient> {
    const client = new BusClient(options);
    await client.ready;
    return client;
  }

  private constructor(o: BusClientOptions) {
    super();
    const bad = checkName(o.name ?? '', 'proc name');
    if (bad) throw new InvalidArgumentError(bad);
    this.name = o.name;
    this.socketPath = o.socket ?? defaultBusSocket();
    this.requestTimeoutMs = o.requestTimeoutMs ?? DEFAULT_BUS_REQUEST_TIMEOUT_MS;
    this.heartbeatOverride = o.heartbeatMs;
    this.hello = Control.hello.encode({
      name: o.name,
      public_info: o.publicInfo ?? '',
      private_info: o.privateInfo ?? '',
      takeover: o.takeover === true,
      protocol_version: BUS_PROTOCOL_VERSION,
    });
    this.backoff = o.reconnect === false ? undefined : new Backoff({ ...DEFAULT_RECONNECT, ...o.reconnect });
    this.ready = new Promise<void>((resolve, reject) => (this.firstReady = { resolve, reject }));
    this.ready.catch(() => {});
    this.link = new ClientLink(this.socketPath, CLIENT_MAX_FRAME, {
      opened: () => this.opened(),
      frame: (msgid, buf, start, len) => this.onFrame(msgid, buf, start, len),
      violation: (err) => (this.lastError = err),
      closed: (err) => this.linkClosed(err),
      written: () => {
        if (this.out.drained()) this.emit('drain');
      },
    });
    this.out = new DataOut(this.link, this.name, o.maxOutboundBytes ?? DEFAULT_BUS_MAX_OUTBOUND_BYTES);
    this.shmIn = new ShmReceiver(o.shm);
    const side: ClientSide = { link: this.link, nameOf: (n) => this.nameOf(n), nextSid: () => this.sid++ };
    this.subs = new Subscriptions(side, {
      clientDrop: (s, n) =>
        this.emit('slowConsumer', {
          dropped: n,
          where: 'client',
          subject: s.subject,
          message: `${n} messages for "${s.subject}" were dropped: the iterator fell behind`,
        } satisfies SlowConsumerEvent),
      callbackError: (err) => this.callbackError(err),
    });
    this.responders = new Responders(side, this.out, this.name);
    this.controls = new ControlRequests(
      this.link,
      this.requestTimeoutMs,
      () => this._state === 'closed',
      () => this.nextGen(),
    );
    const connectTimeoutMs = o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    // Not unref()'d: connect() is awaited, so its deadline must keep the process alive until then.
    if (connectTimeoutMs > 0)
      this.connectTimer = setTimeout(() => this.connectTimedOut(connectTimeoutMs), connectTimeoutMs);
    this.link.dial();
  }

  get state(): BusClientState {
    return this._state;
  }

  /** What the bus said at registration (proc number, heartbeat, limits, the kernel's pid/uid of us). */
  get session(): BusSession | undefined {
    return this._session;
  }

  /** Replies that arrived after their request had timed out or was aborted. */
  get lateReplies(): number {
    return this._lateReplies;
  }

  // ---- publish / subscribe -------------------------------------------------------------------------

  /**
   * Publishes `data` on `subject` (fire and forget, at most once). Synchronous: when the client's
   * outbound buffer (connected or not) is full it throws LARS_ERR_QUEUE_FULL; the 'drain' event (or
   * `await flush()`) says when to resume. A ShmBuffer goes by reference (each receiving process gets
   * the same memory); it is no longer this process's unless `keep`.
   */
  publish(subject: string, data: Uint8Array | string | ShmBuffer, opts?: PublishOptions): void {
    this.assertOpen();
    if (subject !== this.lastPubSubject) {
      const bad = checkSubject(subject);
      if (bad) throw new InvalidArgumentError(bad);
      this.lastPubSubject = subject;
    }
    this.out.stage(BusMsgId.Pub, 0, 0, 0, subject, data, opts?.headers, true, opts?.keep === true);
  }

  /** Subscribes: an async iterable of messages, or a callback (options.callback). */
  subscribe(subject: string, opts: SubscribeOptions = {}): Subscription {
    this.assertOpen();
    const bad = checkSubscription(subject) ?? (opts.queue ? checkName(opts.queue, 'queue name') : undefined);
    if (bad) throw new InvalidArgumentError(bad);
    return this.subs.add(subject, opts);
  }

  // ---- request / reply -----------------------------------------------------------------------------

  /** Serves `topic`: the handler's return value is the reply; a throw becomes LARS_ERR_BUS_HANDLER. */
  serve(topic: string, handler: BusHandler, opts: ServeOptions = {}): BusResponder {
    this.assertOpen();
    const bad =
      checkSubject(topic, 'topic') ?? (opts.queue ? checkName(opts.queue, 'queue name') : undefined);
    if (bad) throw new InvalidArgumentError(bad);
    return this.responders.add(topic, handler, opts);
  }

  /** @internal The bus bridge: answers requests the bus relays here for topics no one serves locally. */
  serveUnmatched(handler: BusHandler): void {
    this.responders.serveUnmatched(handler);
  }

  /**
   * Sends a request through the bus to one server of `topic`. Rejects with LARS_ERR_BUS_NO_RESPONDERS
   * (nobody serves it, at once), LARS_ERR_TIMEOUT (a server took it but did not answer in time),
   * LARS_ERR_CLOSED (the server's or this connection closed first), LARS_ERR_BUS_OVERLOADED,
   * LARS_ERR_BUS_HANDLER (the handler threw), or the signal's reason when aborted.
   */
  request(topic: string, data: Uint8Array | string | ShmBuffer, opts: RequestOptions = {}): Promise<BusMsg> {
    if (this._state === 'closed') return Promise.reject(new ClosedError(`bus client ${this.name} is closed`));
    if (topic !== this.lastReqTopic) {
      const bad = checkSubject(topic, 'topic');
      if (bad) return Promise.reject(new InvalidArgumentError(bad));
      this.lastReqTopic = topic;
    }
    const signal = opts.signal;
    if (signal?.aborted)
      return Promise.reject(signal.reason instanceof Error ? signal.reason : new ClosedError('aborted'));
    const timeoutMs = opts.timeoutMs ?? this.requestTimeoutMs;
    const id = this.requests.allocate();
    const aux = Math.min(Math.max(0, Math.round(timeoutMs)), 0xffffffff);
    try {
      this.out.stage(BusMsgId.Req, id, aux, 0, topic, data, opts.headers, true, opts.keep === true);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.requests.add(id, this.nextGen(), topic, timeoutMs, signal);
  }

  // ---- queries -------------------------------------------------------------------------------------

  /** Who serves `topic` (all served topics when omitted), with each server's online flag. */
  queryTopic(topic = ''): Promise<TopicServerInfo[]> {
    return this.controls.queryTopic(topic);
  }

  /** Every proc, or the one named (undefined when unknown): state, info, served topics, subscriptions. */
  queryProc(): Promise<ProcInfo[]>;
  queryProc(name: string): Promise<ProcInfo | undefined>;
  async queryProc(name?: string): Promise<ProcInfo[] | ProcInfo | undefined> {
    const procs = await this.controls.queryProc(name ?? '');
    return name === undefined ? procs : procs[0];
  }

  /** Resolves once the bus has processed everything sent before (a PING/PONG round trip). */
  flush(): Promise<void> {
    return this.controls.ping();
  }

  // ---- lifecycle -----------------------------------------------------------------------------------

  /** Stops subscriptions and served topics, waits for running handlers and the bus, then closes. */
  async drain(): Promise<void> {
    if (this._state === 'closed') return this.closing;
    for (const s of this.subs.all()) s.unsubscribe();
    const running = this.responders.all();
    for (const r of running) r.stop();
    if (this.link.isConnected) await this.flush().catch(() => {});
    await Promise.all(running.map((r) => r.settled()));
    await this.close();
  }

  /** Sends what is staged, unregisters and closes. Pending requests fail with LARS_ERR_CLOSED. */
  close(): Promise<void> {
    this.closing ??= this.shutdown(new ClosedError(`bus client ${this.name} is closed`), true);
    return this.closing;
  }

  /** Closes at once; staged messages are lost. */
  destroy(err?: Error): void {
    this.closing ??= this.shutdown(err ?? new ClosedError(`bus client ${this.name} was destroyed`), false);
  }

  // ---- internals -----------------------------------------------------------------------------------

  private assertOpen(): void {
    if (this._state === 'closed') throw new ClosedError(`bus client ${this.name} is closed`);
  }

  /** Generation of the socket the next staged frame will be written to. */
  private nextGen(): number {
    return this.link.hasSocket ? this.link.gen : this.link.gen + 1;
  }

  /** A new socket connected: HELLO, then every subscription and served topic again (replay). */
  private opened(): void {
    this.link.stage(BusMsgId.Hello, this.hello);
    this.subs.replay();
    this.responders.replay();
  }

  private onFrame(msgid: number, buf: Uint8Array, start: number, len: number): void {
    try {
      switch (msgid) {
        case BusMsgId.Msg:
        case BusMsgId.Rep:
        case BusMsgId.Req:
          return this.inbound.push(msgid, buf, start, len);
      }
      const body = buf.subarray(start, start + len);
      if (this.controls.answer(msgid, body)) return;
      switch (msgid) {
        case BusMsgId.ProcName: {
          const m = Control.procName.decode(body);
          this.names.set(m.num, m.name);
          this.lastFromNum = -1;
          return;
        }
        case BusMsgId.HelloOk:
          return this.helloOk(body);
        case BusMsgId.Err:
          return this.onErr(Control.err.decode(body));
        case BusMsgId.Notice:
          return this.onNotice(body);
      }
    } catch (err) {
      this.asyncError(err);
    }
  }

  /** A data frame in arrival order; a shared-memory one is taken from lars shm first (a promise). */
  private onData(msgid: number, buf: Uint8Array, start: number, len: number): Promise<void> | void {
    try {
      const f = this.fields;
      if (parseDataFrame(buf, start, len, f) && f.kind === PayloadKind.SHM)
        return this.onShm(msgid, buf, start, len);
      this.dispatch(msgid, buf, start, len, undefined);
    } catch (err) {
      this.asyncError(err);
    }
  }

  private dispatch(
    msgid: number,
    buf: Uint8Array,
    start: number,
    len: number,
    shm: ShmBuffer | undefined,
  ): void {
    if (msgid === BusMsgId.Msg) this.subs.onMsg(buf, start, len, this.fields, shm);
    else if (msgid === BusMsgId.Rep) this.onRep(buf, start, len, shm);
    else this.responders.onReq(buf, start, len, this.fields, shm);
  }

  private async onShm(msgid: number, buf: Uint8Array, start: number, len: number): Promise<void> {
    const f = new DataFields();
    parseDataFrame(buf, start, len, f);
    let shm: ShmBuffer;
    try {
      shm = await this.shmIn.take(buf, f);
    } catch (err) {
      if (msgid === BusMsgId.Req) this.responders.shmFailed(buf, start, err);
      else if (msgid === BusMsgId.Rep) this.requests.take(readU32(buf, start))?.reject(err as Error);
      else this.asyncError(err);
      return;
    }
    try {
      this.dispatch(msgid, buf, start, len, shm);
    } catch (err) {
      this.asyncError(err);
    }
  }

  private nameOf(num: number): string {
    if (num !== this.lastFromNum) {
      this.lastFromNum = num;
      this.lastFromName = this.names.get(num) ?? '';
    }
    return this.lastFromName;
  }

  private onRep(buf: Uint8Array, start: number, len: number, shm?: ShmBuffer): void {
    const w = this.requests.take(readU32(buf, start));
    if (w === undefined) {
      this._lateReplies += 1;
      void shm?.release();
      return;
    }
    const f = this.fields;
    if (!parseDataFrame(buf, start, len, f)) {
      w.reject(new ProtocolError(ErrorCode.BAD_BODY, `malformed reply to "${w.what}"`));
      return;
    }
    const status = buf[start + 8] as number;
    const msg = new BusMsg(buf, f, this.nameOf(readU32(buf, start + 4)), undefined, w.what, shm);
    if (status === ReplyStatus.OK) w.resolve(msg);
    else w.reject(replyError(status, w.what, msg));
  }

  private helloOk(body: Uint8Array): void {
    const m = Control.helloOk.decode(body);
    this._session = {
      procNum: m.proc_num,
      busId: m.bus_id,
      heartbeatMs: m.heartbeat_ms,
      offlineMs: m.offline_ms,
      killMs: m.kill_ms,
      maxPayload: m.max_payload,
      replaced: m.replaced,
      pid: m.creds_known ? m.pid : undefined,
      uid: m.creds_known ? m.uid : undefined,
    };
    this.out.maxPayload = m.max_payload;
    this.lastError = undefined;
    this.backoff?.reset();
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.startHeartbeat(this.heartbeatOverride ?? m.heartbeat_ms);
    this.setState('ready');
    this.firstReady?.resolve();
    this.firstReady = undefined;
  }

  private onErr(m: Err): void {
    const err = errFrameError(m);
    switch (m.op) {
      case BusMsgId.Hello:
        this.lastError = err;
        if (this.firstReady) this.shutdownLater(err);
        return;
      case BusMsgId.Sub:
        return this.subs.refused(m.id, err);
      case BusMsgId.Serve:
        this.responders.refused(m.id);
        return this.asyncError(err);
      case BusMsgId.QueryTopic:
      case BusMsgId.QueryProc:
      case BusMsgId.Ping:
        return this.controls.pending.fail(m.id, err);
      case 0:
        this.lastError = err;
        if (err.code === ErrorCode.MAX_CONNECTIONS && this.firstReady) this.shutdownLater(err);
        return;
      default:
        return this.asyncError(err);
    }
  }

  private onNotice(body: Uint8Array): void {
    const m = Control.notice.decode(body);
    if (m.kind === NoticeKind.SLOW_CONSUMER) {
      const e: SlowConsumerEvent = { dropped: Number(m.dropped), where: 'bus', message: m.message };
      this.emit('slowConsumer', e);
    } else if (m.kind === NoticeKind.LAME_DUCK) {
      this.emit('lameDuck', m.message);
    } else if (m.kind === NoticeKind.TAKEN_OVER) {
      this.takenOver = true;
      this.lastError = new BusError(ErrorCode.BUS_NAME_IN_USE, m.message);
    }
  }

  private linkClosed(err: Error | undefined): void {
    const gen = this.link.gen;
    if (err !== undefined && this.firstReady) this.lastError ??= err;
    const why = this.lastError ?? err;
    const lost = new ClosedError(
      `connection to the bus at ${this.socketPath} closed${why ? `: ${why.message}` : ''}`,
    );
    this.requests.failAll(lost, gen);
    this.controls.pending.failAll(lost, gen);
    if (this._state === 'closed') return;
    if (this.takenOver) return this.shutdownLater(this.lastError ?? lost);
    if (this.backoff === undefined && this._state === 'ready') return this.shutdownLater(lost);
    if (this._state === 'ready') this.setState('reconnecting');
    const delay = this.backoff?.next() ?? DEFAULT_RECONNECT.initialMs;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this._state !== 'closed') this.link.dial();
    }, delay);
    // While connect() is awaited the retries keep the process alive; later they must not.
    if (!this.firstReady) this.reconnectTimer.unref();
  }

  private connectTimedOut(ms: number): void {
    if (!this.firstReady) return;
    const why = this.lastError ? `: ${this.lastError.message}` : '';
    this.shutdownLater(new TimeoutError(`bus at ${this.socketPath} not reachable within ${ms} ms${why}`));
  }

  private startHeartbeat(ms: number): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    const every = Math.max(5, Math.floor(ms / 2));
    this.heartbeatTimer = setInterval(() => {
      if (
        this._state === 'ready' &&
        this.link.isConnected &&
        performance.now() - this.link.lastSentMs >= every
      )
        this.link.stage(BusMsgId.Heartbeat, EMPTY);
    }, every);
    this.heartbeatTimer.unref();
  }

  private setState(s: BusClientState): void {
    const prev = this._state;
    if (prev === s) return;
    this._state = s;
    this.emit('state', s, prev);
  }

  /** Failures no caller awaits (a refused publish): reported only to 'error' listeners. */
  private asyncError(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** A subscription callback threw: 'error' listeners get it, else it surfaces as uncaught (a bug to see). */
  private callbackError(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else
      queueMicrotask(() => {
        throw err;
      });
  }

  /** Fails connect() (or the session) with `err` and closes; used from socket callbacks. */
  private shutdownLater(err: Error): void {
    this.closing ??= this.shutdown(err, false);
  }

  private async shutdown(err: Error, graceful: boolean): Promise<void> {
    if (this._state === 'closed') return;
    this.setState('closed');
    for (const t of [this.reconnectTimer, this.connectTimer]) if (t) clearTimeout(t);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.firstReady?.reject(err);
    this.firstReady = undefined;
    this.requests.failAll(err);
    this.controls.pending.failAll(err);
    this.subs.endAll(graceful || !isLarsError(err) ? undefined : err);
    this.responders.stopAll();
    this.inbound.clear();
    void this.shmIn.close();
    if (graceful && this.link.isConnected) {
      this.link.stage(BusMsgId.Unregister, EMPTY);
      await this.link.end(CLOSE_LINGER_MS);
    } else {
      this.link.destroy();
    }
  }
}
