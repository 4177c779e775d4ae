import { ClosedError, ErrorCode, InvalidArgumentError, ProtocolError, RetcodeError } from '../errors.js';
import { UdpClient } from '../net/udp-client.js';
import { agentPortIndex, ipToWire, MsgId, RetCode, retCodeName, wireToIp } from '../protocol/index.js';
import { FAST_PATH_MODES, FastPath, type FastPathMode, type FastPathStats } from './fast-path.js';
import {
  onSigtermDeregister,
  Registration,
  sendRegistration,
  udpRegistrationSender,
  validateRegisterOptions,
  type RegisterOptions,
  type RegistrationSender,
} from './registration.js';

/** The original agent's ports; the client picks 8888 + (modid + cmdid) % 3 like the original API. */
export const DEFAULT_AGENT_PORTS: readonly number[] = Object.freeze([8888, 8889, 8890]);
export const DEFAULT_TIMEOUT_MS = 1_000;
export const DEFAULT_REG_INIT_TRIES = 3;
export const DEFAULT_REG_INIT_INTERVAL_MS = 50;
/** Shared-memory answers in a row, within one event-loop turn, after which one waits for the next turn. */
const FAST_STREAK_MAX = 1024;

export interface LarsClientOptions {
  /** Agent address. Default 127.0.0.1. */
  host?: string;
  /** Agent UDP ports. Default 8888, 8889, 8890. */
  ports?: readonly number[];
  /** Per-request timeout. Default 1000 ms. */
  timeoutMs?: number;
  /** Requests waiting for replies at once; more reject with LARS_ERR_QUEUE_FULL. Default 4096. */
  maxInFlight?: number;
  /**
   * Capture each request's stack when it starts, so a LARS_ERR_TIMEOUT points at the caller.
   * Costs about 3 µs per request; off by default (the message still names the request).
   */
  captureStacks?: boolean;
  /**
   * On SIGTERM, withdraw every registration of this client (issue 15) before the process ends.
   * If the application has no SIGTERM handler of its own, the signal then ends the process as
   * usual; otherwise ending it is left to the application. Default false.
   */
  deregisterOnSigterm?: boolean;
  /**
   * getHost and report through the agent's shared memory, without a system call (issue 18):
   * `auto` (default, or LARS_FAST_PATH) uses it when the local agent offers it and UDP otherwise;
   * `require` throws LARS_ERR_FAST_PATH when the agent's segment cannot be used (at construction,
   * and on a call once the segment is gone); `off` always uses UDP. Calls the table cannot serve
   * (a route not in it yet, a slot being rewritten, a full ring) go over UDP in every mode.
   */
  fastPath?: FastPathMode;
}

export interface Host {
  /** Dotted IPv4. */
  ip: string;
  port: number;
  /** getRoute only: the host's weight when it is not 1 (issue 15). */
  weight?: number;
}

export interface HostAnswer {
  /** 0 SUCC, 1 OVERLOAD, 2 SYSTEM_ERROR, 3 NOEXIST. */
  retcode: number;
  host?: Host;
}

/**
 * The Lars client API (DESIGN §7): ask the local agent for a host of (modid, cmdid) per call,
 * report each call's result, fetch whole routes. Many requests may be in flight on one client;
 * replies are matched by sequence number (route replies by modid/cmdid); each request has a
 * timeout (LARS_ERR_TIMEOUT).
 *
 * Requests for a route go to port `ports[(modid + cmdid) % ports.length]`, as the original client
 * did, so this client also works against an original C++ agent. (Our agent answers every route on
 * every port.)
 */
export class LarsClient {
  private readonly udp: UdpClient;
  private readonly ports: readonly number[];
  private readonly timeoutMs: number;
  private seq = 0;
  private closed = false;
  private readonly registrations = new Set<Registration>();
  private readonly sendRegistration: RegistrationSender;
  private readonly deregisterOnSigterm: boolean;
  private unhookSigterm: (() => void) | undefined;
  private readonly fast: FastPath | undefined;
  /** Answers from shared memory since the event loop last turned (see settle). */
  private fastStreak = 0;

