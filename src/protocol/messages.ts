import { ErrorCode, ProtocolError } from '../errors.js';
import { lars } from './generated/lars.js';
import { MsgId } from './msg-id.js';

/**
 * Plain-object shapes of the wire messages. Decoded messages always carry every scalar field
 * (proto3 defaults are 0/false/[]), so handlers never see `undefined` ids.
 */
export interface HostInfo {
  ip: number;
  port: number;
}
export interface GetRouteRequest {
  modid: number;
  cmdid: number;
}
export interface GetRouteResponse {
  modid: number;
  cmdid: number;
  host: HostInfo[];
}
export interface HostCallResult {
  ip: number;
  port: number;
  succ: number;
  err: number;
  overload: boolean;
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
}

export type KnownMsgId = keyof MessageMap;

export interface Codec<T> {
  encode(message: T): Uint8Array;
  /** Throws ProtocolError(LARS_ERR_BAD_BODY) when the bytes are not this message. */
  decode(body: Uint8Array): T;
}

interface StaticType {
  encode(message: object): { finish(): Uint8Array };
  decode(body: Uint8Array): object;
}

function codec<T>(type: StaticType, name: string, normalize: (m: T) => T): Codec<T> {
  return {
    encode(message: T): Uint8Array {
      return type.encode(message as object).finish();
    },
    decode(body: Uint8Array): T {
      let m: T;
      try {
        m = type.decode(body) as T;
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

// protobufjs leaves proto3 defaults on the prototype; copy them to plain own properties so
// messages compare, spread and serialise as ordinary objects.
const hostInfo = (h: HostInfo): HostInfo => ({ ip: h.ip, port: h.port });
const routeReq = (m: GetRouteRequest): GetRouteRequest => ({ modid: m.modid, cmdid: m.cmdid });
const routeRes = (m: GetRouteResponse): GetRouteResponse => ({
  modid: m.modid,
  cmdid: m.cmdid,
  host: m.host.map(hostInfo),
});

const getRouteRequest = codec<GetRouteRequest>(lars.GetRouteRequest, 'GetRouteRequest', routeReq);
const getRouteResponse = codec<GetRouteResponse>(lars.GetRouteResponse, 'GetRouteResponse', routeRes);

export const codecs: { readonly [K in KnownMsgId]: Codec<MessageMap[K]> } = {
  [MsgId.GetRouteRequest]: getRouteRequest,
  [MsgId.GetRouteResponse]: getRouteResponse,
  [MsgId.ReportStatusRequest]: codec<ReportStatusRequest>(
    lars.ReportStatusRequest,
    'ReportStatusRequest',
    (m) => ({
      modid: m.modid,
      cmdid: m.cmdid,
      caller: m.caller,
      results: m.results.map((r) => ({
        ip: r.ip,
        port: r.port,
        succ: r.succ,
        err: r.err,
        overload: r.overload,
      })),
      ts: m.ts,
    }),
  ),
  [MsgId.GetHostRequest]: codec<GetHostRequest>(lars.GetHostRequest, 'GetHostRequest', (m) => ({
    seq: m.seq,
    modid: m.modid,
    cmdid: m.cmdid,
  })),
  [MsgId.GetHostResponse]: codec<GetHostResponse>(lars.GetHostResponse, 'GetHostResponse', (m) => ({
    seq: m.seq,
    modid: m.modid,
    cmdid: m.cmdid,
    retcode: m.retcode,
    host: m.host ? hostInfo(m.host) : undefined,
  })),
  [MsgId.ReportRequest]: codec<ReportRequest>(lars.ReportRequest, 'ReportRequest', (m) => ({
    modid: m.modid,
    cmdid: m.cmdid,
    host: m.host ? hostInfo(m.host) : undefined,
    retcode: m.retcode,
    timecost_ms: m.timecost_ms,
  })),
  [MsgId.ApiGetRouteRequest]: getRouteRequest,
  [MsgId.ApiGetRouteResponse]: getRouteResponse,
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
