import { createHash, randomBytes } from 'node:crypto';
import type { Store } from '../store/index.js';
import { dbOp } from './db-op.js';

/**
 * Console sessions (table lars_session). A session is created by a login; its token is both the
 * browser's cookie value and the scripts' bearer token. Only the SHA-256 of the token is stored, so a
 * leaked database (or backup) does not hand out live sessions. Each session carries its own CSRF
 * token, required on cookie-authenticated writes (auth.ts).
 */

/** Session lifetime unless the service is told otherwise. */
export const DEFAULT_SESSION_TTL_S = 12 * 3600;

const TOKEN_FORMAT = /^[A-Za-z0-9_-]{20,128}$/;

export interface NewSession {
  token: string;
  csrf: string;
  /** Unix seconds. */
  expiresAt: number;
}

export interface Session {
  userId: number;
  userName: string;
  csrf: string;
  expiresAt: number;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function createSession(store: Store, userId: number, ttlS: number, nowS: number): Promise<NewSession> {
  const token = randomBytes(32).toString('base64url');
  const csrf = randomBytes(32).toString('hex');
  const expiresAt = nowS + ttlS;
  return dbOp('createSession', async () => {
    await store.db
      .insertInto('lars_session')
      .values({ id: hashToken(token), user_id: userId, csrf, created_at: nowS, expires_at: expiresAt })
      .execute();
    return { token, csrf, expiresAt };
  });
}

/** The live session of a token, or undefined (unknown, malformed or expired). */
export function findSession(store: Store, token: string, nowS: number): Promise<Session | undefined> {
  if (!TOKEN_FORMAT.test(token)) return Promise.resolve(undefined);
  return dbOp('findSession', async () => {
    const r = await store.db
      .selectFrom('lars_session as s')
      .innerJoin('lars_user as u', 'u.id', 's.user_id')
      .select(['s.user_id', 'u.name', 's.csrf', 's.expires_at'])
      .where('s.id', '=', hashToken(token))
      .where('s.expires_at', '>', nowS)
      .executeTakeFirst();
    return r
      ? {
          userId: Number(r.user_id),
          userName: String(r.name),
          csrf: String(r.csrf),
          expiresAt: Number(r.expires_at),
        }
      : undefined;
  });
}

export function deleteSession(store: Store, token: string): Promise<void> {
  return dbOp('deleteSession', async () => {
    await store.db.deleteFrom('lars_session').where('id', '=', hashToken(token)).execute();
  });
}

/** Removes expired sessions; returns how many. Called on login so the table cannot grow forever. */
export function pruneExpiredSessions(store: Store, nowS: number): Promise<number> {
  return dbOp('pruneExpiredSessions', async () => {
    const res = await store.db.deleteFrom('lars_session').where('expires_at', '<=', nowS).executeTakeFirst();
    return Number(res.numDeletedRows);
  });
}
