import { ErrorCode, ProtocolError } from '../errors.js';
import protobuf from 'protobufjs/minimal.js';
import { lars } from './generated/lars.js';
import { MsgId } from './msg-id.js';

/**
 * Plain-object shapes of the wire messages. Decoded messages always carry every scalar field
 * (proto3 defaults are 0/false/[]), so handlers never see `undefined` ids.
 */
export interface HostInfo {
  ip: number;
  port: number;
  /** Our extension (issue 15): share of calls; absent or 0 means 1. */
  weight?: number | undefined;
}
export interface GetRouteRequest {
  modid: number;
  cmdid: number;
}
export interface GetRouteResponse {
  modid: number;
  cmdid: number;
  host: HostInfo[];
  /** Our extension: present (non-zero) only when `host` was truncated to fit one answer. */
  total_hosts?: number | undefined;
}
export interface HostCallResult {
  ip: number;
  port: number;
  succ: number;
  err: number;
  overload: boolean;
  /**
   * Our extension (issue 16): the agent's calls to this host since it started (never reset).
   * Undefined in reports of original agents.
   */
  total_succ?: number | undefined;
  total_err?: number | undefined;
}
export interface ReportStatusRequest {
  modid: number;
  cmdid: number;
  caller: number;
  results: HostCallResult[];
  ts: number;
}
export interface GetHostRequest {
  seq: number;
  modid: number;
  cmdid: number;
}
export interface GetHostResponse {
  seq: number;
  modid: number;
  cmdid: number;
  retcode: number;
  host?: HostInfo | undefined;
}
export interface ReportRequest {
  modid: number;
  cmdid: number;
  host?: HostInfo | undefined;
  retcode: number;
  timecost_ms?: number | undefined;
}

export interface RegisterRequest {
  seq: number;
  modid: number;
  cmdid: number;
  /** ip 0: the agent's own IPv4; weight 0: 1. */
  host?: HostInfo | undefined;
  /** 0: the default ttl. */
  ttl_s: number;
  pid: number;
  pid_start: number;
  pid_ns: number;
}
export interface RegisterResponse {
  seq: number;
  retcode: number;
  host?: HostInfo | undefined;
  ttl_s: number;
  reason: string;
  watched: boolean;
}
export interface Lease {
  modid: number;
  cmdid: number;
  host?: HostInfo | undefined;
  ttl_s: number;
}
export interface LeaseBatch {
  agent: string;
  renew: Lease[];
  remove: Lease[];
}

/** Message shape carried by each msgid. */
export interface MessageMap {
  [MsgId.GetRouteRequest]: GetRouteRequest;
  [MsgId.GetRouteResponse]: GetRouteResponse;
  [MsgId.ReportStatusRequest]: ReportStatusRequest;
  [MsgId.GetHostRequest]: GetHostRequest;
  [MsgId.GetHostResponse]: GetHostResponse;
  [MsgId.ReportRequest]: ReportRequest;
  [MsgId.ApiGetRouteRequest]: GetRouteRequest;
  [MsgId.ApiGetRouteResponse]: GetRouteResponse;
  [MsgId.RegisterRequest]: RegisterRequest;
  [MsgId.RegisterResponse]: RegisterResponse;
  [MsgId.DeregisterRequest]: RegisterRequest;
  [MsgId.DeregisterResponse]: RegisterResponse;
  [MsgId.LeaseBatch]: LeaseBatch;
}

export type KnownMsgId = keyof MessageMap;

export interface Codec<T> {
  encode(message: T): Uint8Array;
  /** Throws ProtocolError(LARS_ERR_BAD_BODY) when the bytes are not this message. */
  decode(body: Uint8Array): T;
}

interface StaticType {
  encode(message: object): { finish(): Uint8Array };
  decode(reader: protobuf.Reader): object;
}

