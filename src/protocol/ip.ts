import { InvalidArgumentError } from '../errors.js';

/**
 * IPv4 on the wire (DESIGN §2): the number whose most significant byte is the first octet
 * (MySQL INET_ATON), carried in an int32 field, so addresses from 128.0.0.0 up travel negative.
 */

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses dotted IPv4 into its unsigned number (INET_ATON); throws InvalidArgumentError. */
export function ipToNumber(ip: string): number {
  const m = IPV4.exec(ip);
  if (!m) throw new InvalidArgumentError(`invalid IPv4 address ${JSON.stringify(ip)}: expected a.b.c.d`);
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    const octet = Number(part);
    if (octet > 255 || (part.length > 1 && part[0] === '0')) {
      throw new InvalidArgumentError(
        `invalid IPv4 address ${JSON.stringify(ip)}: octet ${JSON.stringify(part)} must be 0-255 without leading zeros`,
      );
    }
    n = n * 256 + octet;
  }
  return n;
}

/** Formats an unsigned (or wire int32) number as dotted IPv4. */
export function numberToIp(n: number): string {
  const u = n >>> 0;
  return `${u >>> 24}.${(u >>> 16) & 255}.${(u >>> 8) & 255}.${u & 255}`;
}

/** Unsigned number -> the int32 that travels in the protobuf field. */
export function toWireIp(unsigned: number): number {
  return unsigned | 0;
}

/** int32 from the wire -> unsigned number (what the database stores). */
export function fromWireIp(wire: number): number {
  return wire >>> 0;
}

/** Dotted IPv4 -> wire int32. */
export function ipToWire(ip: string): number {
  return ipToNumber(ip) | 0;
}

/** Wire int32 -> dotted IPv4. */
export function wireToIp(wire: number): string {
  return numberToIp(wire);
}

export function isValidIpv4(ip: string): boolean {
  try {
    ipToNumber(ip);
    return true;
  } catch {
    return false;
  }
}

/** Validates a TCP/UDP port given as a string or number; `allowZero` for "pick any" binds. */
export function parsePort(value: string | number, what = 'port', allowZero = false): number {
  const s = String(value).trim();
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  const min = allowZero ? 0 : 1;
  if (!Number.isInteger(n) || n < min || n > 65535) {
    throw new InvalidArgumentError(
      `invalid ${what} ${JSON.stringify(value)}: expected an integer ${min}-65535`,
    );
  }
  return n;
}
