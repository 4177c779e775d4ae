// Part of the client SDK: imports nothing from the servers or the database (DESIGN §7).
import { EventEmitter } from 'node:events';
import { ClosedError, InvalidArgumentError, RetcodeError, TimeoutError } from '../errors.js';
import type { UdpClient } from '../net/udp-client.js';
import {
  DEFAULT_LEASE_TTL_S,
  ipToWire,
  isValidIpv4,
  MAX_LEASE_TTL_S,
  MAX_WEIGHT,
  MIN_LEASE_TTL_S,
  MsgId,
  RetCode,
  retCodeName,
  wireToIp,
  type RegisterRequest,
  type RegisterResponse,
} from '../protocol/index.js';
import { ownIdentity } from './process-identity.js';

/** What `lars.register()` takes (issue 15). */
export interface RegisterOptions {
  modid: number;
  cmdid: number;
  /** The port this instance serves on. */
  port: number;
  /** Dotted IPv4 other hosts reach this instance at. Default: the agent's own address. */
  ip?: string;
  /** Share of calls relative to the route's other hosts, 1-10000. Default 1. */
  weight?: number;
  /** Seconds the registration lives without a renewal, 1-3600. Default 10; renewed every ttl/3. */
  ttlS?: number;
  /**
   * Tell the agent who this process is, so that when it sees the same process it notices its
   * death within ~250 ms instead of after the ttl. Default true.
   */
  watchProcess?: boolean;
}

export interface RegistrationEvents {
  /** A renewal went unanswered or was refused; the next one is tried at the next interval. */
  renewFailed: [err: Error];
  renewed: [];
}

/** Attempts of a register/deregister request before it fails (UDP may drop a datagram). */
const TRIES = 3;

/** Sends and awaits the ack of one register (9) or deregister (11) request. */
export type RegistrationSender = (msgid: 9 | 11, req: RegisterRequest) => Promise<RegisterResponse>;

export function validateRegisterOptions(o: RegisterOptions): RegisterRequest {
  // 0..2147483647: the original schema's columns are unsigned, the wire int32 (issue 16).
  for (const field of ['modid', 'cmdid'] as const) {
    const n = o[field];
    if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff)
      throw new InvalidArgumentError(`${field} must be an integer from 0 to 2147483647, got ${n}`);
  }
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535)
    throw new InvalidArgumentError(`port must be 1-65535, got ${o.port}`);
  if (o.ip !== undefined && !isValidIpv4(o.ip))
    throw new InvalidArgumentError(`ip must be a dotted IPv4 address, got ${JSON.stringify(o.ip)}`);
  const weight = o.weight ?? 1;
  if (!Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT)
    throw new InvalidArgumentError(`weight must be an integer 1-${MAX_WEIGHT}, got ${o.weight}`);
  const ttlS = o.ttlS ?? DEFAULT_LEASE_TTL_S;
  if (!Number.isInteger(ttlS) || ttlS < MIN_LEASE_TTL_S || ttlS > MAX_LEASE_TTL_S)
    throw new InvalidArgumentError(
      `ttlS must be an integer ${MIN_LEASE_TTL_S}-${MAX_LEASE_TTL_S}, got ${o.ttlS}`,
    );
  const who = o.watchProcess === false ? { pid: 0, pid_start: 0, pid_ns: 0 } : ownIdentity();
  return {
    seq: 0,
    modid: o.modid,
    cmdid: o.cmdid,
    host: { ip: o.ip === undefined ? 0 : ipToWire(o.ip), port: o.port, ...(weight !== 1 ? { weight } : {}) },
    ttl_s: ttlS,
    ...who,
  };
}

/** Sends a registration request, retrying a lost datagram; rejects when refused. */
export async function sendRegistration(
  send: RegistrationSender,
  msgid: 9 | 11,
  req: RegisterRequest,
  what: string,
): Promise<RegisterResponse> {
  let last: Error | undefined;
  for (let i = 0; i < TRIES; i++) {
    try {
      const res = await send(msgid, req);
      if (res.retcode !== RetCode.SUCC) {
        throw new RetcodeError(
          res.retcode,
          `${what}: agent answered ${retCodeName(res.retcode)}${res.reason ? `: ${res.reason}` : ''}`,
        );
      }
      return res;
    } catch (err) {
      if (!(err instanceof TimeoutError)) throw err;
      last = err;
    }
  }
  throw last ?? new TimeoutError(`${what}: no answer`);
}

/**
 * One registered instance (issue 15). Renewed every ttl/3 while it is active (the timer does not
 * keep the process alive); `deregister()` withdraws it at once. Created by `LarsClient.register()`.
 */