function codec<T>(type: StaticType, name: string, normalize: (m: T) => T): Codec<T> {
  return {
    encode(message: T): Uint8Array {
      return type.encode(message as object).finish();
    },
    decode(body: Uint8Array): T {
      let m: T;
      try {
        // Keep what could not be read as a field (see checkKnownFields) instead of discarding it.
        const reader = protobuf.Reader.create(body);
        reader.discardUnknown = false;
        m = type.decode(reader) as T;
      } catch (cause) {
        throw new ProtocolError(
          ErrorCode.BAD_BODY,
          `body of ${body.length} bytes does not decode as ${name}`,
          {
            cause,
          },
        );
      }
      return normalize(m);
    },
  };
}

/**
 * Every message of proto/lars.proto numbers its fields 1..N; this is N (test/protocol-codec.test.ts
 * checks it against the .proto file). A field in that range on the wire with the wrong wire type
 * is not ours to skip as unknown: it makes the body bad (DESIGN §2), instead of decoding to zeros.
 */
export const FIELD_COUNT = {
  HostInfo: 3,
  GetRouteRequest: 2,
  GetRouteResponse: 4,
  HostCallResult: 7,
  ReportStatusRequest: 5,
  GetHostRequest: 3,
  GetHostResponse: 5,
  ReportRequest: 5,
  RegisterRequest: 8,
  RegisterResponse: 6,
  Lease: 4,
  LeaseBatch: 3,
} as const;

type MessageName = keyof typeof FIELD_COUNT;

/**
 * protobufjs keeps fields it could not read as their field (unknown number, or a known number
 * with another wire type) in `$unknowns`, raw bytes starting with the field's tag.
 */
function checkKnownFields(m: object, name: MessageName): void {
  const unknowns = (m as { $unknowns?: Uint8Array[] }).$unknowns;
  if (unknowns === undefined) return;
  for (const raw of unknowns) {
    let tag = 0;
    for (let i = 0, shift = 0; i < raw.length && i < 5; i++, shift += 7) {
      tag += ((raw[i] as number) & 0x7f) * 2 ** shift;
      if (((raw[i] as number) & 0x80) === 0) break;
    }
    const field = Math.floor(tag / 8);
    if (field >= 1 && field <= FIELD_COUNT[name]) {
      throw new ProtocolError(
        ErrorCode.BAD_BODY,
        `${name} field ${field} has the wrong wire type (${tag & 7})`,
      );
    }
  }
}

// protobufjs leaves proto3 defaults on the prototype; copy them to plain own properties so
// messages compare, spread and serialise as ordinary objects.
const hostInfo = (h: HostInfo): HostInfo => {
  checkKnownFields(h, 'HostInfo');
  return h.weight ? { ip: h.ip, port: h.port, weight: h.weight } : { ip: h.ip, port: h.port };
};
const optionalHost = (h: HostInfo | null | undefined): HostInfo | undefined => (h ? hostInfo(h) : undefined);
const lease = (l: Lease): Lease => {
  checkKnownFields(l, 'Lease');
  return { modid: l.modid, cmdid: l.cmdid, host: optionalHost(l.host), ttl_s: l.ttl_s };
};
const routeReq = (m: GetRouteRequest): GetRouteRequest => {
  checkKnownFields(m, 'GetRouteRequest');
  return { modid: m.modid, cmdid: m.cmdid };
};
const routeRes = (m: GetRouteResponse): GetRouteResponse => {
  checkKnownFields(m, 'GetRouteResponse');
  const out: GetRouteResponse = { modid: m.modid, cmdid: m.cmdid, host: m.host.map(hostInfo) };
  if (m.total_hosts) out.total_hosts = m.total_hosts;
  return out;
};

/** protobufjs reads uint64 as a Long when the `long` package is present; ours stay below 2^53. */
function uint64(v: number | { toNumber(): number }): number {
  return typeof v === 'number' ? v : v.toNumber();
}

const registerRequest = codec<RegisterRequest>(lars.RegisterRequest, 'RegisterRequest', (m) => {
  checkKnownFields(m, 'RegisterRequest');
  return {
    seq: m.seq,
    modid: m.modid,
    cmdid: m.cmdid,
    host: optionalHost(m.host),
    ttl_s: m.ttl_s,
    pid: m.pid,
    pid_start: uint64(m.pid_start),
    pid_ns: uint64(m.pid_ns),
  };
});
const registerResponse = codec<RegisterResponse>(lars.RegisterResponse, 'RegisterResponse', (m) => {
  checkKnownFields(m, 'RegisterResponse');
  return {
    seq: m.seq,
    retcode: m.retcode,
    host: optionalHost(m.host),
    ttl_s: m.ttl_s,
    reason: m.reason,
    watched: m.watched,
  };
});

