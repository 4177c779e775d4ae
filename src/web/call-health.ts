import { numberToIp } from '../protocol/ip.js';
import type { Store } from '../store/index.js';
import { dbOp } from './db-op.js';

/**
 * Call health read from what the reporter writes: ServerCallStatus (latest counters of each host as
 * seen by each agent, `overload` '1'/'0') and lars_call_history (one row per host, caller and minute).
 */

export interface CallerStatus {
  caller: string;
  succ: number;
  err: number;
  overload: boolean;
  /** Unix seconds of the agent's report. */
  ts: number;
}

export interface HostStatus {
  ip: string;
  port: number;
  /** RouteData id when the host is (still) in the route; null for statistics of a removed host. */
  id: number | null;
  callers: CallerStatus[];
}

export async function routeStatus(store: Store, modid: number, cmdid: number): Promise<HostStatus[]> {
  const [hosts, rows] = await Promise.all([
    store.getRoute(modid, cmdid),
    dbOp('routeStatus', () =>
      store.db
        .selectFrom('ServerCallStatus')
        .select(['ip', 'port', 'caller', 'succ_cnt', 'err_cnt', 'ts', 'overload'])
        .where('modid', '=', modid)
        .where('cmdid', '=', cmdid)
        .orderBy('ip')
        .orderBy('port')
        .orderBy('caller')
        .execute(),
    ),
  ]);
  const byHost = new Map<string, HostStatus>();
  const key = (ip: number, port: number) => `${ip >>> 0}:${port}`;
  for (const h of hosts)
    byHost.set(key(h.ip, h.port), { ip: numberToIp(h.ip), port: h.port, id: h.id, callers: [] });
  for (const r of rows) {
    const ip = Number(r.ip);
    const port = Number(r.port);
    let host = byHost.get(key(ip, port));
    if (!host) {
      host = { ip: numberToIp(ip), port, id: null, callers: [] };
      byHost.set(key(ip, port), host);
    }
    host.callers.push({
      caller: numberToIp(Number(r.caller)),
      succ: Number(r.succ_cnt),
      err: Number(r.err_cnt),
      overload: String(r.overload).trim() === '1',
      ts: Number(r.ts),
    });
  }
  return [...byHost.values()];
}

export interface OverloadedHost {
  modid: number;
  cmdid: number;
  ip: string;
  port: number;
  /** How many agents currently report it overloaded. */
  callers: number;
  /** Latest such report, unix seconds. */
  lastReport: number;
}

/** Hosts some agent reported overloaded in a report no older than `sinceTs`. */
export async function overloadedHosts(
  store: Store,
  sinceTs: number,
  limit: number,
): Promise<{ total: number; hosts: OverloadedHost[] }> {
  return dbOp('overloadedHosts', async () => {
    const grouped = store.db
      .selectFrom('ServerCallStatus')
      .select(['modid', 'cmdid', 'ip', 'port'])
      .select((eb) => [eb.fn.countAll().as('callers'), eb.fn.max('ts').as('last_report')])
      .where('overload', '=', '1')
      .where('ts', '>=', sinceTs)
      .groupBy(['modid', 'cmdid', 'ip', 'port']);
    const [rows, count] = await Promise.all([
      grouped.orderBy('modid').orderBy('cmdid').orderBy('ip').orderBy('port').limit(limit).execute(),
      store.db
        .selectFrom(grouped.as('g'))
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirst(),
    ]);
    return {
      total: Number(count?.n ?? 0),
      hosts: rows.map((r) => ({
        modid: Number(r.modid),
        cmdid: Number(r.cmdid),
        ip: numberToIp(Number(r.ip)),
        port: Number(r.port),
        callers: Number(r.callers),
        lastReport: Number(r.last_report),
      })),
    };
  });
}

export const HISTORY_RANGES = { hour: 60, day: 1440 } as const;
export type HistoryRange = keyof typeof HISTORY_RANGES;

/**
 * How far before the first plotted minute rows are read for each series' starting totals: a host
 * and caller that reported within this span gets its first plotted minute right too.
 */
export const BASELINE_LOOKBACK_S = 15 * 60;

