import { timingSafeEqual } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AuthError, ForbiddenError, InvalidArgumentError } from '../errors.js';
import { bodyObject } from './input.js';
import { needsRehash, verifyDummy, verifyPassword } from './passwords.js';
import { createSession, deleteSession, findSession, pruneExpiredSessions, type Session } from './sessions.js';
import { findUserByName, upgradePasswordHash } from './users.js';
import { nowSeconds, type WebContext } from './web-context.js';

/**
 * Who may do what (issue 6, item 2).
 *
 * - A login creates a session whose random token is returned as `token` (for scripts:
 *   `Authorization: Bearer <token>`) and set as the `lars_session` cookie (httpOnly, SameSite=Strict,
 *   Path=/, Secure when configured), for the browser.
 * - Every route is private unless its config says `public: true` (login, static assets, /healthz).
 *   Without a valid session an API call gets 401 JSON and a page a redirect to /login.
 * - Cookie-authenticated writes (anything but GET/HEAD/OPTIONS) must carry the session's CSRF token
 *   in `x-csrf-token`, else 403. The token is handed out by the login answer, GET /api/session and
 *   the readable `lars_csrf` cookie; it is compared with the value stored with the session (not just
 *   with the cookie), so a planted cookie does not help an attacker. Bearer requests need no CSRF
 *   token: a browser never attaches an Authorization header on its own.
 * - Failed logins are limited per source address and per (source, user name), with a global
 *   slow-down when failures come from everywhere (login-rate-limit.ts): 429 with Retry-After.
 *   An outsider cannot lock a user out (issue 11).
 * - A password hash made with weaker scrypt parameters than today's is replaced at login.
 */

export const SESSION_COOKIE = 'lars_session';
export const CSRF_COOKIE = 'lars_csrf';
export const CSRF_HEADER = 'x-csrf-token';

