import type { FastifyInstance } from 'fastify';
import { NotFoundError } from '../errors.js';
import { numberToIp } from '../protocol/ip.js';
import type { HostMeta, HostSpec, RouteRow } from '../store/index.js';
import { dbOp } from './db-op.js';
import {
  bodyObject,
  boundedInt,
  idField,
  modCmdField,
  ipField,
  optionalModCmd,
  portField,
  queryObject,
  weightField,
} from './input.js';
import type { WebContext } from './web-context.js';

/**
 * Routes API: one RouteData row (a host of a route) per id. Every write is one store transaction
 * (RouteData change + version bump + RouteChange row, deletes included), then the live dns instances
 * are asked for an immediate poll so agents see the change at once. The notification is best effort:
 * the write is committed whatever dns answers, and the reply says how many instances acknowledged.
 */

export const DEFAULT_ROUTES_PAGE = 500;
export const MAX_ROUTES_PAGE = 5000;

export interface HostView {
  id: number;
  modid: number;
  cmdid: number;
  ip: string;
  port: number;
  /** Issue 15 (listed hosts): effective weight, origin, manual weight, and the lease while registered. */
  weight?: number;
  origin?: 'manual' | 'registered';
  manualWeight?: number | null;
  lease?: { agent: string; expiresAt: number; renewedAt: number; ttlS: number; weight: number } | null;
}

export function hostView(r: RouteRow, meta?: HostMeta): HostView {
  const base: HostView = { id: r.id, modid: r.modid, cmdid: r.cmdid, ip: numberToIp(r.ip), port: r.port };
  if (!meta) return base;
  return {
    ...base,
    weight: meta.weight,
    origin: meta.origin,
    manualWeight: meta.manualWeight ?? null,
    lease: meta.lease
      ? {
          agent: meta.lease.agent,
          expiresAt: meta.lease.expiresAt,
          renewedAt: meta.lease.renewedAt,
          ttlS: meta.lease.ttlMs / 1000,
          weight: meta.lease.weight,
        }
      : null,
  };
}

export interface NotifySummary {
  attempted: number;
  acknowledged: number;
}

export async function notifyDns(ctx: WebContext): Promise<NotifySummary> {
  try {
    const r = await ctx.notifier(ctx.store);
    if (r.failures.length > 0) {
      ctx.logger.warn(
        { failures: r.failures },
        'some dns instances did not acknowledge the poll request; they see the change at their next poll',
      );
    }
    return { attempted: r.attempted, acknowledged: r.acknowledged };
  } catch (err) {
    ctx.logger.warn({ err }, 'could not notify dns instances; they see the change at their next poll');
    return { attempted: 0, acknowledged: 0 };
  }
}

function hostSpec(body: Record<string, unknown>, current?: RouteRow): HostSpec {
  const pick = (k: string, fallback: number | string | undefined) =>
    body[k] === undefined ? fallback : body[k];
  return {
    modid: modCmdField(pick('modid', current?.modid), 'modid'),
    cmdid: modCmdField(pick('cmdid', current?.cmdid), 'cmdid'),
    ip: ipField(pick('ip', current ? numberToIp(current.ip) : undefined)),
    port: portField(pick('port', current?.port)),
  };
}

export function registerRoutesApi(app: FastifyInstance, ctx: WebContext): void {
  const { store } = ctx;

  app.get('/api/routes', async (request) => {
    const q = queryObject(request.query);
    const modid = optionalModCmd(q.modid, 'modid');
    const cmdid = optionalModCmd(q.cmdid, 'cmdid');
    const limit = boundedInt(q.limit, 'limit', DEFAULT_ROUTES_PAGE, 1, MAX_ROUTES_PAGE);
    const offset = boundedInt(q.offset, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
    const [rows, total, version] = await Promise.all([
      store.listRoutes({ modid, cmdid, limit, offset }),
      dbOp('countRoutes', async () => {
        let qb = store.db.selectFrom('RouteData').select((eb) => eb.fn.countAll().as('n'));
        if (modid !== undefined) qb = qb.where('modid', '=', modid);
        if (cmdid !== undefined) qb = qb.where('cmdid', '=', cmdid);
        return Number((await qb.executeTakeFirst())?.n ?? 0);
      }),
      store.getVersion(),
    ]);
    const meta = await store.describeHosts(rows);
    return {
      version,
      total,
      limit,
      offset,
      now: Date.now(),
      hosts: rows.map((r) => hostView(r, meta.get(r.id))),
    };
  });

  app.get('/api/routes/:id', async (request) => {
    const id = idField((request.params as { id: string }).id);
    const row = await store.getHostById(id);
    if (!row) throw new NotFoundError(`no host with id ${id}`);
    return hostView(row, (await store.describeHosts([row])).get(id));
  });

  app.post('/api/routes', async (request, reply) => {
    const body = bodyObject(request.body);
    const h = hostSpec(body);
    const weight = weightField(body.weight) ?? undefined;
    const { id, version } = await store.addHost(h.modid, h.cmdid, h.ip, h.port, weight ? { weight } : {});
    const notified = await notifyDns(ctx);
    ctx.logger.info({ user: request.auth?.userName, id, ...h, ip: numberToIp(h.ip), version }, 'host added');
    return reply.code(201).send({ id, version, notified });
  });

  app.put('/api/routes/:id', async (request) => {
    const id = idField((request.params as { id: string }).id);
    const body = bodyObject(request.body);
    const current = await store.getHostById(id);
    if (!current) throw new NotFoundError(`no host with id ${id}`);
    // Fields left out keep their current values.
    const h = hostSpec(body, current);
    const weight = weightField(body.weight);
    let { version } = await store.updateHost(id, h);
    let changed = !sameAs(current, h);
    if (weight !== undefined) {
      const before = (await store.describeHosts([current])).get(id)?.manualWeight ?? null;
      if (before !== weight) {
        ({ version } = await store.setHostWeight(id, weight));
        changed = true;
      }
    }
    // A PUT that changes nothing writes nothing (no version bump, no change row, no notification).
    const notified = changed ? await notifyDns(ctx) : { attempted: 0, acknowledged: 0 };
    if (changed)
      ctx.logger.info(
        { user: request.auth?.userName, id, ...h, ip: numberToIp(h.ip), weight, version },
        'host updated',
      );
    return { id, version, changed, notified };
  });

  app.delete('/api/routes/:id', async (request) => {
    const id = idField((request.params as { id: string }).id);
    const { version, removed } = await store.removeHostById(id);
    const notified = await notifyDns(ctx);
    ctx.logger.info({ user: request.auth?.userName, id, version }, 'host removed');
    return { id, version, removed: hostView(removed), notified };
  });
}

function sameAs(a: RouteRow, b: HostSpec): boolean {
  return a.modid === b.modid && a.cmdid === b.cmdid && a.ip === b.ip && a.port === b.port;
}
