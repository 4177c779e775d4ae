import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCode, isLarsError, RateLimitError, type LarsError } from '../errors.js';
import type { Logger } from '../log/logger.js';

/**
 * One error shape for the whole API: `{ "error": { "code": "LARS_ERR_*", "message": "..." } }` with
 * the HTTP status derived from the code (docs/api.md). Messages of client errors are meant for the
 * user (they name the field); server errors are logged in full and answered with a generic message
 * so no SQL or stack leaks out.
 */

export interface ApiErrorBody {
  error: { code: string; message: string };
}

const STATUS_BY_CODE: Partial<Record<LarsError['code'], number>> = {
  [ErrorCode.INVALID_ARGUMENT]: 400,
  [ErrorCode.AUTH]: 401,
  [ErrorCode.FORBIDDEN]: 403,
  [ErrorCode.NOT_FOUND]: 404,
  [ErrorCode.CONFLICT]: 409,
  [ErrorCode.RATE_LIMITED]: 429,
  [ErrorCode.STORE]: 503,
  [ErrorCode.CLOSED]: 503,
  [ErrorCode.TIMEOUT]: 504,
};

export function statusOf(err: LarsError): number {
  return STATUS_BY_CODE[err.code] ?? 500;
}

export function errorBody(code: string, message: string): ApiErrorBody {
  return { error: { code, message } };
}

/** fastify's own client errors (bad JSON, wrong content type, body too large) keep their 4xx status. */
function fastifyClientStatus(err: unknown): number | undefined {
  const s = (err as Partial<FastifyError>)?.statusCode;
  return typeof s === 'number' && s >= 400 && s < 500 ? s : undefined;
}

export function makeErrorHandler(logger: Logger) {
  return (err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (isLarsError(err)) {
      const status = statusOf(err);
      if (err instanceof RateLimitError) reply.header('retry-after', String(err.retryAfterS));
      if (status >= 500) {
        logger.error({ err, method: request.method, url: request.url }, 'request failed');
        const message =
          err.code === ErrorCode.STORE
            ? 'the database is unavailable or a query failed (see the console log)'
            : err.message;
        return reply.code(status).send(errorBody(err.code, message));
      }
      return reply.code(status).send(errorBody(err.code, err.message));
    }
    const clientStatus = fastifyClientStatus(err);
    if (clientStatus !== undefined) {
      const message = (err as Error).message || 'bad request';
      return reply.code(clientStatus).send(errorBody(ErrorCode.INVALID_ARGUMENT, message));
    }
    logger.error({ err, method: request.method, url: request.url }, 'unexpected error');
    return reply.code(500).send(errorBody('LARS_ERR_INTERNAL', 'internal error (see the console log)'));
  };
}
