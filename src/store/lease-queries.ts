import type { ExpressionBuilder, Kysely, Transaction } from 'kysely';
import type { Database } from './schema.js';
import { leaseKeyString, type LeaseKey, type LeaseRow } from './lease-types.js';

/**
 * Query helpers of the lease operations (store-leases.ts): chunked tuple-IN lookups on the lease
 * table and RouteData, row mapping. No policy here.
 */

/** Keys per tuple-IN query: 4 parameters each, far below every backend's limit. */
export const LEASE_CHUNK = 500;

type Db = Kysely<Database>;

export function chunks<T>(items: readonly T[], size = LEASE_CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** `(modid, cmdid, ip, port) IN (...)` on the lease table. */
export function keyIn(keys: readonly LeaseKey[]) {
  return (eb: ExpressionBuilder<Database, 'lars_route_lease'>) =>
    eb(
      eb.refTuple('modid', 'cmdid', 'ip', 'port'),
      'in',
      keys.map((k) => eb.tuple(k.modid, k.cmdid, k.ip, k.port)),
    );
}

/** The same on RouteData. */
export function rowKeyIn(keys: readonly LeaseKey[]) {
  return (eb: ExpressionBuilder<Database, 'RouteData'>) =>
    eb(
      eb.refTuple('modid', 'cmdid', 'serverip', 'serverport'),
      'in',
      keys.map((k) => eb.tuple(k.modid, k.cmdid, k.ip, k.port)),
    );
}

/** A deleted lease whose row (if it created it) goes too. */
export interface Departed {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
  weight: number;
  created: boolean;
}

export interface StoredLease {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
  weight: number;
  ttl_ms: number;
  agent: string;
  created_row: number;
  renewed_at: number;
}

export async function selectLeases(db: Db, keys: readonly LeaseKey[]): Promise<Map<string, StoredLease>> {
  const out = new Map<string, StoredLease>();
  for (const part of chunks(keys)) {
    const rows = await db
      .selectFrom('lars_route_lease')
      .select(['modid', 'cmdid', 'ip', 'port', 'weight', 'ttl_ms', 'agent', 'created_row', 'renewed_at'])
      .where(keyIn(part))
      .execute();
    for (const r of rows) {
      const l: StoredLease = {
        modid: Number(r.modid),
        cmdid: Number(r.cmdid),
        ip: Number(r.ip),
        port: Number(r.port),
        weight: Number(r.weight),
        ttl_ms: Number(r.ttl_ms),
        agent: String(r.agent),
        created_row: Number(r.created_row),
        renewed_at: Number(r.renewed_at),
      };
      out.set(leaseKeyString(l), l);
    }
  }
  return out;
}

/** RouteData rows with these keys: key -> ids (an original database may hold a host twice). */
export async function selectRouteRows(db: Db, keys: readonly LeaseKey[]): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (const part of chunks(keys)) {
    const rows = await db
      .selectFrom('RouteData')
      .select(['id', 'modid', 'cmdid', 'serverip', 'serverport'])
      .where(rowKeyIn(part))
      .execute();
    for (const r of rows) {
      const key = leaseKeyString({
        modid: Number(r.modid),
        cmdid: Number(r.cmdid),
        ip: Number(r.serverip),
        port: Number(r.serverport),
      });
      out.set(key, [...(out.get(key) ?? []), Number(r.id)]);
    }
  }
  return out;
}

/** Deletes RouteData rows by id with their manual weights. */
export async function deleteRows(trx: Transaction<Database>, ids: readonly number[]): Promise<void> {
  for (const part of chunks(ids)) {
    await trx.deleteFrom('RouteData').where('id', 'in', part).execute();
    await trx.deleteFrom('lars_route_weight').where('route_id', 'in', part).execute();
  }
}

export class RouteSet {
  private readonly map = new Map<string, { modid: number; cmdid: number }>();
  add(k: { modid: number; cmdid: number }): void {
    this.map.set(`${k.modid}:${k.cmdid}`, { modid: k.modid, cmdid: k.cmdid });
  }
  get list(): Array<{ modid: number; cmdid: number }> {
    return [...this.map.values()];
  }
}

export function toLeaseRow(r: Database['lars_route_lease']): LeaseRow {
  return {
    modid: Number(r.modid),
    cmdid: Number(r.cmdid),
    ip: Number(r.ip),
    port: Number(r.port),
    weight: Number(r.weight),
    ttlMs: Number(r.ttl_ms),
    agent: String(r.agent),
    createdRow: Number(r.created_row) === 1,
    registeredAt: Number(r.registered_at),
    renewedAt: Number(r.renewed_at),
    expiresAt: Number(r.expires_at),
    renewedBy: String(r.renewed_by),
  };
}

export function dedupe<T extends LeaseKey>(items: readonly T[]): T[] {
  const m = new Map<string, T>();
  for (const i of items) m.set(leaseKeyString(i), i);
  return [...m.values()];
}
