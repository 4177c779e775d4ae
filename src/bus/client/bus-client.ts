import { EventEmitter } from 'node:events';
import {
  BusError,
  ClosedError,
  ConnectionError,
  ErrorCode,
  InvalidArgumentError,
  isLarsError,
  LarsError,
  ProtocolError,
  QueueFullError,
  TimeoutError,
} from '../../errors.js';
import { Backoff } from '../../net/backoff.js';
import {
  BUS_FRAME_OVERHEAD,
  DEFAULT_BUS_MAX_OUTBOUND_BYTES,
  DEFAULT_BUS_REQUEST_TIMEOUT_MS,
} from '../defaults.js';
import { defaultBusSocket } from '../socket-path.js';
import { Control, NoticeKind, type Err, type ProcList, type TopicInfo } from '../wire/control.js';
import {
  DataFields,
  dataFrameLength,
  encodeHeaders,
  parseDataFrame,
  readU32,
  ReplyStatus,
  writeDataFrame,
} from '../wire/data-frame.js';
import { BUS_PROTOCOL_VERSION, BusMsgId } from '../wire/msg-id.js';
import { checkName, checkSubject, checkSubscription } from '../wire/subject.js';
import { BusMsg, SubjectCache } from './bus-msg.js';
import { ClientLink } from './client-link.js';
import { PendingTable } from './pending.js';
import { BusResponder, type BusHandler, type BusReply, type ServeOptions } from './responder.js';
import { Subscription, type SubscribeOptions } from './subscription.js';
import {
  toProcInfo,
  toTopicServer,
  type BusClientOptions,
  type BusClientState,
  type BusSession,
  type ProcInfo,
  type PublishOptions,
  type RequestOptions,
  type TopicServerInfo,
} from './types.js';

