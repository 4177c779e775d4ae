import { lookup, type LookupOneOptions } from 'node:dns';
import { isIP, isIPv4 } from 'node:net';

/**
 * dgram resolves the destination of every send through dns.lookup, which answers a numeric address
 * on the next tick: one more trip through the event loop per reply. Replies go to the numeric
 * source address of a datagram, so answer those at once; names still go to dns.lookup.
 */
export function numericLookup(
  address: string,
  family: LookupOneOptions | number,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const v = numericFamily(address);
  if (v !== 0) callback(null, address, v);
  else lookup(address, family as LookupOneOptions, callback);
}

/** A dotted IPv4 address as an unsigned number, or undefined when it is not one. */
export function ipv4ToNumber(address: string): number | undefined {
  if (!isIPv4(address)) return undefined;
  let n = 0;
  for (const part of address.split('.')) n = n * 256 + Number(part);
  return n;
}

/** The last address numericFamily() saw, and its answer: replies mostly go to the same few clients. */
let lastAddress = '';
let lastFamily: 0 | 4 | 6 = 0;

/** 4 or 6 when `address` is a numeric address, else 0; remembers the last one (net.isIP is a regular expression). */
function numericFamily(address: string): 0 | 4 | 6 {
  if (address === lastAddress) return lastFamily;
  const v = isIP(address) as 0 | 4 | 6;
  lastAddress = address;
  lastFamily = v;
  return v;
}