/**
 * Per-minute series of one route (or one host of it) over the last hour or day, in the columnar shape
 * uPlot takes: the calls each host really had in each minute, summed over hosts and callers (issue 16).
 *
 * Our agents send cumulative per-host counters with every report; the history keeps each agent's
 * latest totals per minute, and a minute's calls are the difference from the same agent's previous
 * minute (a total that went down means the agent restarted: the new total is the count). A series'
 * first minute with no earlier total in BASELINE_LOOKBACK_S is left out rather than guessed.
 * Rows of original agents carry no totals: they add their latest window counters of the minute, as
 * the original reporter stored them (a lower bound; `exact` is false then).
 * `overloadedHosts` counts the hosts that at least one agent reported overloaded in that minute.
 * Minutes without any count are null (a gap, not a zero).
 */
export interface CallHistory {
  range: HistoryRange;
  /** Unix seconds of each minute start, ascending, one per minute up to the current one. */
  minutes: number[];
  succ: Array<number | null>;
  err: Array<number | null>;
  overloadedHosts: Array<number | null>;
  /** False when some point includes window counters of an original agent (not exact per minute). */
  exact: boolean;
}

interface HistoryRow {
  minute: number;
  series: string;
  host: string;
  succ: number;
  err: number;
  overload: boolean;
  totalSucc: number | null;
  totalErr: number | null;
}

export async function callHistory(
  store: Store,
  q: { modid: number; cmdid: number; range: HistoryRange; nowS: number; ip?: number; port?: number },
): Promise<CallHistory> {
  const points = HISTORY_RANGES[q.range];
  const last = q.nowS - (q.nowS % 60);
  const first = last - (points - 1) * 60;
  const rows = await readHistory(store, q, first - BASELINE_LOOKBACK_S, last);
  const minutes: number[] = [];
  for (let m = first; m <= last; m += 60) minutes.push(m);
  const succ: Array<number | null> = new Array(points).fill(null);
  const err: Array<number | null> = new Array(points).fill(null);
  const overloadedSets: Array<Set<string> | undefined> = new Array(points).fill(undefined);
  const previous = new Map<string, HistoryRow>();
  let exact = true;
  for (const r of rows) {
    // Rows are keyed by minute start; one written with a raw timestamp still lands in its minute.
    const i = Math.floor((r.minute - first) / 60);
    const prev = previous.get(r.series);
    previous.set(r.series, r);
    if (i < 0 || i >= points) continue;
    if (r.overload) (overloadedSets[i] ??= new Set()).add(r.host);
    else overloadedSets[i] ??= new Set();
    let ds: number;
    let de: number;
    if (r.totalSucc === null || r.totalErr === null) {
      ds = r.succ;
      de = r.err;
      exact = false;
    } else if (prev && prev.totalSucc !== null && prev.totalErr !== null) {
      ds = r.totalSucc >= prev.totalSucc ? r.totalSucc - prev.totalSucc : r.totalSucc;
      de = r.totalErr >= prev.totalErr ? r.totalErr - prev.totalErr : r.totalErr;
    } else {
      continue; // no starting total for this series: unknown, not zero
    }
    succ[i] = (succ[i] ?? 0) + ds;
    err[i] = (err[i] ?? 0) + de;
  }
  const overloaded = overloadedSets.map((s) => (s === undefined ? null : s.size));
  return { range: q.range, minutes, succ, err, overloadedHosts: overloaded, exact };
}

/** History rows of the route (or host) from `from` to `to`, ordered by series then minute. */
async function readHistory(
  store: Store,
  q: { modid: number; cmdid: number; ip?: number; port?: number },
  from: number,
  to: number,
): Promise<HistoryRow[]> {
  const rows = await dbOp('callHistory', () => {
    let sel = store.db
      .selectFrom('lars_call_history')
      .select([
        'minute',
        'ip',
        'port',
        'caller',
        'succ_cnt',
        'err_cnt',
        'overload',
        'total_succ',
        'total_err',
      ])
      .where('modid', '=', q.modid)
      .where('cmdid', '=', q.cmdid)
      .where('minute', '>=', from)
      .where('minute', '<=', to);
    if (q.ip !== undefined) sel = sel.where('ip', '=', q.ip);
    if (q.port !== undefined) sel = sel.where('port', '=', q.port);
    return sel.orderBy('ip').orderBy('port').orderBy('caller').orderBy('minute').execute();
  });
  const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
  return rows.map((r) => {
    const host = `${Number(r.ip)}:${Number(r.port)}`;
    return {
      minute: Number(r.minute),
      series: `${host}:${Number(r.caller)}`,
      host,
      succ: Number(r.succ_cnt),
      err: Number(r.err_cnt),
      overload: Number(r.overload) > 0,
      totalSucc: num(r.total_succ),
      totalErr: num(r.total_err),
    };
  });
}
