import { ipToNumber } from '../protocol/index.js';
import type { Store } from '../store/index.js';

/** Routes `lars up --demo` adds on first start (when RouteData is empty), for trying the tools. */
export const DEMO_ROUTES: ReadonlyArray<{ modid: number; cmdid: number; ip: string; port: number }> = [
  { modid: 1, cmdid: 1, ip: '127.0.0.1', port: 9001 },
  { modid: 1, cmdid: 1, ip: '127.0.0.1', port: 9002 },
  { modid: 1, cmdid: 1, ip: '127.0.0.1', port: 9003 },
  { modid: 1, cmdid: 2, ip: '127.0.0.1', port: 9101 },
  { modid: 2, cmdid: 1, ip: '127.0.0.2', port: 9201 },
  { modid: 2, cmdid: 1, ip: '127.0.0.2', port: 9202 },
];

/** Adds the demo routes when the route table is empty; returns how many hosts were added. */
export async function addDemoRoutes(store: Store): Promise<number> {
  if ((await store.listRoutes({ limit: 1 })).length > 0) return 0;
  for (const r of DEMO_ROUTES) await store.addHost(r.modid, r.cmdid, ipToNumber(r.ip), r.port);
  await store.upsertModId(1, 'demo: user service');
  await store.upsertModId(2, 'demo: order service');
  return DEMO_ROUTES.length;
}
