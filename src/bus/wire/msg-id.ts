/**
 * Message ids of the bus protocol (DESIGN §9, docs/bus.md), carried in the Lars frame header.
 * 0x4200-0x427F are control frames with protobuf bodies (proto/bus.proto); 0x4280-0x42FF are data
 * frames with the flat layout of data-frame.ts. The numbers are the wire contract.
 */
export const BusMsgId = {
  Hello: 0x4200,
  HelloOk: 0x4201,
  Err: 0x4202,
  Notice: 0x4203,
  Sub: 0x4204,
  Unsub: 0x4205,
  Serve: 0x4206,
  Unserve: 0x4207,
  QueryTopic: 0x4208,
  TopicInfo: 0x4209,
  QueryProc: 0x420a,
  ProcList: 0x420b,
  Heartbeat: 0x420c,
  Unregister: 0x420d,
  Ping: 0x420e,
  Pong: 0x420f,
  ProcName: 0x4210,

  /** client -> bus: publish. */
  Pub: 0x4280,
  /** bus -> subscriber: a published message (id = the subscription's sid). */
  Msg: 0x4281,
  /** client -> bus (id = caller's request id) and bus -> server (id = the bus's request id). */
  Req: 0x4282,
  /** server -> bus and bus -> caller: a reply or a failure status (flags). */
  Rep: 0x4283,
} as const;

export type BusMsgId = (typeof BusMsgId)[keyof typeof BusMsgId];

/** Version the client announces in HELLO. */
export const BUS_PROTOCOL_VERSION = 1;

export function isDataMsgId(id: number): boolean {
  return id >= BusMsgId.Pub && id <= 0x42ff;
}

const NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(BusMsgId).map(([k, v]) => [v, k.toUpperCase()]),
);

/** Name of a bus msgid for logs and error messages; `unknown(0x...)` otherwise. */
export function busMsgIdName(id: number): string {
  return NAMES[id] ?? `unknown(0x${(id >>> 0).toString(16)})`;
}