/** The client accepts frames up to the largest max_payload the bus can be configured with. */
const CLIENT_MAX_FRAME = 64 * 1024 * 1024 + BUS_FRAME_OVERHEAD;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_RECONNECT = { initialMs: 100, maxMs: 5_000, jitter: 0.5 };
/** close(): how long the bus gets to take what is staged before the socket is destroyed. */
const CLOSE_LINGER_MS = 2_000;
const EMPTY = new Uint8Array(0);
const ERROR_CODE_HEADER = 'lars-error-code';

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
  private readonly maxOutboundBytes: number;
  private readonly requestTimeoutMs: number;
  private readonly hello: Uint8Array;
  private readonly heartbeatOverride: number | undefined;
  private readonly backoff: Backoff | undefined;
  private readonly subs = new Map<number, Subscription>();
  private readonly responders = new Map<number, BusResponder>();
  private readonly byTopic = new Map<string, BusResponder>();
  private nextSid = 1;
  private readonly requests = new PendingTable<BusMsg>(
    (topic, ms) =>
      new TimeoutError(
        `request to "${topic}" timed out after ${ms} ms (a responder took it but did not answer)`,
      ),
  );
  private readonly controls = new PendingTable<unknown>();
  private readonly names = new Map<number, string>();
  private lastFromNum = -1;
  private lastFromName = '';
  private lastPubSubject = '';
  private lastReqTopic = '';
  private readonly topics = new SubjectCache();
  private readonly fields = new DataFields();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private firstReady: { resolve(): void; reject(err: Error): void } | undefined;
  private readonly ready: Promise<void>;
  private lastError: Error | undefined;
  private takenOver = false;
  private needDrain = false;
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
    this.maxOutboundBytes = o.maxOutboundBytes ?? DEFAULT_BUS_MAX_OUTBOUND_BYTES;
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
      written: () => this.written(),
    });
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
   * `await flush()`) says when to resume.
   */
  publish(subject: string, data: Uint8Array | string, opts?: PublishOptions): void {
    if (this._state === 'closed') throw new ClosedError(`bus client ${this.name} is closed`);
    if (subject !== this.lastPubSubject) {
      const bad = checkSubject(subject);
      if (bad) throw new InvalidArgumentError(bad);
      this.lastPubSubject = subject;
    }
    this.stageData(BusMsgId.Pub, 0, 0, subject, data, opts?.headers);
  }

  /** Subscribes: an async iterable of messages, or a callback (options.callback). */
  subscribe(subject: string, opts: SubscribeOptions = {}): Subscription {
    if (this._state === 'closed') throw new ClosedError(`bus client ${this.name} is closed`);
    const bad = checkSubscription(subject) ?? (opts.queue ? checkName(opts.queue, 'queue name') : undefined);
    if (bad) throw new InvalidArgumentError(bad);
    const sid = this.nextSid++;
    const sub = new Subscription(
      {
        unsubscribe: (s) => this.dropSub(s),
        clientDrop: (s, n) =>
          this.emit('slowConsumer', {
            dropped: n,
            where: 'client',
            subject: s.subject,
            message: `${n} messages for "${s.subject}" were dropped: the iterator fell behind`,
          }),
        callbackError: (err) => this.callbackError(err),
      },
      sid,
      subject,
      opts.queue ?? '',
      opts.exact === true,
      opts,
    );
    this.subs.set(sid, sub);
    if (this.link.isConnected) this.link.stage(BusMsgId.Sub, this.subFrame(sub));
    return sub;
  }

  // ---- request / reply -----------------------------------------------------------------------------

  /** Serves `topic`: the handler's return value is the reply; a throw becomes LARS_ERR_BUS_HANDLER. */
  serve(topic: string, handler: BusHandler, opts: ServeOptions = {}): BusResponder {
    if (this._state === 'closed') throw new ClosedError(`bus client ${this.name} is closed`);
    const bad =
      checkSubject(topic, 'topic') ?? (opts.queue ? checkName(opts.queue, 'queue name') : undefined);
    if (bad) throw new InvalidArgumentError(bad);
    if (this.byTopic.has(topic)) throw new InvalidArgumentError(`this client already serves "${topic}"`);
    const c = opts.concurrency ?? 0;
    if (!Number.isInteger(c) || c < 0 || c > 65_535)
      throw new InvalidArgumentError(`concurrency must be an integer 1-65535, got ${c}`);
    const r = new BusResponder(
      { unserve: (x) => this.dropResponder(x) },
      this.nextSid++,
      topic,
      opts.queue ?? '',
      c,
      handler,
    );
    this.responders.set(r.sid, r);
    this.byTopic.set(topic, r);
    if (this.link.isConnected) this.link.stage(BusMsgId.Serve, this.serveFrame(r));
    return r;
  }

  /**
   * Sends a request through the bus to one server of `topic`. Rejects with LARS_ERR_BUS_NO_RESPONDERS
   * (nobody serves it, at once), LARS_ERR_TIMEOUT (a server took it but did not answer in time),
   * LARS_ERR_CLOSED (the server's or this connection closed first), LARS_ERR_BUS_OVERLOADED,
   * LARS_ERR_BUS_HANDLER (the handler threw), or the signal's reason when aborted.
   */
  request(topic: string, data: Uint8Array | string, opts: RequestOptions = {}): Promise<BusMsg> {
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
    try {
      this.stageData(
        BusMsgId.Req,
        id,
        Math.min(Math.max(0, Math.round(timeoutMs)), 0xffffffff),
        topic,
        data,
        opts.headers,
      );
    } catch (err) {
      return Promise.reject(err);
    }
    return this.requests.add(id, this.nextGen(), topic, timeoutMs, signal);
  }

  // ---- queries -------------------------------------------------------------------------------------

  /** Who serves `topic` (all served topics when omitted), with each server's online flag. */
  async queryTopic(topic = ''): Promise<TopicServerInfo[]> {
    if (topic !== '') {
      const bad = checkSubject(topic, 'topic');
      if (bad) throw new InvalidArgumentError(bad);
    }
    const id = this.controls.allocate();
    const answer = this.control(
      id,
      BusMsgId.QueryTopic,
      Control.queryTopic.encode({ req_id: id, topic }),
      `query of topic "${topic}"`,
    );
    return ((await answer) as TopicInfo).servers.map(toTopicServer);
  }

  /** Every proc, or the one named (undefined when unknown): state, info, served topics, subscriptions. */
  queryProc(): Promise<ProcInfo[]>;
  queryProc(name: string): Promise<ProcInfo | undefined>;
  async queryProc(name?: string): Promise<ProcInfo[] | ProcInfo | undefined> {
    const id = this.controls.allocate();
    const answer = this.control(
      id,
      BusMsgId.QueryProc,
      Control.queryProc.encode({ req_id: id, name: name ?? '' }),
      'query of procs',
    );
    const procs = ((await answer) as ProcList).procs.map(toProcInfo);
    return name === undefined ? procs : procs[0];
  }

  /** Resolves once the bus has processed everything sent before (a PING/PONG round trip). */
  async flush(): Promise<void> {
    const id = this.controls.allocate();
    await this.control(id, BusMsgId.Ping, Control.ping.encode({ req_id: id }), 'flush');
  }

  // ---- lifecycle -----------------------------------------------------------------------------------

  /** Stops subscriptions and served topics, waits for running handlers and the bus, then closes. */
  async drain(): Promise<void> {
    if (this._state === 'closed') return this.closing;
    for (const s of [...this.subs.values()]) s.unsubscribe();
    for (const r of [...this.responders.values()]) r.stop();
    if (this.link.isConnected) await this.flush().catch(() => {});
    await Promise.all([...this.responders.values()].map((r) => r.settled()));
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

  private stageData(
    msgid: number,
    id: number,
    aux: number,
    subject: string,
    data: Uint8Array | string,
    headers?: Record<string, string>,
  ): void {
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
    let hdr: Uint8Array | undefined;
    if (headers !== undefined) {
      const h = encodeHeaders(headers);
      if (typeof h === 'string') throw new InvalidArgumentError(h);
      hdr = h.length > 0 ? h : undefined;
    }
    const maxPayload = this._session?.maxPayload;
    if (maxPayload !== undefined && payload.length > maxPayload)
      throw new ProtocolError(
        ErrorCode.MESSAGE_TOO_LARGE,
        `payload of ${payload.length} bytes is over the bus's max_payload of ${maxPayload} bytes`,
      );
    const need = dataFrameLength(subject.length, hdr?.length ?? 0, payload.length);
    if (this.link.pendingBytes + need > this.maxOutboundBytes) {
      this.needDrain = true;
      throw new QueueFullError(
        `bus client ${this.name}: ${this.link.pendingBytes} bytes waiting to be sent (max ${this.maxOutboundBytes}); wait for 'drain'`,
      );
    }
    const out = this.link.out;
    const target = out.reserve(need);
    out.commit(writeDataFrame(target, out.used, msgid, id, aux, 0, subject, hdr, payload), 1);
    this.link.schedule();
  }

  private control(id: number, msgid: number, body: Uint8Array, what: string): Promise<unknown> {
    if (this._state === 'closed') return Promise.reject(new ClosedError(`bus client ${this.name} is closed`));
    this.link.stage(msgid, body);
    return this.controls.add(id, this.nextGen(), what, this.requestTimeoutMs);
  }

  /** Generation of the socket the next staged frame will be written to. */
  private nextGen(): number {
    return this.link.hasSocket ? this.link.gen : this.link.gen + 1;
  }

  private subFrame(s: Subscription): Uint8Array {
    return Control.sub.encode({ sid: s.sid, subject: s.subject, queue: s.queueName, exact: s.exact });
  }

  private serveFrame(r: BusResponder): Uint8Array {
    return Control.serve.encode({ sid: r.sid, topic: r.topic, queue: r.queue, concurrency: r.concurrency });
  }

  private dropSub(s: Subscription): void {
    if (!this.subs.delete(s.sid)) return;
    if (this.link.isConnected && this._state !== 'closed')
      this.link.stage(BusMsgId.Unsub, Control.unsub.encode({ sid: s.sid }));
  }

  private dropResponder(r: BusResponder): void {
    if (!this.responders.delete(r.sid)) return;
    if (this.byTopic.get(r.topic) === r) this.byTopic.delete(r.topic);
    if (this.link.isConnected && this._state !== 'closed')
      this.link.stage(BusMsgId.Unserve, Control.unserve.encode({ sid: r.sid }));
  }

  /** A new socket connected: HELLO, then every subscription and served topic again (replay). */
  private opened(): void {
    this.link.stage(BusMsgId.Hello, this.hello);
    for (const s of this.subs.values()) this.link.stage(BusMsgId.Sub, this.subFrame(s));
    for (const r of this.responders.values()) this.link.stage(BusMsgId.Serve, this.serveFrame(r));
  }

  private onFrame(msgid: number, buf: Uint8Array, start: number, len: number): void {
    try {
      switch (msgid) {
        case BusMsgId.Msg:
          return this.onMsg(buf, start, len);
        case BusMsgId.Rep:
          return this.onRep(buf, start, len);
        case BusMsgId.Req:
          return this.onReq(buf, start, len);
      }
      const body = buf.subarray(start, start + len);
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
        case BusMsgId.Pong:
          return this.controls.take(Control.pong.decode(body).req_id)?.resolve(undefined);
        case BusMsgId.TopicInfo: {
          const m = Control.topicInfo.decode(body);
          return this.controls.take(m.req_id)?.resolve(m);
        }
        case BusMsgId.ProcList: {
          const m = Control.procList.decode(body);
          return this.controls.take(m.req_id)?.resolve(m);
        }
      }
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

  private onMsg(buf: Uint8Array, start: number, len: number): void {
    const sub = this.subs.get(readU32(buf, start));
    if (sub === undefined || !parseDataFrame(buf, start, len, this.fields)) return;
    sub.push(new BusMsg(buf, this.fields, this.nameOf(readU32(buf, start + 4)), sub.subjects));
  }

  private onRep(buf: Uint8Array, start: number, len: number): void {
    const w = this.requests.take(readU32(buf, start));
    if (w === undefined) {
      this._lateReplies += 1;
      return;
    }
    const f = this.fields;
    if (!parseDataFrame(buf, start, len, f)) {
      w.reject(new ProtocolError(ErrorCode.BAD_BODY, `malformed reply to "${w.what}"`));
      return;
    }
    const status = buf[start + 8] as number;
    const msg = new BusMsg(buf, f, this.nameOf(readU32(buf, start + 4)), undefined, w.what);
    if (status === ReplyStatus.OK) w.resolve(msg);
    else w.reject(replyError(status, w.what, msg));
  }

  private onReq(buf: Uint8Array, start: number, len: number): void {
    const f = this.fields;
    if (!parseDataFrame(buf, start, len, f)) return;
    const rid = readU32(buf, start);
    const topic = this.topics.decode(buf, f.subjStart, f.subjLen);
    const r = this.byTopic.get(topic);
    const gen = this.link.gen;
    if (r === undefined || !r.active) {
      this.stageReply(rid, ReplyStatus.NO_RESPONDERS, undefined, `${this.name} no longer serves "${topic}"`);
      return;
    }
    const msg = new BusMsg(buf, f, this.nameOf(readU32(buf, start + 4)), undefined, topic);
    r.inFlight += 1;
    let result: BusReply | Promise<BusReply>;
    try {
      result = r.handler(msg);
    } catch (err) {
      this.replyFailed(rid, gen, r, err);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (v) => this.replied(rid, gen, r, v),
        (err: unknown) => this.replyFailed(rid, gen, r, err),
      );
    } else {
      this.replied(rid, gen, r, result);
    }
  }

  private replied(rid: number, gen: number, r: BusResponder, v: BusReply): void {
    r.done(true);
    if (gen !== this.link.gen || !this.link.isConnected) return; // the bus forgot the request with the connection
    let data: Uint8Array | string | undefined;
    let headers: Record<string, string> | undefined;
    if (v === undefined || v === null || typeof v === 'string' || v instanceof Uint8Array)
      data = v ?? undefined;
    else {
      data = v.data;
      headers = v.headers;
    }
    try {
      this.stageReply(rid, ReplyStatus.OK, headers, data ?? EMPTY);
    } catch (err) {
      this.stageReply(
        rid,
        ReplyStatus.HANDLER_ERROR,
        { [ERROR_CODE_HEADER]: (err as LarsError).code ?? 'Error' },
        (err as Error).message,
      );
    }
  }

  private replyFailed(rid: number, gen: number, r: BusResponder, err: unknown): void {
    r.done(false);
    if (gen !== this.link.gen || !this.link.isConnected) return;
    const code = isLarsError(err) ? err.code : err instanceof Error ? err.name : 'Error';
    const message = err instanceof Error ? err.message : String(err);
    this.stageReply(rid, ReplyStatus.HANDLER_ERROR, { [ERROR_CODE_HEADER]: code }, message);
  }

  private stageReply(
    rid: number,
    status: number,
    headers: Record<string, string> | undefined,
    data: Uint8Array | string,
  ): void {
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
    let hdr: Uint8Array | undefined;
    if (headers) {
      const h = encodeHeaders(headers);
      if (typeof h === 'string') throw new InvalidArgumentError(h);
      hdr = h;
    }
    const maxPayload = this._session?.maxPayload;
    if (maxPayload !== undefined && payload.length > maxPayload)
      throw new ProtocolError(
        ErrorCode.MESSAGE_TOO_LARGE,
        `reply of ${payload.length} bytes is over max_payload ${maxPayload}`,
      );
    const out = this.link.out;
    const target = out.reserve(dataFrameLength(0, hdr?.length ?? 0, payload.length));
    out.commit(writeDataFrame(target, out.used, BusMsgId.Rep, rid, 0, status, '', hdr, payload), 1);
    this.link.schedule();
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
    const err = busError(m);
    switch (m.op) {
      case BusMsgId.Hello:
        this.lastError = err;
        if (this.firstReady) this.shutdownLater(err);
        return;
      case BusMsgId.Sub: {
        const s = this.subs.get(m.id);
        if (s) {
          this.subs.delete(m.id);
          s.end(err);
        }
        return;
      }
      case BusMsgId.Serve: {
        const r = this.responders.get(m.id);
        if (r) {
          r.markStopped();
          this.dropResponder(r);
        }
        return this.asyncError(err);
      }
      case BusMsgId.QueryTopic:
      case BusMsgId.QueryProc:
      case BusMsgId.Ping:
        return this.controls.fail(m.id, err);
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
      this.emit('slowConsumer', { dropped: Number(m.dropped), where: 'bus', message: m.message });
    } else if (m.kind === NoticeKind.LAME_DUCK) {
      this.emit('lameDuck', m.message);
    } else if (m.kind === NoticeKind.TAKEN_OVER) {
      this.takenOver = true;
      this.lastError = new BusError(ErrorCode.BUS_NAME_IN_USE, m.message);
    }
  }

  private written(): void {
    if (this.needDrain && this.link.pendingBytes <= this.maxOutboundBytes / 2) {
      this.needDrain = false;
      this.emit('drain');
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
    this.controls.failAll(lost, gen);
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
    const body = new Uint8Array(0);
    this.heartbeatTimer = setInterval(() => {
      if (
        this._state === 'ready' &&
        this.link.isConnected &&
        performance.now() - this.link.lastSentMs >= every
      )
        this.link.stage(BusMsgId.Heartbeat, body);
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
    this.controls.failAll(err);
    for (const s of this.subs.values()) s.end(graceful ? undefined : isLarsError(err) ? err : undefined);
    this.subs.clear();
    for (const r of this.responders.values()) r.markStopped();
    if (graceful && this.link.isConnected) {
      this.link.stage(BusMsgId.Unregister, EMPTY);
      await this.link.end(CLOSE_LINGER_MS);
    } else {
      this.link.destroy();
    }
  }
}

function busError(m: Err): LarsError {
  const code = Object.values(ErrorCode).includes(m.code as ErrorCode)
    ? (m.code as ErrorCode)
    : ErrorCode.INVALID_ARGUMENT;
  switch (code) {
    case ErrorCode.BUS_NAME_IN_USE:
    case ErrorCode.BUS_NOT_REGISTERED:
    case ErrorCode.BUS_LIMIT:
    case ErrorCode.BUS_NO_RESPONDERS:
    case ErrorCode.BUS_OVERLOADED:
    case ErrorCode.BUS_HANDLER:
      return new BusError(code, m.message, m.subject);
    case ErrorCode.MAX_CONNECTIONS:
    case ErrorCode.SLOW_PEER:
      return new ConnectionError(code, m.message);
    case ErrorCode.CLOSED:
      return new ClosedError(m.message);
    default:
      return new LarsError(code, m.message);
  }
}

/** The error a non-OK reply stands for; it names the topic (P2). */
function replyError(status: number, topic: string, msg: BusMsg): LarsError {
  const detail = msg.string();
  switch (status) {
    case ReplyStatus.NO_RESPONDERS:
      return new BusError(
        ErrorCode.BUS_NO_RESPONDERS,
        `no responders for "${topic}"${detail ? `: ${detail}` : ''}`,
        topic,
      );
    case ReplyStatus.OVERLOADED:
      return new BusError(
        ErrorCode.BUS_OVERLOADED,
        `every server of "${topic}" is busy${detail ? `: ${detail}` : ''}`,
        topic,
      );
    case ReplyStatus.CLOSED:
      return new ClosedError(`request to "${topic}" failed: ${detail || 'the responder closed'}`);
    case ReplyStatus.HANDLER_ERROR:
      return new BusError(
        ErrorCode.BUS_HANDLER,
        `the responder of "${topic}" failed: ${msg.headers[ERROR_CODE_HEADER] ?? 'Error'}: ${detail}`,
        topic,
      );
    case ReplyStatus.TOO_LARGE:
      return new ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, detail);
    case ReplyStatus.NOT_REGISTERED:
      return new BusError(ErrorCode.BUS_NOT_REGISTERED, detail, topic);
    default:
      return new InvalidArgumentError(`request to "${topic}" refused: ${detail}`);
  }
}
