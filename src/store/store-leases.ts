import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.js';
import {
  chunks,
  dedupe,
  deleteRows,
  keyIn,
  RouteSet,
  selectLeases,
  selectRouteRows,
  toLeaseRow,
  type Departed,
  type StoredLease,
} from './lease-queries.js';
import {
  leaseKeyString,
  type ExpiringLease,
  type LeaseAgent,
  type LeaseExpireResult,
  type LeaseKey,
  type LeaseRow,
  type LeaseSpec,
  type LeaseWrite,
  type LeaseWriteResult,
} from './lease-types.js';

/**
 * Lease writes and expiry (issue 15), on the lars_route_lease table beside RouteData.
 *
 * Cost: a batch of renewals of existing leases is one SELECT and one UPDATE per LEASE_CHUNK leases,
 * whatever the batch size. Only what changes routes (a new lease, a removal, a weight change) goes
 * through a route mutation: one transaction that bumps RouteVersion first (its row lock serialises
 * every route writer, in every process) and records a RouteChange row per affected route, so pushes
 * flow exactly as for a manual edit.
 *
 * Expiry is race-free between dns instances: a lease is deleted only if its renewed_at is still the
 * one read when it was found expired (a renewal in between keeps it), in the transaction that bumps
 * the version and deletes the RouteData row the lease created. A manual row is never deleted by a
 * lease.
 */

export interface LeaseStoreContext {
  readonly db: Kysely<Database>;
  run<T>(op: string, fn: () => Promise<T>): Promise<T>;
  /** A route mutation (version bumped first); rolled back, version untouched, when body returns undefined. */
  mutateIf<T>(
    op: string,
    body: (trx: Transaction<Database>, version: number) => Promise<T | undefined>,
  ): Promise<T | undefined>;
  recordChanges(
    trx: Transaction<Database>,
    routes: Array<{ modid: number; cmdid: number }>,
    version: number,
  ): Promise<void>;
}

export class LeaseOps {
  constructor(private readonly ctx: LeaseStoreContext) {}

  write(batch: LeaseWrite): Promise<LeaseWriteResult> {
    return this.ctx.run('renewLeases', async () => {
      const renew = dedupe(batch.renew);
      const renewKeys = new Set(renew.map(leaseKeyString));
      const remove = dedupe(batch.remove).filter((k) => !renewKeys.has(leaseKeyString(k)));
      const existing = await selectLeases(this.ctx.db, renew);
      const plain: LeaseSpec[] = [];
      const other: LeaseSpec[] = [];
      for (const l of renew) {
        const e = existing.get(leaseKeyString(l));
        if (e && e.weight === l.weight && e.ttl_ms === l.ttlMs) plain.push(l);
        else other.push(l);
      }
      let renewed = plain.length;
      if ((await this.touch(plain, batch)) < plain.length) {
        // Some expired (deleted by another dns) between the read and the update: create them again.
        const still = await selectLeases(this.ctx.db, plain);
        const lost = plain.filter((l) => !still.has(leaseKeyString(l)));
        other.push(...lost);
        renewed -= lost.length;
      }
      const result: LeaseWriteResult = {
        renewed,
        added: 0,
        removed: 0,
        updated: 0,
        routes: [],
        version: undefined,
      };
      if (other.length === 0 && remove.length === 0) return result;
      const changed = await this.ctx.mutateIf('renewLeases', (trx, version) =>
        this.change(trx, version, batch, other, remove),
      );
      return changed ? { ...result, ...changed, renewed: result.renewed + changed.renewed } : result;
    });
  }

  /** Plain renewals: one UPDATE per chunk; returns how many rows matched. */
  private async touch(leases: readonly LeaseSpec[], batch: LeaseWrite): Promise<number> {
    let n = 0;
    for (const part of chunks(leases)) {
      const res = await this.ctx.db
        .updateTable('lars_route_lease')
        .set((eb) => ({
          renewed_at: batch.nowMs,
          expires_at: eb(eb.val(batch.nowMs), '+', eb.ref('ttl_ms')),
          agent: batch.agent,
          renewed_by: batch.dnsId,
        }))
        .where(keyIn(part))
        .executeTakeFirst();
      n += Number(res.numUpdatedRows);
    }
    return n;
  }

