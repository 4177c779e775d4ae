import { InvalidArgumentError } from '../errors.js';
import { ipToNumber } from '../protocol/ip.js';
import { MAX_WEIGHT } from '../protocol/lease-limits.js';
import { MAX_CONTENT_LENGTH } from '../store/schema.js';
import { ID_MAX, ID_MIN, idRangeText } from '../store/validate.js';

/**
 * Turns request input (JSON bodies, query strings, path parameters) into typed values, or throws
 * InvalidArgumentError with a message that names the field and says what is expected (shown as is
 * in the UI). Numbers may arrive as JSON numbers or as decimal strings (query strings, form fields);
 * anything else, such as "1 OR 1=1", is refused here, before any query is built.
 */

const DECIMAL = /^-?\d{1,10}$/;

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null || ['number', 'boolean', 'undefined'].includes(typeof value)) return String(value);
  return `a ${Array.isArray(value) ? 'list' : typeof value}`;
}

function toInteger(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) ? value : undefined;
  if (typeof value === 'string' && DECIMAL.test(value.trim())) return Number(value.trim());
  return undefined;
}

/** modid / cmdid: 0..2147483647 (store/validate.ts assertId says why). */
export function modCmdField(value: unknown, field: string): number {
  const n = toInteger(value);
  if (n === undefined || n < ID_MIN || n > ID_MAX) {
    if (value === undefined || value === '') throw new InvalidArgumentError(`${field} is required`);
    throw new InvalidArgumentError(`${field}: ${show(value)} is not ${idRangeText()}`);
  }
  return n;
}

/** An optional filter from a query string: absent or empty means "any". */
export function optionalModCmd(value: unknown, field: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  return modCmdField(value, field);
}

/** Dotted IPv4 as typed by a user -> its unsigned number. */
export function ipField(value: unknown, field = 'ip'): number {
  if (value === undefined || value === '') throw new InvalidArgumentError(`${field} is required`);
  if (typeof value !== 'string')
    throw new InvalidArgumentError(`${field}: expected an IPv4 address such as 10.0.0.1, got ${show(value)}`);
  try {
    return ipToNumber(value.trim());
  } catch {
    throw new InvalidArgumentError(
      `${field}: ${show(value)} is not an IPv4 address (expected a.b.c.d, each 0-255)`,
    );
  }
}

export function portField(value: unknown, field = 'port'): number {
  const n = toInteger(value);
  if (n === undefined || n < 1 || n > 65535) {
    if (value === undefined || value === '') throw new InvalidArgumentError(`${field} is required`);
    throw new InvalidArgumentError(
      `${field}: ${show(value)} is not a port (expected an integer from 1 to 65535)`,
    );
  }
  return n;
}

/**
 * A manual weight (issue 15): absent -> undefined (leave as is); null or '' -> null (clear it, the
 * host weighs what its registered instance declares, else 1); else an integer 1..MAX_WEIGHT.
 */
export function weightField(value: unknown, field = 'weight'): number | null | undefined {
  if (value === undefined) return undefined;
  if (value === null || value === '') return null;
  const n = toInteger(value);
  if (n === undefined || n < 1 || n > MAX_WEIGHT)
    throw new InvalidArgumentError(`${field}: ${show(value)} is not an integer from 1 to ${MAX_WEIGHT}`);
  return n;
}

/** Row ids in paths. */
export function idField(value: unknown, field = 'id'): number {
  const n = typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : toInteger(value);
  if (n === undefined || n < 1 || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError(`${field}: ${show(value)} is not a positive integer`);
  }
  return n;
}

/** Paging numbers from a query string, clamped to [min, max]. */
export function boundedInt(value: unknown, field: string, dflt: number, min: number, max: number): number {
  if (value === undefined || value === '') return dflt;
  const n = typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : toInteger(value);
  if (n === undefined || n < min || n > max) {
    throw new InvalidArgumentError(`${field}: ${show(value)} is not an integer from ${min} to ${max}`);
  }
  return n;
}

/** A description (ModIDConfig/CmdIDConfig content): stored verbatim, at most 255 characters. */
export function contentField(value: unknown, field = 'content'): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string')
    throw new InvalidArgumentError(`${field}: expected text, got ${show(value)}`);
  if (value.length > MAX_CONTENT_LENGTH)
    throw new InvalidArgumentError(
      `${field}: ${value.length} characters, at most ${MAX_CONTENT_LENGTH} allowed`,
    );
  if (value.includes('\0')) throw new InvalidArgumentError(`${field}: must not contain a NUL character`);
  return value;
}

/** The parsed JSON body, which must be an object. */
export function bodyObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new InvalidArgumentError('expected a JSON object body (Content-Type: application/json)');
  }
  return body as Record<string, unknown>;
}

/** Query strings: fastify gives a string, or an array when a key repeats; a repeat is an error. */
export function queryObject(query: unknown): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  if (query && typeof query === 'object') {
    for (const [k, v] of Object.entries(query)) {
      if (Array.isArray(v)) throw new InvalidArgumentError(`${k}: given more than once`);
      out[k] = typeof v === 'string' ? v : undefined;
    }
  }
  return out;
}
