import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

/**
 * Password hashing with scrypt (node:crypto). Stored form: `scrypt$N$r$p$salt$hash`, salt and hash in
 * base64, so the cost parameters travel with each hash and can be raised later without breaking
 * existing users (verify reads them from the hash, never from the current defaults). A hash made
 * with weaker parameters than today's is replaced at the user's next successful login
 * (needsRehash; issue 11 raised N from 2^14 to 2^17).
 */

/**
 * CPU/memory cost 2^17 with r = 8, p = 1 (current OWASP guidance): 128 MiB and a few hundred ms per
 * hash on a small server core. At most MAX_CONCURRENT_HASHES run at once, which bounds the memory
 * and, with the login limiter, the rate of guesses.
 */
export const DEFAULT_SCRYPT_N = 131072;
export const DEFAULT_SCRYPT_R = 8;
export const DEFAULT_SCRYPT_P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
/** Refuse stored parameters that would make one verification take minutes or gigabytes. */
const MAX_SCRYPT_N = 1 << 20;

export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 1024;

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

export const DEFAULT_PARAMS: Readonly<ScryptParams> = {
  N: DEFAULT_SCRYPT_N,
  r: DEFAULT_SCRYPT_R,
  p: DEFAULT_SCRYPT_P,
};
/** scrypt derivations in progress at most (each takes 128 * N * r bytes); others wait their turn. */
export const MAX_CONCURRENT_HASHES = 2;

let running = 0;
const waiting: Array<() => void> = [];

async function derive(password: string, salt: Buffer, keylen: number, params: ScryptParams): Promise<Buffer> {
  if (running >= MAX_CONCURRENT_HASHES) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await deriveNow(password, salt, keylen, params);
  } finally {
    running--;
    waiting.shift()?.();
  }
}

function deriveNow(password: string, salt: Buffer, keylen: number, params: ScryptParams): Promise<Buffer> {
  const options: ScryptOptions = {
    N: params.N,
    r: params.r,
    p: params.p,
    maxmem: 256 * params.N * params.r + (1 << 20),
  };
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Checks a new password's length; the message is shown to the user. */
export function assertPasswordPolicy(password: unknown): string {
  if (typeof password !== 'string') throw new InvalidArgumentError('password: expected a string');
  if (password.length < MIN_PASSWORD_LENGTH)
    throw new InvalidArgumentError(`password: at least ${MIN_PASSWORD_LENGTH} characters required`);
  if (password.length > MAX_PASSWORD_LENGTH)
    throw new InvalidArgumentError(`password: at most ${MAX_PASSWORD_LENGTH} characters allowed`);
  return password;
}

export async function hashPassword(password: string, params: ScryptParams = DEFAULT_PARAMS): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, KEY_BYTES, params);
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Constant-time comparison; false (never an exception) for a malformed stored hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![N, r, p].every((n) => Number.isSafeInteger(n) && n > 0) || N > MAX_SCRYPT_N || (N & (N - 1)) !== 0)
    return false;
  const salt = Buffer.from(parts[4] as string, 'base64');
  const expected = Buffer.from(parts[5] as string, 'base64');
  if (salt.length === 0 || expected.length === 0) return false;
  const key = await derive(password, salt, expected.length, { N, r, p });
  return timingSafeEqual(key, expected);
}

/** Whether a stored hash was made with weaker parameters than today's (replace it at login). */
export function needsRehash(stored: string, params: ScryptParams = DEFAULT_PARAMS): boolean {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return true;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  return N < params.N || r < params.r || p < params.p;
}

/**
 * Burns the same time as a real verification, for logins naming an unknown user, so response time
 * does not reveal which user names exist.
 */
const dummyHashes = new Map<string, Promise<string>>();
export async function verifyDummy(password: string, params: ScryptParams = DEFAULT_PARAMS): Promise<false> {
  const key = `${params.N}/${params.r}/${params.p}`;
  let dummy = dummyHashes.get(key);
  if (dummy === undefined) {
    dummy = hashPassword('lars-dummy-password', params);
    dummyHashes.set(key, dummy);
  }
  await verifyPassword(password, await dummy);
  return false;
}

/** A random password for generated accounts: 18 bytes = 24 URL-safe characters. */
export function randomPassword(): string {
  return randomBytes(18).toString('base64url');
}