  constructor(options: LarsClientOptions = {}) {
    this.ports = options.ports ?? DEFAULT_AGENT_PORTS;
    if (this.ports.length === 0 || this.ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
      throw new InvalidArgumentError(`ports must be 1-65535, got ${JSON.stringify(this.ports)}`);
    }
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.udp = new UdpClient({
      host: options.host ?? '127.0.0.1',
      timeoutMs: this.timeoutMs,
      maxInFlight: options.maxInFlight ?? 4096,
      captureStacks: options.captureStacks ?? false,
    });
    this.sendRegistration = udpRegistrationSender(this.udp, (m, c) => this.portFor(m, c));
    this.deregisterOnSigterm = options.deregisterOnSigterm ?? false;
    const mode = options.fastPath ?? (process.env.LARS_FAST_PATH as FastPathMode | undefined) ?? 'auto';
    if (!FAST_PATH_MODES.includes(mode)) {
      throw new InvalidArgumentError(`fastPath must be auto, off or require, got ${JSON.stringify(mode)}`);
    }
    if (mode !== 'off') {
      try {
        this.fast = new FastPath({ host: options.host ?? '127.0.0.1', ports: this.ports, mode });
      } catch (err) {
        void this.udp.close();
        throw err;
      }
    }
  }

  /** What the shared-memory fast path did so far, and whether it is mapped per agent port. */
  fastPathStatus(): (ReturnType<FastPath['status']> & FastPathStats) | { mode: 'off' } {
    if (!this.fast) return { mode: 'off' };
    return { ...this.fast.status(), ...this.fast.stats, fallbacks: { ...this.fast.stats.fallbacks } };
  }

  /**
   * Registers this process as a host of route (modid, cmdid) through the local agent (issue 15):
   * the agent carries it to dns, which adds the host to the route while the registration lives.
   * Renewed every ttl/3 until `deregister()`, `close()` (or SIGTERM with `deregisterOnSigterm`).
   * Rejects with LARS_ERR_RETCODE when the agent refuses (the message says why), LARS_ERR_TIMEOUT
   * when no agent answers, LARS_ERR_INVALID_ARGUMENT for bad options.
   */
  async register(options: RegisterOptions): Promise<Registration> {
    if (this.closed) throw new ClosedError('LarsClient is closed');
    const req = validateRegisterOptions(options);
    const what = `register(${req.modid}, ${req.cmdid}, ${options.ip ?? 'agent ip'}:${options.port})`;
    const ack = await sendRegistration(this.sendRegistration, MsgId.RegisterRequest, req, what);
    const reg = new Registration(req, ack, this.sendRegistration, (r) => this.registrations.delete(r));
    this.registrations.add(reg);
    if (this.deregisterOnSigterm) this.hookSigterm();
    return reg;
  }

  /** Active registrations of this client. */
  get registered(): readonly Registration[] {
    return [...this.registrations];
  }

  private hookSigterm(): void {
    this.unhookSigterm ??= onSigtermDeregister(() => this.deregisterAll());
  }

  private async deregisterAll(): Promise<void> {
    await Promise.allSettled([...this.registrations].map((r) => r.deregister()));
  }

  /** The agent port requests for this route are sent to. */
  portFor(modid: number, cmdid: number): number {
    return this.ports[agentPortIndex(modid, cmdid, this.ports.length)] as number;
  }

