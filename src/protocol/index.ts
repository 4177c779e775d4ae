export { MsgId, msgIdName } from './msg-id.js';
export { RetCode, retCodeName } from './retcode.js';
export {
  HEADER_LEN,
  MAX_BODY_LEN,
  encodeFrame,
  parseDatagram,
  checkBodyLength,
  type Frame,
} from './frame.js';
export { FrameDecoder, type FrameDecoderOptions, type FrameVisitor } from './frame-decoder.js';
export { agentPortIndex } from './agent-port.js';
export { encodeRouteBody, MAX_DATAGRAM_BODY_LEN } from './route-body.js';
export { routeBodyLength, writeRouteBody } from './route-body-writer.js';
export { DEFAULT_LEASE_TTL_S, MIN_LEASE_TTL_S, MAX_LEASE_TTL_S, MAX_WEIGHT } from './lease-limits.js';
export {
  ipToNumber,
  numberToIp,
  ipToWire,
  wireToIp,
  toWireIp,
  fromWireIp,
  isValidIpv4,
  parsePort,
} from './ip.js';
export {
  codecs,
  encodeMessage,
  decodeMessage,
  isKnownMsgId,
  type Codec,
  type KnownMsgId,
  type MessageMap,
  type HostInfo,
  type GetRouteRequest,
  type GetRouteResponse,
  type HostCallResult,
  type ReportStatusRequest,
  type GetHostRequest,
  type GetHostResponse,
  type ReportRequest,
  type RegisterRequest,
  type RegisterResponse,
  type Lease,
  type LeaseBatch,
} from './messages.js';