  /** New leases, weight/ttl changes and removals, under the version lock. */
  private async change(
    trx: Transaction<Database>,
    version: number,
    batch: LeaseWrite,
    upserts: readonly LeaseSpec[],
    removals: readonly LeaseKey[],
  ): Promise<Omit<LeaseWriteResult, 'version'> & { version: number }> {
    const routes = new RouteSet();
    const current = await selectLeases(trx, [...upserts, ...removals]);
    const rows = await selectRouteRows(trx, upserts);
    const out = { renewed: 0, added: 0, removed: 0, updated: 0 };
    const inserts: Array<Database['lars_route_lease']> = [];
    const newRows: Array<{ modid: number; cmdid: number; serverip: number; serverport: number }> = [];
    for (const l of upserts) {
      const key = leaseKeyString(l);
      const e = current.get(key);
      const times = { renewed_at: batch.nowMs, expires_at: batch.nowMs + l.ttlMs };
      if (e) {
        await trx
          .updateTable('lars_route_lease')
          .set({ weight: l.weight, ttl_ms: l.ttlMs, agent: batch.agent, renewed_by: batch.dnsId, ...times })
          .where('modid', '=', l.modid)
          .where('cmdid', '=', l.cmdid)
          .where('ip', '=', l.ip)
          .where('port', '=', l.port)
          .execute();
        if (e.weight !== l.weight) {
          routes.add(l);
          out.updated++;
        } else if (e.ttl_ms !== l.ttlMs) out.updated++;
        else out.renewed++;
        continue;
      }
      const hasRow = rows.has(key);
      inserts.push({
        modid: l.modid,
        cmdid: l.cmdid,
        ip: l.ip,
        port: l.port,
        weight: l.weight,
        ttl_ms: l.ttlMs,
        agent: batch.agent,
        created_row: hasRow ? 0 : 1,
        registered_at: batch.nowMs,
        renewed_by: batch.dnsId,
        ...times,
      });
      if (!hasRow) newRows.push({ modid: l.modid, cmdid: l.cmdid, serverip: l.ip, serverport: l.port });
      if (!hasRow || l.weight !== 1) routes.add(l);
      out.added++;
    }
    for (const part of chunks(inserts)) await trx.insertInto('lars_route_lease').values(part).execute();
    for (const part of chunks(newRows)) await trx.insertInto('RouteData').values(part).execute();

    const gone: StoredLease[] = [];
    for (const k of removals) {
      const e = current.get(leaseKeyString(k));
      // Only the owner's removal counts: the instance may have moved to another agent since.
      if (!e || e.agent !== batch.agent) continue;
      const res = await trx
        .deleteFrom('lars_route_lease')
        .where('modid', '=', k.modid)
        .where('cmdid', '=', k.cmdid)
        .where('ip', '=', k.ip)
        .where('port', '=', k.port)
        .where('agent', '=', batch.agent)
        .executeTakeFirst();
      if (Number(res.numDeletedRows) > 0) gone.push(e);
    }
    out.removed = gone.length;
    await this.dropRowsOf(
      trx,
      gone.map((l) => ({ ...l, created: l.created_row === 1 })),
      routes,
    );
    if (routes.list.length > 0) await this.ctx.recordChanges(trx, routes.list, version);
    return { ...out, routes: routes.list, version };
  }

  /** Deletes the rows the given (deleted) leases created; notes every route whose hosts or weights change. */
  private async dropRowsOf(
    trx: Transaction<Database>,
    leases: readonly Departed[],
    routes: RouteSet,
  ): Promise<void> {
    const created = leases.filter((l) => l.created);
    for (const l of leases) if (l.weight !== 1) routes.add(l);
    if (created.length === 0) return;
    const rows = await selectRouteRows(trx, created);
    await deleteRows(trx, [...rows.values()].flat());
    for (const l of created) routes.add(l);
  }

