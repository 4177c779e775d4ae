import type { Kysely, Transaction } from 'kysely';
import { NotFoundError } from '../errors.js';
import type { Database } from './schema.js';
import { leaseKeyString, type HostMeta, type LeaseKey, type WeightRow } from './lease-types.js';
import type { LeaseOps, LeaseStoreContext } from './store-leases.js';

/**
 * Host weights (issue 15). A host's effective weight is its manual weight (lars_route_weight,
 * keyed by the RouteData row id, set with `lars route add --weight` or the console) when an operator
 * set one, else the weight its registered instance declared (lars_route_lease), else 1. dns loads
 * the hosts whose effective weight is not 1 into its snapshot (HostInfo.weight).
 */

type Db = Kysely<Database>;

interface ManualWeight extends LeaseKey {
  id: number;
  weight: number;
}

async function manualWeights(db: Db, route?: { modid: number; cmdid: number }): Promise<ManualWeight[]> {
  let q = db
    .selectFrom('lars_route_weight as w')
    .innerJoin('RouteData as r', 'r.id', 'w.route_id')
    .select(['r.id', 'r.modid', 'r.cmdid', 'r.serverip', 'r.serverport', 'w.weight']);
  if (route) q = q.where('r.modid', '=', route.modid).where('r.cmdid', '=', route.cmdid);
  return (await q.execute()).map((r) => ({
    id: Number(r.id),
    modid: Number(r.modid),
    cmdid: Number(r.cmdid),
    ip: Number(r.serverip),
    port: Number(r.serverport),
    weight: Number(r.weight),
  }));
}

async function leaseWeights(db: Db, route?: { modid: number; cmdid: number }): Promise<WeightRow[]> {
  let q = db
    .selectFrom('lars_route_lease')
    .select(['modid', 'cmdid', 'ip', 'port', 'weight'])
    .where('weight', '<>', 1);
  if (route) q = q.where('modid', '=', route.modid).where('cmdid', '=', route.cmdid);
  return (await q.execute()).map((r) => ({
    modid: Number(r.modid),
    cmdid: Number(r.cmdid),
    ip: Number(r.ip),
    port: Number(r.port),
    weight: Number(r.weight),
  }));
}

export class WeightOps {
  constructor(
    private readonly ctx: LeaseStoreContext,
    private readonly leases: LeaseOps,
  ) {}

  /** Every host whose effective weight is not 1 (all routes, or one). */
  load(route?: { modid: number; cmdid: number }): Promise<WeightRow[]> {
    return this.ctx.run(route ? 'getRouteWeights' : 'loadWeights', async () => {
      const [fromLeases, manual] = await Promise.all([
        leaseWeights(this.ctx.db, route),
        manualWeights(this.ctx.db, route),
      ]);
      const out = new Map<string, WeightRow>();
      for (const w of fromLeases) out.set(leaseKeyString(w), w);
      // A manual weight wins over the instance's own, 1 included.
      for (const w of manual) out.set(leaseKeyString(w), w);
      return [...out.values()]
        .filter((w) => w.weight !== 1)
        .map((w) => ({ modid: w.modid, cmdid: w.cmdid, ip: w.ip, port: w.port, weight: w.weight }));
    });
  }

  /** Origin, lease and weight of each row (by id). */
  describe(rows: ReadonlyArray<LeaseKey & { id: number }>): Promise<Map<number, HostMeta>> {
    return this.ctx.run('describeHosts', async () => {
      const out = new Map<number, HostMeta>();
      if (rows.length === 0) return out;
      const leases = await this.leases.byKeys(this.ctx.db, rows);
      const manual = new Map<number, number>();
      const ids = rows.map((r) => r.id);
      for (let i = 0; i < ids.length; i += 500) {
        const found = await this.ctx.db
          .selectFrom('lars_route_weight')
          .select(['route_id', 'weight'])
          .where('route_id', 'in', ids.slice(i, i + 500))
          .execute();
        for (const f of found) manual.set(Number(f.route_id), Number(f.weight));
      }
      for (const r of rows) {
        const l = leases.get(leaseKeyString(r));
        const m = manual.get(r.id);
        out.set(r.id, {
          origin: l?.createdRow ? 'registered' : 'manual',
          weight: m ?? l?.weight ?? 1,
          manualWeight: m,
          lease: l && {
            agent: l.agent,
            expiresAt: l.expiresAt,
            renewedAt: l.renewedAt,
            ttlMs: l.ttlMs,
            weight: l.weight,
          },
        });
      }
      return out;
    });
  }

  /**
   * Sets (or with null, clears) the manual weight of a row: a route change like any other edit
   * (version bump, RouteChange row). NotFoundError when no row has that id.
   */
  set(id: number, weight: number | null): Promise<{ version: number }> {
    return this.ctx
      .mutateIf('setHostWeight', async (trx, version) => {
        const row = await trx
          .selectFrom('RouteData')
          .select(['modid', 'cmdid'])
          .where('id', '=', id)
          .executeTakeFirst();
        if (!row) throw new NotFoundError(`no host with id ${id}`);
        await this.write(trx, id, weight);
        await this.ctx.recordChanges(trx, [{ modid: Number(row.modid), cmdid: Number(row.cmdid) }], version);
        return { version };
      })
      .then((r) => r as { version: number });
  }

  /** Inside a route mutation: replaces the row's manual weight (null removes it). */
  async write(trx: Transaction<Database>, id: number, weight: number | null): Promise<void> {
    await trx.deleteFrom('lars_route_weight').where('route_id', '=', id).execute();
    if (weight !== null) await trx.insertInto('lars_route_weight').values({ route_id: id, weight }).execute();
  }
}
