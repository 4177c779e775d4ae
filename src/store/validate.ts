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

/**
 * modid / cmdid: 0..2147483647. The original schema's columns are unsigned and the wire carries
 * int32, so this is the range both can hold (and PostgreSQL's `integer`). Issue 16.
 */
export const ID_MIN = 0;
export const ID_MAX = INT32_MAX;

/** The message of an invalid modid/cmdid: names the field and the range, and why. */
export function idRangeText(): string {
  return `an integer from ${ID_MIN} to ${ID_MAX} (ids are unsigned in the original schema, int32 on the wire)`;
}

export function assertId(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < ID_MIN || value > ID_MAX) {
    throw new InvalidArgumentError(`invalid ${field} ${describe(value)}: expected ${idRangeText()}`);
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

/** Parses a modid/cmdid typed by a user (CLI argument): "12"; nothing else (see assertId). */
export function parseId(text: string, field: string): number {
  const s = text.trim();
  const n = /^-?\d{1,10}$/.test(s) ? Number(s) : NaN;
  if (!Number.isInteger(n) || n < ID_MIN || n > ID_MAX) {
    throw new InvalidArgumentError(`invalid ${field} ${JSON.stringify(text)}: expected ${idRangeText()}`);
  }
  return n;
}
