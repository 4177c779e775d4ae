import { fieldLen, varintLen, writeField, writeVarint } from './varint.js';

/**
 * GetRouteResponse bodies written straight from flat host arrays, for dns's full reloads
 * (issue 17): the generic encoder needs a HostInfo object per host and protobufjs builds a chain
 * of writer ops per field, which on 100k hosts every reload interval is most of the garbage that
 * keeps dns's heap grown. Bytes are exactly what encodeRouteBody writes for a route that fits one
 * frame (proto3: zero fields left out; negative int32 as 10 bytes), checked by
 * test/protocol-route-body-writer.test.ts. Truncated routes stay with encodeRouteBody.
 *
 * `hosts` is [ip, port, ip, port, ...] with ip as its wire int32 (toWireIp), of which the first
 * `count` hosts are written (a reused scratch array may be longer); `weights`, when given, holds
 * one weight per host, 0 for none (a weight of 1 is the caller's to leave out).
 */

const HOST_TAG = 0x1a;

function hostInnerLen(ip: number, port: number, weight: number): number {
  return fieldLen(ip, true) + fieldLen(port, true) + fieldLen(weight, false);
}

/** Bytes of the body writeRouteBody writes. */
export function routeBodyLength(
  modid: number,
  cmdid: number,
  hosts: ArrayLike<number>,
  weights?: ArrayLike<number>,
  count = hosts.length >> 1,
): number {
  let len = fieldLen(modid, true) + fieldLen(cmdid, true);
  for (let i = 0; i < 2 * count; i += 2) {
    const inner = hostInnerLen(hosts[i]!, hosts[i + 1]!, weights?.[i >> 1] ?? 0);
    len += 1 + varintLen(inner, false) + inner;
  }
  return len;
}

/** Writes the body at `at` of `b` (routeBodyLength bytes must fit); returns the end offset. */
export function writeRouteBody(
  b: Uint8Array,
  at: number,
  modid: number,
  cmdid: number,
  hosts: ArrayLike<number>,
  weights?: ArrayLike<number>,
  count = hosts.length >> 1,
): number {
  at = writeField(b, at, 0x08, modid, true);
  at = writeField(b, at, 0x10, cmdid, true);
  for (let i = 0; i < 2 * count; i += 2) {
    const ip = hosts[i]!;
    const port = hosts[i + 1]!;
    const weight = weights?.[i >> 1] ?? 0;
    b[at++] = HOST_TAG;
    at = writeVarint(b, at, hostInnerLen(ip, port, weight), false);
    at = writeField(b, at, 0x08, ip, true);
    at = writeField(b, at, 0x10, port, true);
    at = writeField(b, at, 0x18, weight, false);
  }
  return at;
}
