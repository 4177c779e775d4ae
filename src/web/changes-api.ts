import type { FastifyInstance } from 'fastify';
import type { RouteChangeRow } from '../store/index.js';
import { dbOp } from './db-op.js';
import { boundedInt, queryObject } from './input.js';
import type { WebContext } from './web-context.js';

/**
 * The route version and the change log (RouteChange: one row per changed route per write, with the
 * version it got). Newest first by default (`before` pages back); `after` reads forward in id
 * order, as dns does.
 */

export const DEFAULT_CHANGES_PAGE = 50;
export const MAX_CHANGES_PAGE = 1000;

export function recentChanges(ctx: WebContext, limit: number, before?: number): Promise<RouteChangeRow[]> {
  return dbOp('recentChanges', async () => {
    let q = ctx.store.db.selectFrom('RouteChange').select(['id', 'modid', 'cmdid', 'version']);
    if (before !== undefined) q = q.where('id', '<', before);
    const rows = await q.orderBy('id', 'desc').limit(limit).execute();
    return rows.map((r) => ({
      id: Number(r.id),
      modid: Number(r.modid),
      cmdid: Number(r.cmdid),
      version: Number(r.version),
    }));
  });
}

export function registerChangesApi(app: FastifyInstance, ctx: WebContext): void {
  app.get('/api/version', async () => ({ version: await ctx.store.getVersion() }));

  app.get('/api/changes', async (request) => {
    const q = queryObject(request.query);
    const limit = boundedInt(q.limit, 'limit', DEFAULT_CHANGES_PAGE, 1, MAX_CHANGES_PAGE);
    const version = await ctx.store.getVersion();
    if (q.after !== undefined && q.after !== '') {
      const after = boundedInt(q.after, 'after', 0, 0, Number.MAX_SAFE_INTEGER);
      const changes = await ctx.store.changesAfter(after, limit);
      return { version, order: 'ascending', changes };
    }
    const before =
      q.before === undefined || q.before === ''
        ? undefined
        : boundedInt(q.before, 'before', 0, 1, Number.MAX_SAFE_INTEGER);
    const changes = await recentChanges(ctx, limit, before);
    const last = changes[changes.length - 1];
    return {
      version,
      order: 'descending',
      changes,
      nextBefore: changes.length === limit && last ? last.id : null,
    };
  });
}
