import type { FastifyInstance } from 'fastify';
import { InvalidArgumentError } from '../errors.js';
import {
  callHistory,
  HISTORY_RANGES,
  overloadedHosts,
  routeStatus,
  type HistoryRange,
} from './call-health.js';
import { boundedInt, modCmdField, ipField, portField, queryObject } from './input.js';
import { nowSeconds, type WebContext } from './web-context.js';

/**
 * Call health: latest counters per host and caller of one route, its per-minute history for charts,
 * and the hosts overloaded now across all routes.
 */
export function registerHealthApi(app: FastifyInstance, ctx: WebContext): void {
  app.get('/api/health/overloaded', async (request) => {
    const q = queryObject(request.query);
    const limit = boundedInt(q.limit, 'limit', 100, 1, 10_000);
    const now = nowSeconds(ctx);
    const result = await overloadedHosts(ctx.store, now - ctx.overloadFreshnessS, limit);
    return { now, freshnessS: ctx.overloadFreshnessS, ...result };
  });

  app.get('/api/health/status', async (request) => {
    const q = queryObject(request.query);
    const modid = modCmdField(q.modid, 'modid');
    const cmdid = modCmdField(q.cmdid, 'cmdid');
    const hosts = await routeStatus(ctx.store, modid, cmdid);
    return { modid, cmdid, now: nowSeconds(ctx), hosts };
  });

  app.get('/api/health/history', async (request) => {
    const q = queryObject(request.query);
    const modid = modCmdField(q.modid, 'modid');
    const cmdid = modCmdField(q.cmdid, 'cmdid');
    const range = (q.range ?? 'hour') as HistoryRange;
    if (!Object.hasOwn(HISTORY_RANGES, range)) {
      throw new InvalidArgumentError(
        `range: ${JSON.stringify(q.range)} is not one of ${Object.keys(HISTORY_RANGES).join(', ')}`,
      );
    }
    const hostGiven = (q.ip ?? '') !== '' || (q.port ?? '') !== '';
    const host = hostGiven ? { ip: ipField(q.ip), port: portField(q.port) } : {};
    const history = await callHistory(ctx.store, { modid, cmdid, range, nowS: nowSeconds(ctx), ...host });
    return { modid, cmdid, ...(hostGiven ? { ip: q.ip, port: Number(q.port) } : {}), ...history };
  });
}
