import type { FastifyInstance } from 'fastify';
import { overloadedHosts } from './call-health.js';
import { recentChanges } from './changes-api.js';
import { dbOp } from './db-op.js';
import { dnsSummary } from './dns-health.js';
import { nowSeconds, type WebContext } from './web-context.js';

/** The dashboard in one call: counts, overloaded hosts now, dns and its agents, recent changes. */

export const DASHBOARD_OVERLOADED_LIMIT = 50;
export const DASHBOARD_CHANGES_LIMIT = 10;

export function registerDashboardApi(app: FastifyInstance, ctx: WebContext): void {
  const { store } = ctx;
  app.get('/api/dashboard', async () => {
    const now = nowSeconds(ctx);
    const [version, counts, overloaded, dns, changes] = await Promise.all([
      store.getVersion(),
      dbOp('dashboardCounts', async () => {
        const routes = await store.db
          .selectFrom(
            store.db.selectFrom('RouteData').select(['modid', 'cmdid']).groupBy(['modid', 'cmdid']).as('r'),
          )
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirst();
        const hosts = await store.db
          .selectFrom('RouteData')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirst();
        return { routes: Number(routes?.n ?? 0), hosts: Number(hosts?.n ?? 0) };
      }),
      overloadedHosts(store, now - ctx.overloadFreshnessS, DASHBOARD_OVERLOADED_LIMIT),
      dnsSummary(store, ctx.dnsHealthTimeoutMs, ctx.fetch),
      recentChanges(ctx, DASHBOARD_CHANGES_LIMIT),
    ]);
    return {
      now,
      version,
      routes: counts.routes,
      hosts: counts.hosts,
      overloaded: { ...overloaded, freshnessS: ctx.overloadFreshnessS },
      dns,
      recentChanges: changes,
    };
  });
}
