import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ClosedError } from '../src/errors.js';
import { ipToNumber } from '../src/protocol/ip.js';
import type { NotifyResult, Store } from '../src/store/index.js';
import { createUser, ensureAdminUser, WebService, type WebServiceOptions } from '../src/web/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';

/**
 * Web console JSON API (issue 6) against a real server on port 0 and a fresh database per test, on
 * SQLite (file), MariaDB and PostgreSQL.
 */

const PASSWORD = 'correct horse battery';
/**
 * A cheap scrypt cost for the accounts these tests make (the production cost, 2^17, takes ~0.5-1.5 s
 * per hash here); the services under test are given the same, so no login rehashes. The production
 * cost and the upgrade are tested on their own below.
 */
const FAST_HASH = { N: 1024, r: 8, p: 1 };

interface Res {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
  text: string;
}

/** A tiny HTTP client that keeps cookies like a browser would (for one origin). */
class Client {
  readonly cookies = new Map<string, string>();
  constructor(readonly base: string) {}

  async req(
    method: string,
    path: string,
    opts: { body?: unknown; rawBody?: string; headers?: Record<string, string>; cookies?: boolean } = {},
  ): Promise<Res> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (opts.cookies !== false && this.cookies.size > 0) {
      headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    }
    const res = await fetch(this.base + path, {
      method,
      headers,
      body: opts.rawBody ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body)),
      redirect: 'manual',
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = (pair as string).indexOf('=');
      const name = (pair as string).slice(0, i);
      const value = (pair as string).slice(i + 1);
      if (value === '' || /max-age=0|expires=thu, 01 jan 1970/i.test(c)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    const text = await res.text();
    let json: unknown = undefined;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, json, text };
  }

  async login(username = 'alice', password = PASSWORD): Promise<Res> {
    return this.req('POST', '/api/login', { body: { username, password } });
  }
}

interface Harness {
  store: Store;
  web: WebService;
  base: string;
  client: Client;
  notifies: () => number;
  setNow: (ms: number) => void;
}

async function startWeb(
  b: Parameters<typeof freshStore>[0],
  extra: Partial<WebServiceOptions> = {},
): Promise<Harness> {
  const { store } = await freshStore(b);
  await createUser(store, 'alice', PASSWORD, undefined, FAST_HASH);
  let notifies = 0;
  let now = Date.now();
  const web = new WebService({
    store,
    host: '127.0.0.1',
    port: 0,
    notifier: async (): Promise<NotifyResult> => {
      notifies++;
      return { attempted: 1, acknowledged: 1, failures: [] };
    },
    now: () => now,
    passwordHashing: FAST_HASH,
    ...extra,
  });
  onTestFinished(() => web.close());
  const { url } = await web.start();
  return {
    store,
    web,
    base: url,
    client: new Client(url),
    notifies: () => notifies,
    setNow: (ms) => void (now = ms),
  };
}

async function loggedIn(h: Harness): Promise<{ token: string; csrf: string }> {
  const r = await h.client.login();
  expect(r.status).toBe(200);
  return { token: r.json.token, csrf: r.json.csrf };
}

function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

async function routeDataCount(store: Store): Promise<number> {
  const r = await store.db
    .selectFrom('RouteData')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirst();
  return Number(r?.n);
}

