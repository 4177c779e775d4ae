import type { Msg, MsgHdrs, NatsConnection } from 'nats';
import { BusError, ErrorCode, isLarsError, LarsError, TimeoutError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import { BusClient } from '../client/bus-client.js';
import type { BusMsg } from '../client/bus-msg.js';
import type { BusReply } from '../client/responder.js';
import { decodeHeaders } from '../wire/data-frame.js';
import {
  BRIDGE_HOP_LIMIT,
  BRIDGE_PROC_NAME,
  BRIDGE_REQUEST_TIMEOUT_MS,
  ERROR_HEADER,
  HOPS_HEADER,
  natsSubjects,
  ORIGIN_HEADER,
  TIMEOUT_HEADER,
  type BridgeSettings,
} from './bridge-settings.js';

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

export type BridgeState = 'disconnected' | 'connected' | 'closed';

/** What crossed the bridge, and what it refused (read by /healthz and /metrics). */
export interface BridgeCounters {
  exported: number;
  imported: number;
  served: number;
  forwarded: number;
  /** Messages not passed on because they came back (own origin) or crossed the hop limit. */
  loops: number;
  /** Shared-memory payloads larger than NATS's max_payload (not exported). */
  tooLarge: number;
  /** Messages the bridge could not pass on (NATS down, bus queue full, bad subject). */
  dropped: number;
  reconnects: number;
}

export interface NatsBridgeOptions {
  settings: BridgeSettings;
  /** The bus this bridge belongs to: it joins it as the proc `lars-bridge`. */
  busSocket: string;
  shmSocket?: string;
  /** Stamped as Lars-Origin on what this bridge exports. */
  busId: string;
  log: Logger;
}

type HeadersFactory = () => MsgHdrs;

/**
 * The bus's bridge to NATS between hosts (issue 14, DESIGN §9), in the bus daemon. It joins its
 * own bus as a client and connects to NATS (the `nats` package is imported only here, only when
 * `[bus.bridge] url` is set):
 * - export: local messages on the export subjects are published on NATS as prefix + "." + subject
 *   (shared-memory payloads copied out up to NATS's max_payload, counted `tooLarge` above it);
 * - import: NATS messages on the import subjects are published locally (this bus's prefix stripped);
 * - serve: NATS requests on prefix + "." + topic are answered by the topic's local servers;
 * - forward: local requests with no local server, on the forward subjects, go to NATS as they are.
 * Loops are cut by Lars-Origin (this bus's id) and Lars-Hops (crossings, limit 2). NATS being down
 * never touches local traffic: the bridge says `disconnected` and the client reconnects forever.
 */
export class NatsBridge {
  state: BridgeState = 'disconnected';
  readonly counters: BridgeCounters = {
    exported: 0,
    imported: 0,
    served: 0,
    forwarded: 0,
    loops: 0,
    tooLarge: 0,
    dropped: 0,
    reconnects: 0,
  };
  private nc: NatsConnection | undefined;
  private bus: BusClient | undefined;
  private headers: HeadersFactory | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private readonly prefixDot: string;
  private markUp: (() => void) | undefined;
  /** Resolves once the bridge reached NATS the first time and set up every subscription. */
  readonly up: Promise<void>;

  constructor(private readonly o: NatsBridgeOptions) {
    this.prefixDot = `${o.settings.prefix}.`;
    this.up = new Promise((resolve) => (this.markUp = resolve));
  }

  get settings(): BridgeSettings {
    return this.o.settings;
  }

  /** Starts in the background: the bus never waits for NATS. */
  start(): void {
    this.running = this.run().catch((err: Error) => {
      if (!this.closed) this.o.log.error({ err: err.message }, 'bus bridge stopped');
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.state = 'closed';
    await this.nc?.close().catch(() => {});
    await this.bus?.close();
    await this.running;
  }

  private async run(): Promise<void> {
    const { settings: s, log } = this.o;
    // Loaded here only: a bus without a bridge never loads the NATS client.
    const nats = await import('nats');
    this.headers = nats.headers;
    const bus = await BusClient.connect({
      name: BRIDGE_PROC_NAME,
      socket: this.o.busSocket,
      takeover: true,
      publicInfo: `bridge to ${s.url} as ${s.prefix}`,
      connectTimeoutMs: 0,
      ...(this.o.shmSocket ? { shm: { socket: this.o.shmSocket } } : {}),
    });
    this.bus = bus;
    if (this.closed) return;
    bus.serveUnmatched((req) => this.forward(req));
    log.info({ url: s.url, prefix: s.prefix }, 'bus bridge connecting to NATS');
    const nc = await nats.connect({
      servers: s.url,
      name: `lars bus bridge ${s.prefix}`,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      waitOnFirstConnect: true,
      pingInterval: 2_000,
      maxPingOut: 2,
    });
    if (this.closed) return void (await nc.close());
    this.nc = nc;
    this.setState('connected');
    void this.watch(nc);
    for (const local of s.exports) bus.subscribe(local, { callback: (m) => this.export(m) });
    for (const subject of s.imports)
      for (const n of natsSubjects(subject)) nc.subscribe(n, { callback: (_e, m) => this.import(m) });
    for (const topic of s.serves)
      nc.subscribe(this.prefixDot + topic, { callback: (_e, m) => void this.serve(m, topic) });
    await bus.flush();
    await nc.flush();
    this.markUp?.();
    log.info({ url: s.url, prefix: s.prefix, maxPayload: nc.info?.max_payload }, 'bus bridge connected');
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const st of nc.status()) {
      if (st.type === 'disconnect') this.setState('disconnected');
      else if (st.type === 'reconnect') {
        this.counters.reconnects += 1;
        this.setState('connected');
      }
    }
  }

  private setState(s: BridgeState): void {
    if (this.closed || this.state === s) return;
    this.state = s;
    if (s === 'disconnected') this.o.log.warn({ url: this.o.settings.url }, 'bus bridge: NATS disconnected');
    else this.o.log.info({ url: this.o.settings.url }, 'bus bridge: NATS connected');
  }

  /** Headers of a local message that had none (the common case), built once: publish only reads them. */
  private plain: MsgHdrs | undefined;

  /** Stamps origin and hops (+1) on a copy of `h` for NATS. */
  private natsHeaders(h: Readonly<Record<string, string>>, origin: string, hops: number): MsgHdrs {
    const own = origin === this.o.busId && hops === 0;
    if (own && this.plain !== undefined) {
      let empty = true;
      for (const _ in h) {
        empty = false;
        break;
      }
      if (empty) return this.plain;
    }
    const out = this.headers!();
    for (const [k, v] of Object.entries(h)) if (k !== ORIGIN_HEADER && k !== HOPS_HEADER) out.set(k, v);
    out.set(ORIGIN_HEADER, origin);
    out.set(HOPS_HEADER, String(hops + 1));
    if (own && this.plain === undefined && Object.keys(h).length === 0) this.plain = out;
    return out;
  }

  /** The payload of `m` as bytes NATS can carry (a shared-memory one copied out and released). */
  private payload(m: BusMsg, nc: NatsConnection): Uint8Array | undefined {
    if (!m.shm) return m.data;
    const max = nc.info?.max_payload ?? 1024 * 1024;
    const data = m.data.byteLength <= max ? Buffer.from(m.data) : undefined;
    void m.shm.release();
    if (data === undefined) this.counters.tooLarge += 1;
    return data;
  }

  /**
   * An inline publish on an export subject, handed over by the bus engine from the bytes it read
   * (the bridge's subscriptions only carry shared-memory payloads, which it must take from lars shm).
   */
  exportInline(
    subject: string,
    buf: Uint8Array,
    hdrStart: number,
    hdrLen: number,
    start: number,
    end: number,
  ): void {
    const h = hdrLen === 0 ? NO_HEADERS : decodeHeaders(buf, hdrStart, hdrLen);
    this.send(subject, h, buf.subarray(start, end));
  }

  private export(m: BusMsg): void {
    const nc = this.nc;
    if (!nc || nc.isClosed()) {
      this.counters.dropped += 1;
      void m.shm?.release();
      return;
    }
    const data = this.payload(m, nc);
    if (data !== undefined) this.send(m.subject, m.headers, data);
  }

  private send(subject: string, h: Readonly<Record<string, string>>, data: Uint8Array): void {
    const hops = Number(h[HOPS_HEADER] ?? 0) || 0;
    if (h[ORIGIN_HEADER] === this.o.busId || hops >= BRIDGE_HOP_LIMIT) {
      this.counters.loops += 1;
      return;
    }
    const nc = this.nc;
    if (!nc || nc.isClosed()) {
      this.counters.dropped += 1;
      return;
    }
    try {
      nc.publish(this.prefixDot + subject, data, {
        headers: this.natsHeaders(h, h[ORIGIN_HEADER] ?? this.o.busId, hops),
      });
      this.counters.exported += 1;
    } catch {
      this.counters.dropped += 1;
    }
  }

  /** The local subject of a NATS subject: this bus's prefix stripped (what others address to it). */
  private localSubject(natsSubject: string): string {
    return natsSubject.startsWith(this.prefixDot) ? natsSubject.slice(this.prefixDot.length) : natsSubject;
  }

  private import(msg: Msg): void {
    const origin = msg.headers?.get(ORIGIN_HEADER) ?? '';
    if (origin === this.o.busId) {
      this.counters.loops += 1;
      return;
    }
    const hops = Number(msg.headers?.get(HOPS_HEADER) ?? 0) || 0;
    const headers = localHeaders(msg.headers);
    headers[ORIGIN_HEADER] = origin || 'nats';
    headers[HOPS_HEADER] = String(hops + 1);
    try {
      this.bus!.publish(this.localSubject(msg.subject), msg.data, { headers });
      this.counters.imported += 1;
    } catch {
      // Too large for the bus, a subject the bus does not accept, or its queue full.
      this.counters.dropped += 1;
    }
  }

  private async serve(msg: Msg, topic: string): Promise<void> {
    if (!msg.reply) return;
    const timeoutMs = Number(msg.headers?.get(TIMEOUT_HEADER)) || BRIDGE_REQUEST_TIMEOUT_MS;
    try {
      const rep = await this.bus!.request(topic, msg.data, { timeoutMs, headers: localHeaders(msg.headers) });
      const data = rep.shm ? Buffer.from(rep.data) : rep.data;
      void rep.shm?.release();
      msg.respond(data, { headers: this.natsHeaders(rep.headers, this.o.busId, 0) });
      this.counters.served += 1;
    } catch (err) {
      const h = this.headers!();
      h.set(ERROR_HEADER, isLarsError(err) ? err.code : ErrorCode.INVALID_ARGUMENT);
      msg.respond(Buffer.from((err as Error).message), { headers: h });
    }
  }

  /** A local request no local server took (the bus relays it here): asked on NATS as it is. */
  private async forward(req: BusMsg): Promise<BusReply> {
    const nc = this.nc;
    const topic = req.subject;
    if (!nc || nc.isClosed() || this.state !== 'connected') {
      void req.shm?.release();
      throw new BusError(
        ErrorCode.BUS_NO_RESPONDERS,
        `no local server of "${topic}", and the bridge to NATS is disconnected`,
        topic,
      );
    }
    const data = this.payload(req, nc);
    if (data === undefined)
      throw new LarsError(
        ErrorCode.MESSAGE_TOO_LARGE,
        `request to "${topic}" is larger than NATS's max_payload`,
      );
    const hops = Number(req.headers[HOPS_HEADER] ?? 0) || 0;
    const headers = this.natsHeaders(
      { ...req.headers, [TIMEOUT_HEADER]: String(BRIDGE_REQUEST_TIMEOUT_MS) },
      req.headers[ORIGIN_HEADER] ?? this.o.busId,
      hops,
    );
    let rep: Msg;
    try {
      rep = await nc.request(topic, data, { timeout: BRIDGE_REQUEST_TIMEOUT_MS, headers });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '503')
        throw new BusError(
          ErrorCode.BUS_NO_RESPONDERS,
          `no responders for "${topic}" here or on NATS`,
          topic,
        );
      if (code === 'TIMEOUT') throw new TimeoutError(`request to "${topic}" over NATS timed out`);
      throw new BusError(
        ErrorCode.BUS_NO_RESPONDERS,
        `request to "${topic}" over NATS failed: ${(err as Error).message}`,
        topic,
      );
    }
    const failed = rep.headers?.get(ERROR_HEADER);
    if (failed) {
      const code = Object.values(ErrorCode).includes(failed as ErrorCode)
        ? (failed as ErrorCode)
        : ErrorCode.BUS_HANDLER;
      throw new LarsError(code, `over NATS: ${new TextDecoder().decode(rep.data)}`);
    }
    this.counters.forwarded += 1;
    return { data: rep.data, headers: localHeaders(rep.headers) };
  }
}

/** NATS headers as bus headers (first value of each key). */
function localHeaders(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const [k, v] of h) if (v[0] !== undefined) out[k] = v[0];
  return out;
}