export interface AuthInfo extends Session {
  via: 'cookie' | 'bearer';
  token: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthInfo | null;
  }
  interface FastifyContextConfig {
    /** Reachable without a session (login, static assets, health). */
    public?: boolean;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function isApiPath(url: string): boolean {
  return url === '/api' || url.startsWith('/api/') || url.startsWith('/api?');
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The credential a request carries: a bearer token wins over the cookie. */
function credential(
  request: FastifyRequest,
): { via: 'cookie' | 'bearer'; token: string } | 'malformed' | undefined {
  const header = request.headers.authorization;
  if (header !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return m ? { via: 'bearer', token: m[1] as string } : 'malformed';
  }
  const cookie = request.cookies[SESSION_COOKIE];
  return cookie ? { via: 'cookie', token: cookie } : undefined;
}

/** Resolves the request's session; undefined when there is none or it is invalid. */
async function authenticate(
  ctx: WebContext,
  request: FastifyRequest,
): Promise<AuthInfo | undefined | 'malformed'> {
  const cred = credential(request);
  if (cred === undefined || cred === 'malformed') return cred;
  const session = await findSession(ctx.store, cred.token, nowSeconds(ctx));
  return session ? { ...session, ...cred } : undefined;
}

/** `next` for the login redirect: a local path only (never `//host`), so the login page is no open redirect. */
export function safeNext(next: unknown): string {
  return typeof next === 'string' && /^\/(?![/\\])[\x21-\x7e]*$/.test(next) ? next : '/';
}

function loginRedirect(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const next = safeNext(request.url);
  return reply.redirect(next === '/' ? '/login' : `/login?next=${encodeURIComponent(next)}`, 302);
}

function setSessionCookies(ctx: WebContext, reply: FastifyReply, token: string, csrf: string): void {
  const common = {
    path: '/',
    sameSite: 'strict' as const,
    secure: ctx.secureCookies,
    maxAge: ctx.sessionTtlS,
  };
  reply.setCookie(SESSION_COOKIE, token, { ...common, httpOnly: true });
  // Readable by the console's own scripts (double submit); useless to another site under SameSite=Strict.
  reply.setCookie(CSRF_COOKIE, csrf, { ...common, httpOnly: false });
}

function clearSessionCookies(ctx: WebContext, reply: FastifyReply): void {
  const common = { path: '/', sameSite: 'strict' as const, secure: ctx.secureCookies };
  reply.clearCookie(SESSION_COOKIE, { ...common, httpOnly: true });
  reply.clearCookie(CSRF_COOKIE, common);
}

export function registerAuth(app: FastifyInstance, ctx: WebContext): void {
  app.decorateRequest('auth', null);

  app.addHook('onRequest', async (request, reply) => {
    if (request.routeOptions.config?.public === true) return;
    const api = isApiPath(request.url);
    const auth = await authenticate(ctx, request);
    if (auth === 'malformed')
      throw new AuthError('malformed Authorization header: expected "Bearer <token>"');
    if (!auth) {
      if (api)
        throw new AuthError(
          'not logged in: POST /api/login, then send the session cookie or "Authorization: Bearer <token>"',
        );
      return loginRedirect(request, reply);
    }
    if (auth.via === 'cookie' && !SAFE_METHODS.has(request.method)) {
      const sent = request.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !sameSecret(sent, auth.csrf)) {
        throw new ForbiddenError(
          `missing or wrong CSRF token: cookie-authenticated writes must send the ${CSRF_HEADER} header`,
        );
      }
    }
    request.auth = auth;
  });

  app.post('/api/login', { config: { public: true } }, async (request, reply) => {
    const body = bodyObject(request.body);
    const { username, password } = body;
    if (typeof username !== 'string' || username === '' || username.length > 64)
      throw new InvalidArgumentError('username is required (1-64 characters)');
    if (typeof password !== 'string' || password === '' || password.length > 1024)
      throw new InvalidArgumentError('password is required');
    ctx.limiter.check(request.ip, username);
    const wait = ctx.limiter.slowDownMs();
    if (wait > 0) await delay(wait);
    const user = await findUserByName(ctx.store, username);
    const ok = user
      ? await verifyPassword(password, user.passwordHash)
      : await verifyDummy(password, ctx.passwordHashing);
    if (!user || !ok) {
      ctx.limiter.recordFailure(request.ip, username);
      ctx.logger.warn({ user: username, ip: request.ip }, 'failed login');
      throw new AuthError('wrong user name or password');
    }
    ctx.limiter.recordSuccess(request.ip, username);
    if (needsRehash(user.passwordHash, ctx.passwordHashing)) {
      await upgradePasswordHash(ctx.store, user.id, user.passwordHash, password, ctx.passwordHashing).then(
        (done) =>
          done && ctx.logger.info({ user: user.name }, 'password hash upgraded to current parameters'),
        (err: unknown) => ctx.logger.warn({ err, user: user.name }, 'could not upgrade the password hash'),
      );
    }
    const now = nowSeconds(ctx);
    await pruneExpiredSessions(ctx.store, now).catch((err: unknown) =>
      ctx.logger.warn({ err }, 'could not prune expired sessions'),
    );
    const session = await createSession(ctx.store, user.id, ctx.sessionTtlS, now);
    setSessionCookies(ctx, reply, session.token, session.csrf);
    ctx.logger.info({ user: user.name, ip: request.ip }, 'login');
    return {
      token: session.token,
      csrf: session.csrf,
      expiresAt: session.expiresAt,
      user: { id: user.id, name: user.name },
    };
  });

  app.post('/api/logout', async (request, reply) => {
    const auth = request.auth as AuthInfo;
    await deleteSession(ctx.store, auth.token);
    clearSessionCookies(ctx, reply);
    return { ok: true };
  });

  app.get('/api/session', async (request) => {
    const auth = request.auth as AuthInfo;
    return {
      user: { id: auth.userId, name: auth.userName },
      via: auth.via,
      csrf: auth.csrf,
      expiresAt: auth.expiresAt,
    };
  });
}

/** Whether the request carries a valid session (the login page forwards a logged-in user). */
export async function hasSession(ctx: WebContext, request: FastifyRequest): Promise<boolean> {
  const a = await authenticate(ctx, request);
  return a !== undefined && a !== 'malformed';
}