  /** One host for a call, with the agent's return code; never throws for OVERLOAD/NOEXIST. */
  tryGetHost(modid: number, cmdid: number): Promise<HostAnswer> {
    let f: HostAnswer | undefined;
    try {
      f = this.fastAnswer(modid, cmdid);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return f !== undefined ? this.settle(f) : this.udpTry(modid, cmdid);
  }

  /** One host for a call; rejects with LARS_ERR_RETCODE (`retcode` 1 OVERLOAD, 3 NOEXIST, ...). */
  getHost(modid: number, cmdid: number): Promise<Host> {
    // Not async: an answer from shared memory costs one already-resolved promise (issue 18).
    let f: HostAnswer | undefined;
    try {
      f = this.fastAnswer(modid, cmdid);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (f === undefined) return this.udpHost(modid, cmdid);
    return f.host !== undefined ? this.settle(f.host) : Promise.reject(noHost(modid, cmdid, f.retcode));
  }

  /** The answer from shared memory (issue 18), or undefined: ask over UDP. Throws in `require` mode. */
  private fastAnswer(modid: number, cmdid: number): HostAnswer | undefined {
    if (this.fast === undefined || this.closed || (modid | 0) !== modid || (cmdid | 0) !== cmdid)
      return undefined;
    return this.fast.tryGetHost(modid, cmdid);
  }

  /**
   * An answer from shared memory, as a promise. A loop that awaits nothing but such answers would
   * never let the event loop turn (no I/O, no timers): after FAST_STREAK_MAX answers within one turn,
   * the next one resolves from setImmediate, after pending I/O.
   */
  private settle<T>(value: T): Promise<T> {
    if (this.fastStreak === 0) setImmediate(this.endStreak);
    if (++this.fastStreak < FAST_STREAK_MAX) return Promise.resolve(value);
    return new Promise((resolve) => setImmediate(resolve, value));
  }

  private readonly endStreak = (): void => {
    this.fastStreak = 0;
  };

  private async udpTry(modid: number, cmdid: number): Promise<HostAnswer> {
    checkIds(modid, cmdid);
    return this.udpGetHost(modid, cmdid);
  }

  private async udpHost(modid: number, cmdid: number): Promise<Host> {
    checkIds(modid, cmdid);
    const a = await this.udpGetHost(modid, cmdid);
    if (a.host) return a.host;
    throw noHost(modid, cmdid, a.retcode);
  }

  private async udpGetHost(modid: number, cmdid: number): Promise<HostAnswer> {
    this.seq = (this.seq + 1) >>> 0;
    const seq = this.seq;
    const res = await this.udp.request(
      this.portFor(modid, cmdid),
      MsgId.GetHostRequest,
      { seq, modid, cmdid },
      { replyMsgid: MsgId.GetHostResponse, key: seq },
    );
    if (res.retcode === RetCode.SUCC && res.host) {
      return { retcode: res.retcode, host: { ip: wireToIp(res.host.ip), port: res.host.port } };
    }
    return { retcode: res.retcode === RetCode.SUCC ? RetCode.SYSTEM_ERROR : res.retcode };
  }

  /**
   * Reports a call's result: retcode 0 = success, anything else = failure. `timecostMs` (optional)
   * lets the agent count a slow failure as several (max(1, floor(ms / 100))). Fire-and-forget.
   */
  report(modid: number, cmdid: number, ip: string, port: number, retcode: number, timecostMs?: number): void {
    checkIds(modid, cmdid);
    if (this.closed) throw new ClosedError('LarsClient is closed');
    if (this.fast?.report(modid, cmdid, ip, port, retcode, timecostMs)) return;
    this.udp.send(this.portFor(modid, cmdid), MsgId.ReportRequest, {
      modid,
      cmdid,
      host: { ip: ipToWire(ip), port },
      retcode,
      timecost_ms: timecostMs === undefined ? 0 : Math.max(0, Math.min(0xffffffff, Math.round(timecostMs))),
    });
  }

  /**
   * Every host of the route; empty when the route is unknown or not fetched yet. A route with more
   * hosts than one UDP answer holds (about 3,800 to 5,000) rejects with LARS_ERR_MESSAGE_TOO_LARGE
   * naming both counts: use getHost per call for such routes.
   */
  async getRoute(modid: number, cmdid: number): Promise<Host[]> {
    const { hosts, total } = await this.fetchRoute(modid, cmdid);
    if (total > hosts.length) {
      throw new ProtocolError(
        ErrorCode.MESSAGE_TOO_LARGE,
        `getRoute(${modid}, ${cmdid}): the route has ${total} hosts; one UDP answer holds the first ${hosts.length}`,
      );
    }
    return hosts;
  }

  private async fetchRoute(modid: number, cmdid: number): Promise<{ hosts: Host[]; total: number }> {
    checkIds(modid, cmdid);
    const res = await this.udp.request(
      this.portFor(modid, cmdid),
      MsgId.ApiGetRouteRequest,
      { modid, cmdid },
      { replyMsgid: MsgId.ApiGetRouteResponse, key: `${modid}:${cmdid}` },
    );
    const hosts = res.host.map((h): Host =>
      h.weight && h.weight !== 1
        ? { ip: wireToIp(h.ip), port: h.port, weight: h.weight }
        : { ip: wireToIp(h.ip), port: h.port },
    );
    return { hosts, total: Math.max(hosts.length, res.total_hosts ?? 0) };
  }

  /**
   * Warms a route up at start: asks for it until the agent knows it (a few tries, 50 ms apart), so
   * the first real call does not get NOEXIST. Resolves with the hosts (for a route too big for one
   * answer, the hosts that fit); rejects with LARS_ERR_RETCODE (NOEXIST) when the route is still
   * unknown after the last try.
   */
  async regInit(
    modid: number,
    cmdid: number,
    options: { tries?: number; intervalMs?: number } = {},
  ): Promise<Host[]> {
    const tries = options.tries ?? DEFAULT_REG_INIT_TRIES;
    const interval = options.intervalMs ?? DEFAULT_REG_INIT_INTERVAL_MS;
    for (let i = 0; i < tries; i++) {
      const { hosts } = await this.fetchRoute(modid, cmdid);
      if (hosts.length > 0) return hosts;
      // Not unref()'d: the caller is awaiting this promise, the process must stay up for it.
      if (i + 1 < tries) await new Promise((r) => setTimeout(r, interval));
    }
    throw new RetcodeError(
      RetCode.NOEXIST,
      `regInit(${modid}, ${cmdid}): route still unknown after ${tries} tries`,
    );
  }

  /**
   * Runs `fn` against a host of the route and reports the outcome with its duration: success if
   * `fn` resolves, failure if it rejects (the rejection is passed on). Rejects with
   * LARS_ERR_RETCODE when no host can be had.
   */
  async call<T>(modid: number, cmdid: number, fn: (host: Host) => Promise<T> | T): Promise<T> {
    const host = await this.getHost(modid, cmdid);
    const started = performance.now();
    try {
      const out = await fn(host);
      this.safeReport(modid, cmdid, host, RetCode.SUCC, performance.now() - started);
      return out;
    } catch (err) {
      this.safeReport(modid, cmdid, host, 1, performance.now() - started);
      throw err;
    }
  }

  /** Deregisters this client's registrations, then rejects waiting requests with LARS_ERR_CLOSED. Idempotent. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.deregisterAll();
    }
    for (const r of this.registrations) r.abandon();
    this.registrations.clear();
    this.unhookSigterm?.();
    this.unhookSigterm = undefined;
    this.fast?.close();
    await this.udp.close();
  }

  private safeReport(modid: number, cmdid: number, host: Host, retcode: number, ms: number): void {
    if (!this.closed) this.report(modid, cmdid, host.ip, host.port, retcode, ms);
  }
}

function noHost(modid: number, cmdid: number, retcode: number): RetcodeError {
  return new RetcodeError(retcode, `getHost(${modid}, ${cmdid}): agent answered ${retCodeName(retcode)}`);
}

function checkIds(modid: number, cmdid: number): void {
  // `n | 0` is n exactly for int32 integers (NaN, fractions and larger values differ).
  if ((modid | 0) !== modid || (cmdid | 0) !== cmdid) {
    throw new InvalidArgumentError(`modid and cmdid must be int32 integers, got ${modid}, ${cmdid}`);
  }
}