const getRouteRequest = codec<GetRouteRequest>(lars.GetRouteRequest, 'GetRouteRequest', routeReq);
const getRouteResponse = codec<GetRouteResponse>(lars.GetRouteResponse, 'GetRouteResponse', routeRes);

export const codecs: { readonly [K in KnownMsgId]: Codec<MessageMap[K]> } = {
  [MsgId.GetRouteRequest]: getRouteRequest,
  [MsgId.GetRouteResponse]: getRouteResponse,
  [MsgId.ReportStatusRequest]: codec<ReportStatusRequest>(
    lars.ReportStatusRequest,
    'ReportStatusRequest',
    (m) => {
      checkKnownFields(m, 'ReportStatusRequest');
      return {
        modid: m.modid,
        cmdid: m.cmdid,
        caller: m.caller,
        results: m.results.map((r) => {
          checkKnownFields(r, 'HostCallResult');
          const out: HostCallResult = {
            ip: r.ip,
            port: r.port,
            succ: r.succ,
            err: r.err,
            overload: r.overload,
          };
          // proto3 `optional`: present (even 0) only when the agent sent it.
          if (Object.prototype.hasOwnProperty.call(r, 'total_succ')) out.total_succ = Number(r.total_succ);
          if (Object.prototype.hasOwnProperty.call(r, 'total_err')) out.total_err = Number(r.total_err);
          return out;
        }),
        ts: m.ts,
      };
    },
  ),
  [MsgId.GetHostRequest]: codec<GetHostRequest>(lars.GetHostRequest, 'GetHostRequest', (m) => {
    checkKnownFields(m, 'GetHostRequest');
    return { seq: m.seq, modid: m.modid, cmdid: m.cmdid };
  }),
  [MsgId.GetHostResponse]: codec<GetHostResponse>(lars.GetHostResponse, 'GetHostResponse', (m) => {
    checkKnownFields(m, 'GetHostResponse');
    return {
      seq: m.seq,
      modid: m.modid,
      cmdid: m.cmdid,
      retcode: m.retcode,
      host: m.host ? hostInfo(m.host) : undefined,
    };
  }),
  [MsgId.ReportRequest]: codec<ReportRequest>(lars.ReportRequest, 'ReportRequest', (m) => {
    checkKnownFields(m, 'ReportRequest');
    return {
      modid: m.modid,
      cmdid: m.cmdid,
      host: optionalHost(m.host),
      retcode: m.retcode,
      timecost_ms: m.timecost_ms,
    };
  }),
  [MsgId.ApiGetRouteRequest]: getRouteRequest,
  [MsgId.ApiGetRouteResponse]: getRouteResponse,
  [MsgId.RegisterRequest]: registerRequest,
  [MsgId.RegisterResponse]: registerResponse,
  [MsgId.DeregisterRequest]: registerRequest,
  [MsgId.DeregisterResponse]: registerResponse,
  [MsgId.LeaseBatch]: codec<LeaseBatch>(lars.LeaseBatch, 'LeaseBatch', (m) => {
    checkKnownFields(m, 'LeaseBatch');
    return { agent: m.agent, renew: m.renew.map(lease), remove: m.remove.map(lease) };
  }),
};

export function isKnownMsgId(id: number): id is KnownMsgId {
  return Object.prototype.hasOwnProperty.call(codecs, id);
}

export function encodeMessage<K extends KnownMsgId>(msgid: K, message: MessageMap[K]): Uint8Array {
  return (codecs[msgid] as Codec<MessageMap[K]>).encode(message);
}

export function decodeMessage<K extends KnownMsgId>(msgid: K, body: Uint8Array): MessageMap[K] {
  return (codecs[msgid] as Codec<MessageMap[K]>).decode(body);
}
