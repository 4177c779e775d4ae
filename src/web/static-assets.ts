import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ConfigError } from '../errors.js';
import { hasSession, safeNext } from './auth.js';
import type { WebContext } from './web-context.js';

/**
 * The browser UI: plain HTML/CSS/ES modules from src/web/public (copied to dist/src/web/public by the
 * build), plus uPlot's dist files from node_modules. Everything is read into memory at start and
 * served by exact name from that table, so no request path ever reaches the file system.
 * Pages need a session (auth.ts redirects to /login); assets under /static are public.
 */

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** Page path -> file in the public directory. */
export const PAGES: Record<string, string> = {
  '/': 'index.html',
  '/routes': 'routes.html',
  '/ids': 'ids.html',
  '/changes': 'changes.html',
  '/health': 'health.html',
};
const LOGIN_PAGE = 'login.html';

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

function asset(path: string): Asset {
  const body = readFileSync(path);
  const type = TYPES[extname(path)] ?? 'application/octet-stream';
  return { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
}

/**
 * The public directory next to this module (src/web/public under tsx/vitest, dist/src/web/public
 * after `npm run build`), else the source copy at the package root (a build without the copy step).
 */
export function resolvePublicDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'public')];
  for (let dir = here, i = 0; i < 5; i++, dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) {
      candidates.push(join(dir, 'src', 'web', 'public'));
      break;
    }
  }
  const found = candidates.find((d) => existsSync(join(d, 'index.html')));
  if (!found)
    throw new ConfigError(
      `web console files not found (looked in ${candidates.join(', ')}); run npm run build`,
    );
  return found;
}

export interface Assets {
  byPath: Map<string, Asset>;
  pages: Map<string, Asset>;
  login: Asset;
}

export function loadAssets(publicDir = resolvePublicDir()): Assets {
  const byPath = new Map<string, Asset>();
  for (const name of readdirSync(publicDir)) {
    const full = join(publicDir, name);
    if (!statSync(full).isFile() || extname(name) === '.html' || !TYPES[extname(name)]) continue;
    byPath.set(`/static/${name}`, asset(full));
  }
  const uplotDir = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
  byPath.set('/static/vendor/uPlot.esm.js', asset(join(uplotDir, 'uPlot.esm.js')));
  byPath.set('/static/vendor/uPlot.min.css', asset(join(uplotDir, 'uPlot.min.css')));
  const pages = new Map<string, Asset>();
  for (const [path, file] of Object.entries(PAGES)) pages.set(path, asset(join(publicDir, file)));
  return { byPath, pages, login: asset(join(publicDir, LOGIN_PAGE)) };
}

function send(request: FastifyRequest, reply: FastifyReply, a: Asset, cache: string): FastifyReply {
  reply.header('cache-control', cache).header('etag', a.etag).type(a.type);
  if (request.headers['if-none-match'] === a.etag) return reply.code(304).send();
  return reply.send(a.body);
}

export function registerStatic(app: FastifyInstance, ctx: WebContext, assets: Assets): void {
  // Revalidated on every load (cheap 304s) so a new build is picked up without stale mixes.
  app.get('/static/*', { config: { public: true } }, async (request, reply) => {
    const a = assets.byPath.get(request.url.split('?')[0] as string);
    if (!a) return reply.code(404).type('text/plain; charset=utf-8').send('not found');
    return send(request, reply, a, 'no-cache');
  });

  for (const [path, a] of assets.pages) {
    app.get(path, async (request, reply) => send(request, reply, a, 'no-store'));
  }

  app.get('/login', { config: { public: true } }, async (request, reply) => {
    if (await hasSession(ctx, request)) {
      return reply.redirect(safeNext((request.query as Record<string, unknown>).next), 302);
    }
    return send(request, reply, assets.login, 'no-store');
  });

  app.get('/favicon.ico', { config: { public: true } }, async (_request, reply) =>
    reply.redirect('/static/favicon.svg', 301),
  );
}