export class Registration extends EventEmitter<RegistrationEvents> {
  readonly modid: number;
  readonly cmdid: number;
  readonly port: number;
  readonly weight: number;
  readonly ttlS: number;
  /** The address registered (the agent's own when none was given). */
  ip: string;
  /** The agent watches this process: a crash deregisters it within ~250 ms. */
  watched: boolean;
  /** Consecutive renewals that failed. */
  failedRenewals = 0;
  private readonly request: RegisterRequest;
  private readonly send: RegistrationSender;
  private readonly onGone: (r: Registration) => void;
  private timer: NodeJS.Timeout | undefined;
  private renewing = false;
  private state: 'active' | 'leaving' | 'gone' = 'active';
  private leaving: Promise<void> | undefined;

  /** @internal Use LarsClient.register(). */
  constructor(
    request: RegisterRequest,
    ack: RegisterResponse,
    send: RegistrationSender,
    onGone: (r: Registration) => void,
  ) {
    super();
    this.request = request;
    this.send = send;
    this.onGone = onGone;
    this.modid = request.modid;
    this.cmdid = request.cmdid;
    this.port = request.host?.port ?? 0;
    this.weight = request.host?.weight || 1;
    this.ttlS = ack.ttl_s || request.ttl_s;
    this.ip = wireToIp(ack.host?.ip ?? request.host?.ip ?? 0);
    this.watched = ack.watched;
    this.timer = setInterval(() => void this.renew(), (this.ttlS * 1000) / 3);
    this.timer.unref();
  }

  get active(): boolean {
    return this.state === 'active';
  }

  /** Withdraws the registration now (the agent tells dns at once). Idempotent. */
  deregister(): Promise<void> {
    this.leaving ??= (async () => {
      this.state = 'leaving';
      this.stopTimer();
      try {
        await sendRegistration(this.send, MsgId.DeregisterRequest, this.request, this.describe('deregister'));
      } finally {
        this.state = 'gone';
        this.onGone(this);
      }
    })();
    return this.leaving;
  }

  /** The client closed without deregistering (its socket is gone): stop renewing. */
  abandon(): void {
    this.state = 'gone';
    this.stopTimer();
  }

  private describe(op: string): string {
    return `${op}(${this.modid}, ${this.cmdid}, ${this.ip}:${this.port})`;
  }

  private async renew(): Promise<void> {
    if (this.renewing || this.state !== 'active') return;
    this.renewing = true;
    try {
      const ack = await sendRegistration(
        this.send,
        MsgId.RegisterRequest,
        this.request,
        this.describe('renew'),
      );
      this.failedRenewals = 0;
      this.watched = ack.watched;
      this.emit('renewed');
    } catch (err) {
      if (err instanceof ClosedError || this.state !== 'active') return;
      this.failedRenewals++;
      this.emit('renewFailed', err as Error);
    } finally {
      this.renewing = false;
    }
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** The sender a LarsClient uses: request/reply on the agent port of the route. */
export function udpRegistrationSender(udp: UdpClient, portFor: (modid: number, cmdid: number) => number) {
  let seq = 0;
  return (msgid: 9 | 11, req: RegisterRequest): Promise<RegisterResponse> => {
    seq = (seq + 1) >>> 0;
    const reply = msgid === MsgId.RegisterRequest ? MsgId.RegisterResponse : MsgId.DeregisterResponse;
    return udp.request(
      portFor(req.modid, req.cmdid),
      msgid,
      { ...req, seq },
      { replyMsgid: reply, key: seq },
    );
  };
}

const sigtermHooks = new Set<() => Promise<void>>();

function onSigterm(): void {
  process.off('SIGTERM', onSigterm);
  const hooks = [...sigtermHooks];
  sigtermHooks.clear();
  void Promise.allSettled(hooks.map((h) => h())).finally(() => {
    // Nobody else handles SIGTERM: end the process the way the signal would have.
    if (process.listenerCount('SIGTERM') === 0) process.kill(process.pid, 'SIGTERM');
  });
}

/**
 * Runs `hook` (withdrawing registrations) when SIGTERM arrives; one process listener serves every
 * client. Returns the function that cancels it.
 */
export function onSigtermDeregister(hook: () => Promise<void>): () => void {
  if (sigtermHooks.size === 0) process.on('SIGTERM', onSigterm);
  sigtermHooks.add(hook);
  return () => {
    sigtermHooks.delete(hook);
    if (sigtermHooks.size === 0) process.off('SIGTERM', onSigterm);
  };
}
