import fastifyCookie from '@fastify/cookie';
import Fastify, { type FastifyInstance } from 'fastify';
import { ErrorCode } from '../errors.js';
import { isApiPath, registerAuth } from './auth.js';
import { registerChangesApi } from './changes-api.js';
import { registerDashboardApi } from './dashboard-api.js';
import { registerHealthApi } from './health-api.js';
import { errorBody, makeErrorHandler } from './http-errors.js';
import { registerIdsApi } from './ids-api.js';
import { registerRoutesApi } from './routes-api.js';
import { registerSecurityHeaders } from './security-headers.js';
import { registerStatic, type Assets } from './static-assets.js';
import type { WebContext } from './web-context.js';

/** Largest request body: the API only takes small JSON objects. */
export const WEB_BODY_LIMIT_BYTES = 64 * 1024;

export interface BuildAppOptions {
  /** Use X-Forwarded-For for the client IP (rate limits) when the console sits behind a proxy. */
  trustProxy?: boolean;
}

/**
 * JSON bodies as fastify parses them, except that an empty body is no body (issue 16): clients such
 * as `curl -X DELETE -H 'content-type: application/json'` send the header without one, which
 * fastify's own parser refuses with 400. A malformed non-empty body is still LARS_ERR_INVALID_ARGUMENT.
 */
function acceptEmptyJson(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    parseJson(request, text, done);
  });
}

/** Builds the console's fastify app (not listening). */
export async function buildWebApp(
  ctx: WebContext,
  assets: Assets,
  options: BuildAppOptions = {},
): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: WEB_BODY_LIMIT_BYTES,
    trustProxy: options.trustProxy ?? false,
    // Idle keep-alive sockets (browsers keep several) must not hold close() open.
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  });
  acceptEmptyJson(app);
  // Awaited so its onRequest hook (cookie parsing) runs before the auth hook below.
  await app.register(fastifyCookie);

  registerSecurityHeaders(app);
  app.setErrorHandler(makeErrorHandler(ctx.logger));
  app.setNotFoundHandler(async (request, reply) => {
    if (isApiPath(request.url)) {
      return reply
        .code(404)
        .send(errorBody(ErrorCode.NOT_FOUND, `no API ${request.method} ${request.url.split('?')[0]}`));
    }
    return reply.code(404).type('text/plain; charset=utf-8').send('not found');
  });
  app.addHook('onResponse', async (request, reply) => {
    ctx.logger.debug(
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
        user: request.auth?.userName,
      },
      'request',
    );
  });

  registerAuth(app, ctx);

  app.get('/healthz', { config: { public: true } }, async (_request, reply) => {
    try {
      const version = await ctx.store.getVersion();
      return { status: 'ok', database: 'ok', version };
    } catch (err) {
      ctx.logger.warn({ err }, 'health check: database unavailable');
      return reply.code(503).send({ status: 'failing', database: 'unavailable' });
    }
  });

  registerDashboardApi(app, ctx);
  registerRoutesApi(app, ctx);
  registerIdsApi(app, ctx);
  registerChangesApi(app, ctx);
  registerHealthApi(app, ctx);
  registerStatic(app, ctx, assets);
  return app;
}
