import { InvalidArgumentError } from '../errors.js';

/**
 * Input checks shared by the store and the CLI. The store validates every value it writes even
 * though its parameters are typed: JavaScript callers (the console's JSON bodies, scripts) can hand
 * it a string such as "1 OR 1=1", and the wire carries int32 modid/cmdid, so the accepted ranges are
 * exactly what the protocol can express. Each message names the field.
 */

export const INT32_MIN = -2147483648;
export const INT32_MAX = 2147483647;
export const UINT32_MAX = 4294967295;

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined)
    return String(value);
  return `a value of type ${typeof value}`;
}

/** modid / cmdid: any int32 (the wire type). */
export function assertInt32(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) {
    throw new InvalidArgumentError(
      `invalid ${field} ${describe(value)}: expected an integer from ${INT32_MIN} to ${INT32_MAX}`,
    );
  }
  return value;
}

/** An IPv4 address as its unsigned INET_ATON number. */
export function assertIpNumber(value: unknown, field = 'ip'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > UINT32_MAX) {
    throw new InvalidArgumentError(
      `invalid ${field} ${describe(value)}: expected an IPv4 address as an unsigned 32-bit integer (0-${UINT32_MAX})`,
    );
  }
  return value;
}

export function assertPort(value: unknown, field = 'port'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new InvalidArgumentError(
      `invalid ${field} ${describe(value)}: expected an integer from 1 to 65535`,
    );
  }
  return value;
}

/** Row ids, counts and limits: a non-negative safe integer. */
export function assertNonNegativeInt(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`invalid ${field} ${describe(value)}: expected a non-negative integer`);
  }
  return value;
}

export function assertPositiveInt(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(`invalid ${field} ${describe(value)}: expected a positive integer`);
  }
  return value;
}

/** A string that must be non-empty (when `allowEmpty` is false) and at most `maxLength` characters. */
export function assertText(value: unknown, field: string, maxLength: number, allowEmpty = false): string {
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(`invalid ${field} ${describe(value)}: expected a string`);
  }
  if (!allowEmpty && value.length === 0)
    throw new InvalidArgumentError(`invalid ${field}: must not be empty`);
  if (value.length > maxLength) {
    throw new InvalidArgumentError(
      `invalid ${field}: ${value.length} characters, at most ${maxLength} allowed`,
    );
  }
  if (value.includes('\0')) throw new InvalidArgumentError(`invalid ${field}: contains a NUL character`);
  return value;
}

/** Parses a decimal int32 typed by a user (CLI argument): "12", "-3"; nothing else. */
export function parseInt32(text: string, field: string): number {
  const s = text.trim();
  const n = /^-?\d{1,10}$/.test(s) ? Number(s) : NaN;
  if (!Number.isInteger(n) || n < INT32_MIN || n > INT32_MAX) {
    throw new InvalidArgumentError(
      `invalid ${field} ${JSON.stringify(text)}: expected an integer from ${INT32_MIN} to ${INT32_MAX}`,
    );
  }
  return n;
}