  /** Leases past their expiry whose ttl is at most `maxTtlMs`, soonest first. */
  candidates(nowMs: number, maxTtlMs: number, limit: number): Promise<ExpiringLease[]> {
    return this.ctx.run('expiringLeases', async () => {
      const rows = await this.ctx.db
        .selectFrom('lars_route_lease')
        .select(['modid', 'cmdid', 'ip', 'port', 'agent', 'weight', 'ttl_ms', 'renewed_at', 'created_row'])
        .where('expires_at', '<', nowMs)
        .where('ttl_ms', '<=', maxTtlMs)
        .orderBy('expires_at')
        .limit(limit)
        .execute();
      return rows.map((r) => ({
        modid: Number(r.modid),
        cmdid: Number(r.cmdid),
        ip: Number(r.ip),
        port: Number(r.port),
        agent: String(r.agent),
        weight: Number(r.weight),
        ttlMs: Number(r.ttl_ms),
        renewedAt: Number(r.renewed_at),
        createdRow: Number(r.created_row) === 1,
      }));
    });
  }

  /** Deletes each lease still renewed at the time it was read; no version bump when none is. */
  expire(leases: readonly ExpiringLease[]): Promise<LeaseExpireResult> {
    return this.ctx.run('expireLeases', async () => {
      if (leases.length === 0) return { expired: [], routes: [], version: undefined };
      const done = await this.ctx.mutateIf('expireLeases', async (trx, version) => {
        const expired: ExpiringLease[] = [];
        for (const l of leases) {
          const res = await trx
            .deleteFrom('lars_route_lease')
            .where('modid', '=', l.modid)
            .where('cmdid', '=', l.cmdid)
            .where('ip', '=', l.ip)
            .where('port', '=', l.port)
            .where('renewed_at', '=', l.renewedAt)
            .executeTakeFirst();
          if (Number(res.numDeletedRows) > 0) expired.push(l);
        }
        if (expired.length === 0) return undefined;
        const routes = new RouteSet();
        await this.dropRowsOf(
          trx,
          expired.map((l) => ({ ...l, created: l.createdRow })),
          routes,
        );
        if (routes.list.length > 0) await this.ctx.recordChanges(trx, routes.list, version);
        return { expired, routes: routes.list, version };
      });
      return done ?? { expired: [], routes: [], version: undefined };
    });
  }

  agents(): Promise<LeaseAgent[]> {
    return this.ctx.run('leaseAgents', async () => {
      const rows = await this.ctx.db
        .selectFrom('lars_route_lease')
        .select((eb) => ['agent', eb.fn.countAll().as('n'), eb.fn.max('renewed_at').as('last')])
        .groupBy('agent')
        .execute();
      return rows.map((r) => ({
        agent: String(r.agent),
        leases: Number(r.n),
        lastRenewedAt: Number(r.last),
      }));
    });
  }

  list(filter: { modid?: number; cmdid?: number; agent?: string } = {}): Promise<LeaseRow[]> {
    return this.ctx.run('listLeases', async () => {
      let q = this.ctx.db.selectFrom('lars_route_lease').selectAll();
      if (filter.modid !== undefined) q = q.where('modid', '=', filter.modid);
      if (filter.cmdid !== undefined) q = q.where('cmdid', '=', filter.cmdid);
      if (filter.agent !== undefined) q = q.where('agent', '=', filter.agent);
      const rows = await q.orderBy('modid').orderBy('cmdid').orderBy('ip').orderBy('port').execute();
      return rows.map(toLeaseRow);
    });
  }

  /** Leases of the given keys (for describing RouteData rows). */
  byKeys(db: Kysely<Database>, keys: readonly LeaseKey[]): Promise<Map<string, LeaseRow>> {
    return (async () => {
      const out = new Map<string, LeaseRow>();
      for (const part of chunks(keys)) {
        const rows = await db.selectFrom('lars_route_lease').selectAll().where(keyIn(part)).execute();
        for (const r of rows) {
          const l = toLeaseRow(r);
          out.set(leaseKeyString(l), l);
        }
      }
      return out;
    })();
  }

  /**
   * Deletes the leases of hosts an operator removed or moved (RouteData rows going away by hand),
   * in the operator's transaction: the row is gone, so is its lease. A still-running instance
   * registers it again at its agent's next batch.
   */
  async forget(trx: Transaction<Database>, keys: readonly LeaseKey[]): Promise<void> {
    for (const part of chunks(keys)) await trx.deleteFrom('lars_route_lease').where(keyIn(part)).execute();
  }
}
