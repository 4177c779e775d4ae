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
  HostInfo: 2,
  GetRouteRequest: 2,
  GetRouteResponse: 4,
  HostCallResult: 5,
  ReportStatusRequest: 5,
  GetHostRequest: 3,
  GetHostResponse: 5,
  ReportRequest: 5,
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
  return { ip: h.ip, port: h.port };
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
          return { ip: r.ip, port: r.port, succ: r.succ, err: r.err, overload: r.overload };
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
      host: m.host ? hostInfo(m.host) : undefined,
      retcode: m.retcode,
      timecost_ms: m.timecost_ms,
    };
  }),
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
