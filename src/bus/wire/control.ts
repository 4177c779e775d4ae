import { ErrorCode, ProtocolError } from '../../errors.js';
import { larsbus } from '../generated/bus.js';
import { busMsgIdName, BusMsgId } from './msg-id.js';

/**
 * Codecs of the bus's control frames (protobuf bodies from proto/bus.proto, generated into
 * src/bus/generated/). Decoding never throws anything but ProtocolError(LARS_ERR_BAD_BODY).
 * Decoded messages are protobufjs instances: proto3 defaults ('' / 0 / false / []) sit on the
 * prototype, so every field reads as a value.
 */
export interface ControlCodec<T, P> {
  encode(message: P): Uint8Array;
  decode(body: Uint8Array): T;
}

interface PbType<T, P> {
  encode(message: P): { finish(): Uint8Array };
  decode(body: Uint8Array): T;
}

function codec<T, P>(type: PbType<T, P>, msgid: number): ControlCodec<T, P> {
  const name = busMsgIdName(msgid);
  return {
    encode: (message) => type.encode(message).finish(),
    decode(body) {
      try {
        return type.decode(body);
      } catch (cause) {
        throw new ProtocolError(
          ErrorCode.BAD_BODY,
          `body of ${body.length} bytes does not decode as ${name}`,
          {
            cause,
          },
        );
      }
    },
  };
}

export type Hello = larsbus.Hello;
export type HelloOk = larsbus.HelloOk;
export type Err = larsbus.Err;
export type Notice = larsbus.Notice;
export type Sub = larsbus.Sub;
export type Unsub = larsbus.Unsub;
export type Serve = larsbus.Serve;
export type Unserve = larsbus.Unserve;
export type QueryTopic = larsbus.QueryTopic;
export type TopicInfo = larsbus.TopicInfo;
export type QueryProc = larsbus.QueryProc;
export type ProcList = larsbus.ProcList;
export type Ping = larsbus.Ping;
export type Pong = larsbus.Pong;
export type ProcName = larsbus.ProcName;
export type WireProcInfo = larsbus.ProcInfo.$Properties;
export type WireTopicServer = larsbus.TopicServer.$Properties;

export const NoticeKind = larsbus.Notice.Kind;

export const Control = {
  hello: codec<Hello, larsbus.Hello.$Properties>(larsbus.Hello, BusMsgId.Hello),
  helloOk: codec<HelloOk, larsbus.HelloOk.$Properties>(larsbus.HelloOk, BusMsgId.HelloOk),
  err: codec<Err, larsbus.Err.$Properties>(larsbus.Err, BusMsgId.Err),
  notice: codec<Notice, larsbus.Notice.$Properties>(larsbus.Notice, BusMsgId.Notice),
  sub: codec<Sub, larsbus.Sub.$Properties>(larsbus.Sub, BusMsgId.Sub),
  unsub: codec<Unsub, larsbus.Unsub.$Properties>(larsbus.Unsub, BusMsgId.Unsub),
  serve: codec<Serve, larsbus.Serve.$Properties>(larsbus.Serve, BusMsgId.Serve),
  unserve: codec<Unserve, larsbus.Unserve.$Properties>(larsbus.Unserve, BusMsgId.Unserve),
  queryTopic: codec<QueryTopic, larsbus.QueryTopic.$Properties>(larsbus.QueryTopic, BusMsgId.QueryTopic),
  topicInfo: codec<TopicInfo, larsbus.TopicInfo.$Properties>(larsbus.TopicInfo, BusMsgId.TopicInfo),
  queryProc: codec<QueryProc, larsbus.QueryProc.$Properties>(larsbus.QueryProc, BusMsgId.QueryProc),
  procList: codec<ProcList, larsbus.ProcList.$Properties>(larsbus.ProcList, BusMsgId.ProcList),
  ping: codec<Ping, larsbus.Ping.$Properties>(larsbus.Ping, BusMsgId.Ping),
  pong: codec<Pong, larsbus.Pong.$Properties>(larsbus.Pong, BusMsgId.Pong),
  procName: codec<ProcName, larsbus.ProcName.$Properties>(larsbus.ProcName, BusMsgId.ProcName),
} as const;