async function fakeDnsAdmin(health: object): Promise<{ port: number; polls: () => number }> {
  let polls = 0;
  const server: Server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/admin/poll') polls++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(req.url === '/healthz' ? health : { ok: true }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as AddressInfo).port, polls: () => polls };
}

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'web console API'), () => {
    it('requires a session or token everywhere but login, static assets and /healthz', async () => {
      const h = await startWeb(b);
      const c = h.client;
      for (const [method, path] of [
        ['GET', '/api/routes'],
        ['GET', '/api/dashboard'],
        ['GET', '/api/version'],
        ['GET', '/api/changes'],
        ['GET', '/api/modids'],
        ['GET', '/api/health/status?modid=1&cmdid=1'],
        ['GET', '/api/session'],
        ['GET', '/api/no-such-thing'],
        ['POST', '/api/logout'],
        ['DELETE', '/api/routes/1'],
      ] as const) {
        const r = await c.req(method, path, method === 'POST' ? { body: {} } : {});
        expect(r.status, `${method} ${path}`).toBe(401);
        expect(r.json.error.code).toBe('LARS_ERR_AUTH');
        expect(r.headers.get('cache-control')).toBe('no-store');
      }
      const add = await c.req('POST', '/api/routes', {
        body: { modid: 1, cmdid: 1, ip: '10.0.0.1', port: 80 },
      });
      expect(add.status).toBe(401);
      expect(await routeDataCount(h.store)).toBe(0);

      for (const page of ['/', '/routes', '/ids', '/changes', '/health?modid=1&cmdid=2']) {
        const r = await c.req('GET', page);
        expect(r.status, page).toBe(302);
        expect(r.headers.get('location')).toBe(
          page === '/' ? '/login' : `/login?next=${encodeURIComponent(page)}`,
        );
      }
      expect((await c.req('GET', '/login')).status).toBe(200);
      const css = await c.req('GET', '/static/app.css');
      expect(css.status).toBe(200);
      expect(css.headers.get('content-type')).toContain('text/css');
      expect((await c.req('GET', '/static/vendor/uPlot.esm.js')).status).toBe(200);
      expect((await c.req('GET', '/static/..%2f..%2fpackage.json')).status).toBe(404);
      expect((await c.req('GET', '/static/vendor/..%2f..%2f..%2fpackage.json')).status).toBe(404);
      expect((await c.req('GET', '/static/index.html')).status).toBe(404);
      const health = await c.req('GET', '/healthz');
      expect(health.status).toBe(200);
      expect(health.json).toMatchObject({ status: 'ok', database: 'ok', version: 0 });

      expect(
        (await c.req('GET', '/api/routes', { headers: bearer('not-a-real-token-at-all-xxxxxxxx') })).status,
      ).toBe(401);
      const malformed = await c.req('GET', '/api/routes', {
        headers: { authorization: 'Basic YWxpY2U6eA==' },
      });
      expect(malformed.status).toBe(401);
      expect(malformed.json.error.message).toMatch(/Bearer/);
    });

    it('logs in with the right password only; the token works as bearer and as cookie; logout ends it', async () => {
      const h = await startWeb(b);
      const c = h.client;
      const wrong = await c.login('alice', 'wrong password');
      expect(wrong.status).toBe(401);
      expect(wrong.json.error).toEqual({ code: 'LARS_ERR_AUTH', message: 'wrong user name or password' });
      expect(c.cookies.size).toBe(0);
      const unknown = await c.login('mallory', PASSWORD);
      expect(unknown.status).toBe(401);
      expect(unknown.json.error.message).toBe('wrong user name or password');
      const injected = await c.login("alice' OR '1'='1", "x' OR '1'='1");
      expect(injected.status).toBe(401);
      expect((await c.req('POST', '/api/login', { body: { username: 'alice' } })).status).toBe(400);
      expect(
        (
          await c.req('POST', '/api/login', {
            rawBody: 'username=alice',
            headers: { 'content-type': 'text/plain' },
          })
        ).status,
      ).toBe(400);

      const ok = await c.login();
      expect(ok.status).toBe(200);
      expect(ok.json).toMatchObject({ user: { name: 'alice' } });
      expect(ok.json.token).toMatch(/^[A-Za-z0-9_-]{40,}$/);
      expect(ok.json.csrf).toMatch(/^[0-9a-f]{64}$/);
      const setCookies = ok.headers.getSetCookie();
      const session = setCookies.find((s) => s.startsWith('lars_session='));
      expect(session).toMatch(/HttpOnly/i);
      expect(session).toMatch(/SameSite=Strict/i);
      expect(session).toMatch(/Path=\//);
      const csrfCookie = setCookies.find((s) => s.startsWith('lars_csrf='));
      expect(csrfCookie).not.toMatch(/HttpOnly/i);
      expect(c.cookies.get('lars_csrf')).toBe(ok.json.csrf);
      // Only the hash of the token is stored.
      const rows = await h.store.db.selectFrom('lars_session').selectAll().execute();
      expect(rows).toHaveLength(1);
      expect(rows[0]?.id).not.toBe(ok.json.token);
      expect(rows[0]?.id).toMatch(/^[0-9a-f]{64}$/);

      // Bearer from another client (no cookies at all).
      const script = new Client(h.base);
      const viaBearer = await script.req('GET', '/api/session', { headers: bearer(ok.json.token) });
      expect(viaBearer.status).toBe(200);
      expect(viaBearer.json).toMatchObject({ user: { name: 'alice' }, via: 'bearer' });
      const viaCookie = await c.req('GET', '/api/session');
      expect(viaCookie.json).toMatchObject({ via: 'cookie', csrf: ok.json.csrf });
      expect((await c.req('GET', '/')).status).toBe(200);
      expect((await c.req('GET', '/login')).status).toBe(302);

      const out = await script.req('POST', '/api/logout', { headers: bearer(ok.json.token) });
      expect(out.status).toBe(200);
      expect((await script.req('GET', '/api/routes', { headers: bearer(ok.json.token) })).status).toBe(401);
      expect((await c.req('GET', '/api/routes')).status).toBe(401);
    });

    it('sessions expire', async () => {
      const t0 = Date.now();
      const h = await startWeb(b, { sessionTtlS: 60 });
      h.setNow(t0);
      const { token } = await loggedIn(h);
      expect((await h.client.req('GET', '/api/version', { headers: bearer(token) })).status).toBe(200);
      h.setNow(t0 + 61_000);
      expect((await h.client.req('GET', '/api/version', { headers: bearer(token) })).status).toBe(401);
    });

    it('rate-limits failed logins per (address, user name) and per address (429 with Retry-After)', async () => {
      const t0 = Date.now();
      const h = await startWeb(b, {
        loginRateLimit: { maxFailuresPerUser: 3, maxFailuresPerIp: 6, windowMs: 60_000 },
      });
      h.setNow(t0);
      const c = h.client;
      for (let i = 0; i < 3; i++) expect((await c.login('alice', `bad ${i} password`)).status).toBe(401);
      const limited = await c.login('alice', 'bad again password');
      expect(limited.status).toBe(429);
      expect(limited.json.error.code).toBe('LARS_ERR_RATE_LIMITED');
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(59);
      // Even the right password is refused while the name is locked.
      expect((await c.login()).status).toBe(429);
      // Another name from the same IP still has IP budget left (3 of 6 used)...
      await createUser(h.store, 'bob', PASSWORD, undefined, FAST_HASH);
      expect((await c.login('bob', PASSWORD)).status).toBe(200);
      for (let i = 0; i < 3; i++) expect((await c.login(`nobody${i}`, 'bad password')).status).toBe(401);
      // ...until the IP is used up too: now every name from it is refused.
      expect((await c.login('bob', PASSWORD)).status).toBe(429);
      // The window ends.
      h.setNow(t0 + 61_000);
      expect((await c.login()).status).toBe(200);
    });

    it('validates input: 400 with a message naming the field; 404 and 409 where they apply', async () => {
      const h = await startWeb(b);
      const { token } = await loggedIn(h);
      const post = (body: unknown) =>
        h.client.req('POST', '/api/routes', { body, headers: bearer(token), cookies: false });
      const cases: Array<[unknown, RegExp]> = [
        [{ modid: 1, cmdid: 1, ip: '10.0.0.256', port: 80 }, /ip: "10\.0\.0\.256" is not an IPv4 address/],
        [{ modid: 1, cmdid: 1, ip: '10.0.0', port: 80 }, /ip: .* is not an IPv4 address/],
        [{ modid: 1, cmdid: 1, ip: 167772161, port: 80 }, /ip: expected an IPv4 address/],
        [
          { modid: 1, cmdid: 1, ip: '10.0.0.1', port: 0 },
          /port: 0 is not a port \(expected an integer from 1 to 65535\)/,
        ],
        [{ modid: 1, cmdid: 1, ip: '10.0.0.1', port: 65536 }, /port: 65536 is not a port/],
        [{ modid: 1, cmdid: 1, ip: '10.0.0.1', port: 'http' }, /port: "http" is not a port/],
        [{ modid: 'abc', cmdid: 1, ip: '10.0.0.1', port: 80 }, /modid: "abc" is not an integer/],
        [{ modid: 1.5, cmdid: 1, ip: '10.0.0.1', port: 80 }, /modid: 1\.5 is not an integer/],
        [
          { modid: 2 ** 31, cmdid: 1, ip: '10.0.0.1', port: 80 },
          /modid: 2147483648 is not an integer from 0 to 2147483647/,
        ],
        // The original's columns are unsigned (issue 16).
        [
          { modid: -1, cmdid: 1, ip: '10.0.0.1', port: 80 },
          /modid: -1 is not an integer from 0 to 2147483647/,
        ],
        [{ modid: 1, cmdid: -5, ip: '10.0.0.1', port: 80 }, /cmdid: -5 is not an integer from 0/],
        [{ modid: 1, ip: '10.0.0.1', port: 80 }, /cmdid is required/],
        [[1, 2, 3], /expected a JSON object body/],
      ];
      for (const [body, message] of cases) {
        const r = await post(body);
        expect(r.status, JSON.stringify(body)).toBe(400);
        expect(r.json.error.code).toBe('LARS_ERR_INVALID_ARGUMENT');
        expect(r.json.error.message).toMatch(message);
      }
      const badJson = await h.client.req('POST', '/api/routes', {
        rawBody: '{"modid":',
        headers: { ...bearer(token), 'content-type': 'application/json' },
        cookies: false,
      });
      expect(badJson.status).toBe(400);
      expect(badJson.json.error.code).toBe('LARS_ERR_INVALID_ARGUMENT');
      expect(await routeDataCount(h.store)).toBe(0);
      expect(await h.store.getVersion()).toBe(0);

      // Strings from forms are fine.
      const ok = await post({ modid: '1', cmdid: '2', ip: ' 10.0.0.1 ', port: '8080' });
      expect(ok.status).toBe(201);
      const dup = await post({ modid: 1, cmdid: 2, ip: '10.0.0.1', port: 8080 });
      expect(dup.status).toBe(409);
      expect(dup.json.error).toMatchObject({ code: 'LARS_ERR_CONFLICT' });
      expect(dup.json.error.message).toContain('10.0.0.1:8080 in route 1/2 already exists');

      const auth = { headers: bearer(token), cookies: false };
      expect((await h.client.req('PUT', '/api/routes/999999', { ...auth, body: { port: 1 } })).status).toBe(
        404,
      );
      expect((await h.client.req('DELETE', '/api/routes/999999', auth)).status).toBe(404);
      // A bodiless DELETE that still says content-type: application/json (curl -H ... -X DELETE).
      const jsonHeaderOnly = {
        headers: { ...bearer(token), 'content-type': 'application/json' },
        cookies: false,
      };
      expect((await h.client.req('DELETE', '/api/routes/999999', jsonHeaderOnly)).status).toBe(404);
      expect((await h.client.req('GET', '/api/routes/999999', auth)).status).toBe(404);
      const badId = await h.client.req('DELETE', '/api/routes/1%20OR%201=1', auth);
      expect(badId.status).toBe(400);
      expect(badId.json.error.message).toMatch(/^id: /);
      const badPut = await h.client.req('PUT', `/api/routes/${ok.json.id}`, {
        ...auth,
        body: { port: 70000 },
      });
      expect(badPut.status).toBe(400);
      expect((await h.client.req('GET', '/api/routes?limit=0', auth)).status).toBe(400);
      expect((await h.client.req('GET', '/api/health/history?modid=1&cmdid=2&range=week', auth)).status).toBe(
        400,
      );
      expect(await routeDataCount(h.store)).toBe(1);
      const delNoBody = await h.client.req('DELETE', `/api/routes/${ok.json.id}`, jsonHeaderOnly);
      expect(delNoBody.status, delNoBody.text).toBe(200);
      expect(await routeDataCount(h.store)).toBe(0);
    });

    it('injection-shaped input in search and forms has no effect; text is stored verbatim', async () => {
      const h = await startWeb(b);
      const { token } = await loggedIn(h);
      const auth = { headers: bearer(token), cookies: false };
      await h.store.addHost(1, 1, ipToNumber('10.0.0.1'), 80);
      await h.store.addHost(2, 2, ipToNumber('10.0.0.2'), 80);
      const version = await h.store.getVersion();

      for (const q of [
        'modid=1%20OR%201%3D1',
        "modid=1'%20OR%20'1'%3D'1",
        'modid=1&cmdid=1%3B%20DROP%20TABLE%20RouteData%3B%20--',
        'modid=1&modid=2',
        'limit=1%3BDELETE%20FROM%20RouteData',
      ]) {
        const r = await h.client.req('GET', `/api/routes?${q}`, auth);
        expect(r.status, q).toBe(400);
        expect(r.json.error.code).toBe('LARS_ERR_INVALID_ARGUMENT');
      }
      const exact = await h.client.req('GET', '/api/routes?modid=1', auth);
      expect(exact.json.hosts).toHaveLength(1);

      const evil = "'; DROP TABLE RouteData; --";
      const created = await h.client.req('POST', '/api/modids', {
        ...auth,
        body: { modid: 7, content: evil },
      });
      expect(created.status).toBe(201);
      const markup = '<script>alert(1)</script> & "quotes"';
      expect(
        (await h.client.req('PUT', '/api/cmdids/9', { ...auth, body: { content: markup } })).status,
      ).toBe(201);
      const badIp = await h.client.req('POST', '/api/routes', {
        ...auth,
        body: { modid: 1, cmdid: 1, ip: "10.0.0.1'); DELETE FROM RouteData; --", port: 80 },
      });
      expect(badIp.status).toBe(400);
      const badModid = await h.client.req('POST', '/api/routes', {
        ...auth,
        body: { modid: '1 OR 1=1', cmdid: 1, ip: '10.0.0.9', port: 80 },
      });
      expect(badModid.status).toBe(400);
      expect((await h.client.req('DELETE', '/api/modids/7%20OR%201=1', auth)).status).toBe(400);

      const mods = await h.client.req('GET', '/api/modids', auth);
      expect(mods.json.modids).toEqual([{ modid: 7, content: evil }]);
      const cmds = await h.client.req('GET', '/api/cmdids', auth);
      expect(cmds.json.cmdids).toEqual([{ cmdid: 9, content: markup }]);
      expect(await routeDataCount(h.store)).toBe(2);
      expect(await h.store.getVersion()).toBe(version);
      expect((await h.store.listModIds())[0]?.content).toBe(evil);
    });

    it('cookie-authenticated writes need the CSRF token (403 without); bearer writes do not', async () => {
      const h = await startWeb(b);
      const { csrf, token } = await loggedIn(h);
      const c = h.client;
      const body = { modid: 3, cmdid: 4, ip: '10.1.1.1', port: 9000 };
      const none = await c.req('POST', '/api/routes', { body });
      expect(none.status).toBe(403);
      expect(none.json.error.code).toBe('LARS_ERR_FORBIDDEN');
      const wrong = await c.req('POST', '/api/routes', { body, headers: { 'x-csrf-token': 'f'.repeat(64) } });
      expect(wrong.status).toBe(403);
      expect((await c.req('POST', '/api/modids', { body: { modid: 1, content: 'x' } })).status).toBe(403);
      expect((await c.req('POST', '/api/logout', { body: {} })).status).toBe(403);
      expect(await routeDataCount(h.store)).toBe(0);
      expect(await h.store.getVersion()).toBe(0);
      // Reads need no CSRF token.
      expect((await c.req('GET', '/api/routes')).status).toBe(200);

      const ok = await c.req('POST', '/api/routes', { body, headers: { 'x-csrf-token': csrf } });
      expect(ok.status).toBe(201);
      const id = ok.json.id;
      expect((await c.req('DELETE', `/api/routes/${id}`)).status).toBe(403);
      expect((await c.req('PUT', `/api/routes/${id}`, { body: { port: 9001 } })).status).toBe(403);
      const viaBearer = await new Client(h.base).req('PUT', `/api/routes/${id}`, {
        body: { port: 9001 },
        headers: bearer(token),
      });
      expect(viaBearer.status).toBe(200);
      expect((await h.store.getHostById(id))?.port).toBe(9001);
    });

    it('every route write bumps the version, records a change (deletes too) and notifies dns', async () => {
      const h = await startWeb(b);
      const { token } = await loggedIn(h);
      const auth = { headers: bearer(token), cookies: false };
      const c = h.client;
      const lastChange = async () => (await h.store.changesAfter(0)).at(-1);

      const add = await c.req('POST', '/api/routes', {
        ...auth,
        body: { modid: 5, cmdid: 6, ip: '192.168.1.177', port: 7777 },
      });
      expect(add.status).toBe(201);
      expect(add.json).toMatchObject({ id: expect.any(Number), version: expect.any(Number) });
      const v1 = add.json.version;
      expect(v1).toBeGreaterThan(0);
      expect(await h.store.getVersion()).toBe(v1);
      expect(await lastChange()).toMatchObject({ modid: 5, cmdid: 6, version: v1 });
      expect(h.notifies()).toBe(1);
      const row = await h.store.getHostById(add.json.id);
      expect(row).toMatchObject({ modid: 5, cmdid: 6, ip: 3232235953, port: 7777 });
      const listed = await c.req('GET', '/api/routes?modid=5&cmdid=6', auth);
      expect(listed.json).toMatchObject({ version: v1, total: 1 });
      expect(listed.json.hosts).toEqual([
        {
          id: add.json.id,
          modid: 5,
          cmdid: 6,
          ip: '192.168.1.177',
          port: 7777,
          weight: 1,
          origin: 'manual',
          manualWeight: null,
          lease: null,
        },
      ]);

      // Edit within the route: one change row.
      const put = await c.req('PUT', `/api/routes/${add.json.id}`, { ...auth, body: { port: 7778 } });
      expect(put.status).toBe(200);
      expect(put.json.changed).toBe(true);
      const v2 = put.json.version;
      expect(v2).toBeGreaterThan(v1);
      expect(await lastChange()).toMatchObject({ modid: 5, cmdid: 6, version: v2 });
      expect(h.notifies()).toBe(2);

      // Moving a host to another route changes both routes.
      const move = await c.req('PUT', `/api/routes/${add.json.id}`, {
        ...auth,
        body: { modid: 5, cmdid: 7, ip: '10.0.0.1', port: 1 },
      });
      const v3 = move.json.version;
      expect(v3).toBeGreaterThan(v2);
      const moved = (await h.store.changesAfter(0)).filter((ch) => ch.version === v3);
      expect(moved.map((ch) => `${ch.modid}/${ch.cmdid}`).sort()).toEqual(['5/6', '5/7']);

      // A PUT that changes nothing writes nothing.
      const same = await c.req('PUT', `/api/routes/${add.json.id}`, { ...auth, body: { port: 1 } });
      expect(same.json).toMatchObject({ changed: false, version: v3 });
      expect(h.notifies()).toBe(3);

      const del = await c.req('DELETE', `/api/routes/${add.json.id}`, auth);
      expect(del.status).toBe(200);
      const v4 = del.json.version;
      expect(v4).toBeGreaterThan(v3);
      expect(del.json.removed).toMatchObject({ modid: 5, cmdid: 7, ip: '10.0.0.1', port: 1 });
      expect(await lastChange()).toMatchObject({ modid: 5, cmdid: 7, version: v4 });
      expect(await h.store.getHostById(add.json.id)).toBeUndefined();
      expect(h.notifies()).toBe(4);

      expect((await c.req('GET', '/api/version', auth)).json).toEqual({ version: v4 });
      const log = await c.req('GET', '/api/changes?limit=2', auth);
      expect(log.json.order).toBe('descending');
      expect(log.json.changes.map((ch: { version: number }) => ch.version)).toEqual([v4, v3]);
      const older = await c.req('GET', `/api/changes?limit=50&before=${log.json.nextBefore}`, auth);
      expect(older.json.changes.map((ch: { version: number }) => ch.version)).toEqual([v3, v2, v1]);
      expect(older.json.nextBefore).toBeNull();
      const forward = await c.req('GET', '/api/changes?after=0', auth);
      expect(forward.json.changes.map((ch: { version: number }) => ch.version)).toEqual([v1, v2, v3, v3, v4]);

      // Id descriptions are not routes: no version bump, no notification.
      expect(
        (await c.req('POST', '/api/modids', { ...auth, body: { modid: 5, content: 'payments' } })).status,
      ).toBe(201);
      expect(
        (await c.req('POST', '/api/modids', { ...auth, body: { modid: 5, content: 'again' } })).status,
      ).toBe(409);
      expect(
        (await c.req('PUT', '/api/modids/5', { ...auth, body: { content: 'payments v2' } })).status,
      ).toBe(200);
      expect((await c.req('DELETE', '/api/modids/5', auth)).status).toBe(200);
      expect((await c.req('DELETE', '/api/modids/5', auth)).status).toBe(404);
      expect(await h.store.getVersion()).toBe(v4);
      expect(h.notifies()).toBe(4);
    });

    it('weights (add, edit, clear) and registered hosts with their lease (issue 15)', async () => {
      const h = await startWeb(b);
      const { token } = await loggedIn(h);
      const auth = { headers: bearer(token), cookies: false };
      const c = h.client;
      const add = await c.req('POST', '/api/routes', {
        ...auth,
        body: { modid: 8, cmdid: 1, ip: '10.0.0.1', port: 80, weight: '3' },
      });
      expect(add.status).toBe(201);
      expect(await h.store.getRouteWeights(8, 1)).toEqual([
        { modid: 8, cmdid: 1, ip: 167772161, port: 80, weight: 3 },
      ]);
      const bad = await c.req('PUT', `/api/routes/${add.json.id}`, { ...auth, body: { weight: 0 } });
      expect(bad.status).toBe(400);
      expect(bad.json.error.message).toMatch(/^weight: /);
      const same = await c.req('PUT', `/api/routes/${add.json.id}`, { ...auth, body: { weight: 3 } });
      expect(same.json).toMatchObject({ changed: false, version: add.json.version });
      const edit = await c.req('PUT', `/api/routes/${add.json.id}`, { ...auth, body: { weight: 5 } });
      expect(edit.json.changed).toBe(true);
      expect(edit.json.version).toBeGreaterThan(add.json.version);
      expect((await c.req('GET', `/api/routes/${add.json.id}`, auth)).json).toMatchObject({
        weight: 5,
        manualWeight: 5,
        origin: 'manual',
        lease: null,
      });
      const clear = await c.req('PUT', `/api/routes/${add.json.id}`, { ...auth, body: { weight: null } });
      expect(clear.json.changed).toBe(true);
      expect(await h.store.getRouteWeights(8, 1)).toEqual([]);

      const now = Date.now();
      await h.store.renewLeases({
        agent: '10.0.0.9:8888',
        renew: [{ modid: 8, cmdid: 1, ip: 167772162, port: 81, weight: 2, ttlMs: 10_000 }],
        remove: [],
        nowMs: now,
        dnsId: 'dns-x',
      });
      const listed = await c.req('GET', '/api/routes?modid=8', auth);
      expect(listed.json.now).toEqual(expect.any(Number));
      expect(listed.json.hosts[1]).toEqual({
        id: expect.any(Number),
        modid: 8,
        cmdid: 1,
        ip: '10.0.0.2',
        port: 81,
        weight: 2,
        origin: 'registered',
        manualWeight: null,
        lease: { agent: '10.0.0.9:8888', expiresAt: now + 10_000, renewedAt: now, ttlS: 10, weight: 2 },
      });
    });

    it('asks registered dns instances for an immediate poll by default, and shows their agents on the dashboard', async () => {
      const { store } = await freshStore(b);
      await createUser(store, 'alice', PASSWORD, undefined, FAST_HASH);
      const dns = await fakeDnsAdmin({ status: 'ok', connections: 3, subscriptions: 7, version: 42 });
      await store.registerDnsInstance({ id: 'dns-a', host: '127.0.0.1', port: 7778, adminPort: dns.port });
      // Registered but not answering: shown as unknown. (Port 1 on loopback refuses at once.)
      await store.registerDnsInstance({ id: 'dns-b', host: '127.0.0.1', port: 7779, adminPort: 1 });
      const web = new WebService({ store, host: '127.0.0.1', port: 0, passwordHashing: FAST_HASH });
      onTestFinished(() => web.close());
      const client = new Client((await web.start()).url);
      const { json } = await client.login();
      const auth = { headers: bearer(json.token), cookies: false };
      const add = await client.req('POST', '/api/routes', {
        ...auth,
        body: { modid: 1, cmdid: 1, ip: '10.0.0.1', port: 80 },
      });
      expect(add.status).toBe(201);
      expect(add.json.notified).toEqual({ attempted: 2, acknowledged: 1 });
      expect(dns.polls()).toBe(1);

      const d = await client.req('GET', '/api/dashboard', auth);
      expect(d.status).toBe(200);
      expect(d.json).toMatchObject({ version: add.json.version, routes: 1, hosts: 1 });
      expect(d.json.dns.agentsConnected).toBe(3);
      expect(d.json.dns.partial).toBe(true);
      const byId = Object.fromEntries(d.json.dns.instances.map((i: { id: string }) => [i.id, i]));
      expect(byId['dns-a']).toMatchObject({ reachable: true, connections: 3, subscriptions: 7, version: 42 });
      expect(byId['dns-b']).toMatchObject({ reachable: false, connections: null, subscriptions: null });
      expect(d.json.recentChanges[0]).toMatchObject({ modid: 1, cmdid: 1, version: add.json.version });
    });

    it('call health: latest status per host and caller, per-minute history with overload, overloaded hosts now', async () => {
      const h = await startWeb(b);
      const nowS = 1_760_000_000 + 30; // 30 s into a minute
      h.setNow(nowS * 1000);
      const { token } = await loggedIn(h);
      const auth = { headers: bearer(token), cookies: false };
      const ipA = ipToNumber('10.0.0.1');
      const ipB = ipToNumber('10.0.0.2');
      const ipGone = ipToNumber('10.0.0.9');
      const caller1 = ipToNumber('192.168.0.1');
      const caller2 = ipToNumber('192.168.0.2');
      await h.store.addHost(1, 2, ipA, 80);
      await h.store.addHost(1, 2, ipB, 80);
      await h.store.addHost(1, 2, ipToNumber('10.0.0.3'), 80);
      await h.store.db
        .insertInto('ServerCallStatus')
        .values([
          {
            modid: 1,
            cmdid: 2,
            ip: ipA,
            port: 80,
            caller: caller1,
            succ_cnt: 100,
            err_cnt: 1,
            ts: nowS - 5,
            overload: '0',
          },
          {
            modid: 1,
            cmdid: 2,
            ip: ipA,
            port: 80,
            caller: caller2,
            succ_cnt: 90,
            err_cnt: 0,
            ts: nowS - 5,
            overload: '0',
          },
          {
            modid: 1,
            cmdid: 2,
            ip: ipB,
            port: 80,
            caller: caller1,
            succ_cnt: 3,
            err_cnt: 40,
            ts: nowS - 2,
            overload: '1',
          },
          {
            modid: 1,
            cmdid: 2,
            ip: ipGone,
            port: 80,
            caller: caller1,
            succ_cnt: 1,
            err_cnt: 1,
            ts: nowS - 9000,
            overload: '1',
          },
          {
            modid: 9,
            cmdid: 9,
            ip: ipA,
            port: 81,
            caller: caller2,
            succ_cnt: 0,
            err_cnt: 9,
            ts: nowS - 10,
            overload: '1',
          },
        ])
        .execute();
      const minute = nowS - (nowS % 60);
      const hist = [];
      for (let i = 0; i < 10; i++) {
        const m = minute - i * 60;
        hist.push({
          modid: 1,
          cmdid: 2,
          ip: ipA,
          port: 80,
          caller: caller1,
          minute: m,
          succ_cnt: 50,
          err_cnt: 1,
          overload: 0,
        });
        hist.push({
          modid: 1,
          cmdid: 2,
          ip: ipA,
          port: 80,
          caller: caller2,
          minute: m,
          succ_cnt: 40,
          err_cnt: 0,
          overload: 0,
        });
        hist.push({
          modid: 1,
          cmdid: 2,
          ip: ipB,
          port: 80,
          caller: caller1,
          minute: m,
          succ_cnt: 5,
          err_cnt: 30,
          overload: i < 3 ? 1 : 0,
        });
      }
      // Older than an hour, inside a day.
      hist.push({
        modid: 1,
        cmdid: 2,
        ip: ipA,
        port: 80,
        caller: caller1,
        minute: minute - 5 * 3600,
        succ_cnt: 7,
        err_cnt: 7,
        overload: 1,
      });
      // Another route: never mixed in.
      hist.push({
        modid: 1,
        cmdid: 3,
        ip: ipA,
        port: 80,
        caller: caller1,
        minute,
        succ_cnt: 999,
        err_cnt: 999,
        overload: 1,
      });
      await h.store.db.insertInto('lars_call_history').values(hist).execute();

      const status = await h.client.req('GET', '/api/health/status?modid=1&cmdid=2', auth);
      expect(status.status).toBe(200);
      const hosts = status.json.hosts as Array<{
        ip: string;
        id: number | null;
        callers: Array<Record<string, unknown>>;
      }>;
      expect(hosts.map((x) => [x.ip, x.id === null, x.callers.length])).toEqual([
        ['10.0.0.1', false, 2],
        ['10.0.0.2', false, 1],
        ['10.0.0.3', false, 0],
        ['10.0.0.9', true, 1],
      ]);
      expect(hosts[1]?.callers[0]).toEqual({
        caller: '192.168.0.1',
        succ: 3,
        err: 40,
        overload: true,
        ts: nowS - 2,
      });

      const hour = await h.client.req('GET', '/api/health/history?modid=1&cmdid=2&range=hour', auth);
      expect(hour.status).toBe(200);
      expect(hour.json.minutes).toHaveLength(60);
      expect(hour.json.minutes.at(-1)).toBe(minute);
      expect(hour.json.succ.at(-1)).toBe(95);
      expect(hour.json.err.at(-1)).toBe(31);
      expect(hour.json.overloadedHosts.slice(-4)).toEqual([0, 1, 1, 1]);
      expect(hour.json.succ.at(-11)).toBeNull();
      expect(hour.json.succ.filter((v: number | null) => v !== null)).toHaveLength(10);
      const day = await h.client.req('GET', '/api/health/history?modid=1&cmdid=2&range=day', auth);
      expect(day.json.minutes).toHaveLength(1440);
      expect(day.json.succ.filter((v: number | null) => v !== null)).toHaveLength(11);
      expect(day.json.overloadedHosts.filter((v: number | null) => v !== null && v > 0)).toHaveLength(4);
      const oneHost = await h.client.req(
        'GET',
        '/api/health/history?modid=1&cmdid=2&range=hour&ip=10.0.0.1&port=80',
        auth,
      );
      expect(oneHost.json.succ.at(-1)).toBe(90);
      expect(oneHost.json.overloadedHosts.at(-1)).toBe(0);
      expect(
        (await h.client.req('GET', '/api/health/history?modid=1&cmdid=2&ip=10.0.0.1', auth)).status,
      ).toBe(400);

      const d = await h.client.req('GET', '/api/dashboard', auth);
      // 10.0.0.9's report is stale; 9/9 is fresh.
      expect(d.json.overloaded.total).toBe(2);
      expect(d.json.overloaded.hosts).toEqual([
        { modid: 1, cmdid: 2, ip: '10.0.0.2', port: 80, callers: 1, lastReport: nowS - 2 },
        { modid: 9, cmdid: 9, ip: '10.0.0.1', port: 81, callers: 1, lastReport: nowS - 10 },
      ]);
      const overloaded = await h.client.req('GET', '/api/health/overloaded?limit=1', auth);
      expect(overloaded.json).toMatchObject({
        now: nowS,
        freshnessS: 300,
        total: 2,
        hosts: [d.json.overloaded.hosts[0]],
      });
      expect(d.json).toMatchObject({
        routes: 1,
        hosts: 3,
        dns: { instances: [], agentsConnected: 0, partial: false },
      });
    });

    it('sends security headers: CSP without inline script, no framing, no-store on the API', async () => {
      const h = await startWeb(b);
      const { token } = await loggedIn(h);
      for (const path of ['/api/routes', '/', '/login', '/static/app.css', '/api/nope']) {
        const r = await h.client.req('GET', path, { headers: bearer(token) });
        const csp = r.headers.get('content-security-policy') ?? '';
        expect(csp, path).toContain("script-src 'self'");
        expect(csp).toContain("frame-ancestors 'none'");
        expect(csp).not.toContain('unsafe-inline');
        expect(r.headers.get('x-frame-options')).toBe('DENY');
        expect(r.headers.get('x-content-type-options')).toBe('nosniff');
        if (path.startsWith('/api/')) expect(r.headers.get('cache-control')).toBe('no-store');
      }
      const page = await h.client.req('GET', '/login');
      expect(page.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(page.text).not.toMatch(/\sstyle=/);
      expect(page.text).not.toMatch(/\son[a-z]+=/);
    });
  });
});

