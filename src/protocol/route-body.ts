import { HEADER_LEN, MAX_BODY_LEN } from './frame.js';
import { encodeMessage, type HostInfo } from './messages.js';
import { MsgId } from './msg-id.js';

/** Largest UDP payload over IPv4 (65,535 - 20 IP - 8 UDP) minus our frame header. */
export const MAX_DATAGRAM_BODY_LEN = 65_507 - HEADER_LEN;

/** Bytes of an int32 field's varint: negative values are sign-extended to 10 bytes. */
function int32VarintSize(v: number): number {
  if (v < 0) return 10;
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

/** Encoded size of one `repeated HostInfo host = 3` entry: tag, length, then its fields. */
function hostEntrySize(h: HostInfo): number {
  const inner =
    (h.ip !== 0 ? 1 + int32VarintSize(h.ip) : 0) +
    (h.port !== 0 ? 1 + int32VarintSize(h.port) : 0) +
    (h.weight ? 1 + int32VarintSize(h.weight) : 0);
  return 1 + int32VarintSize(inner) + inner;
}

/**
 * A GetRouteResponse body of at most `maxBody` bytes. One answer is one frame (or one datagram), so
 * a route too big for it is answered with the first hosts that fit and `total_hosts` set to the
 * route's real size (our extension field; original peers see the truncated list). Used by dns
 * (frame limit) and by the agent's API GetRoute (datagram limit).
 */
export function encodeRouteBody(
  modid: number,
  cmdid: number,
  hosts: readonly HostInfo[],
  maxBody: number = MAX_BODY_LEN,
): { body: Uint8Array; truncated: boolean } {
  const body = encodeMessage(MsgId.GetRouteResponse, { modid, cmdid, host: hosts as HostInfo[] });
  if (body.length <= maxBody) return { body, truncated: false };
  const total_hosts = hosts.length;
  let size = encodeMessage(MsgId.GetRouteResponse, { modid, cmdid, host: [], total_hosts }).length;
  let n = 0;
  while (n < hosts.length) {
    const next = size + hostEntrySize(hosts[n] as HostInfo);
    if (next > maxBody) break;
    size = next;
    n++;
  }
  const host = hosts.slice(0, n) as HostInfo[];
  return {
    body: encodeMessage(MsgId.GetRouteResponse, { modid, cmdid, host, total_hosts }),
    truncated: true,
  };
}