describe('WebService lifecycle and first admin', () => {
  it('ensureAdminUser creates admin once with a random password that logs in', async () => {
    const { store } = await freshStore(backends()[0]!);
    const password = await ensureAdminUser(store);
    expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(await ensureAdminUser(store)).toBeUndefined();
    const web = new WebService({ store, host: '127.0.0.1', port: 0 });
    onTestFinished(() => web.close());
    const client = new Client((await web.start()).url);
    expect((await client.login('admin', password)).status).toBe(200);
    const given = await freshStore(backends()[0]!);
    expect(await ensureAdminUser(given.store, { password: 'from-the-environment' })).toBe(
      'from-the-environment',
    );
  });

  it('an outsider failing logins cannot lock the user out; only its own address is refused', async () => {
    const { store } = await freshStore(backends()[0]!);
    await createUser(store, 'admin', PASSWORD, undefined, FAST_HASH);
    const web = new WebService({
      store,
      host: '127.0.0.1',
      port: 0,
      trustProxy: true,
      passwordHashing: FAST_HASH,
      loginRateLimit: { maxFailuresPerUser: 5, maxFailuresPerIp: 20 },
    });
    onTestFinished(() => web.close());
    const client = new Client((await web.start()).url);
    const from = (ip: string) => ({ 'x-forwarded-for': ip });
    const login = (ip: string, password: string) =>
      client.req('POST', '/api/login', {
        body: { username: 'admin', password },
        headers: from(ip),
        cookies: false,
      });
    for (let i = 0; i < 5; i++) expect((await login('203.0.113.9', `guess number ${i}`)).status).toBe(401);
    expect((await login('203.0.113.9', PASSWORD)).status).toBe(429);
    // The admin, from their own address, is not affected.
    expect((await login('198.51.100.7', PASSWORD)).status).toBe(200);
  });

  it('new hashes use scrypt N = 2^17; an older hash is replaced at the next login, transparently', async () => {
    const { store } = await freshStore(backends()[0]!);
    // A user created before issue 11, with the old cost N = 2^14.
    await createUser(store, 'old', PASSWORD, undefined, { N: 16384, r: 8, p: 1 });
    const hashOf = async () =>
      String(
        (
          await store.db
            .selectFrom('lars_user')
            .select('password_hash')
            .where('name', '=', 'old')
            .executeTakeFirst()
        )?.password_hash,
      );
    expect(await hashOf()).toMatch(/^scrypt\$16384\$/);
    const web = new WebService({ store, host: '127.0.0.1', port: 0 });
    onTestFinished(() => web.close());
    const client = new Client((await web.start()).url);
    const first = await client.login('old', PASSWORD);
    expect(first.status).toBe(200);
    expect(await hashOf()).toMatch(/^scrypt\$131072\$8\$1\$/);
    // Same password, same session, and the next login verifies against the new hash.
    expect((await client.req('GET', '/api/session', { headers: bearer(first.json.token) })).status).toBe(200);
    expect((await client.login('old', PASSWORD)).status).toBe(200);
  });

  it('close() is idempotent and start() after close() is refused', async () => {
    const { store } = await freshStore(backends()[0]!);
    const web = new WebService({ store, host: '127.0.0.1', port: 0 });
    const { url, port } = await web.start();
    expect(url).toBe(`http://127.0.0.1:${port}`);
    expect(web.address().port).toBe(port);
    await Promise.all([web.close(), web.close()]);
    await web.close();
    await expect(web.start()).rejects.toBeInstanceOf(ClosedError);
    expect(() => web.address()).toThrow(ClosedError);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });
});
