/**
 * Raw route-table loading benchmark (store layer): bulk-creates ROUTES routes x HOSTS hosts in
 * RouteData, then times a full `loadRoutes()` into memory (rows collected into a Map keyed by route),
 * and reports rows/s, total time, RSS and the worst event-loop stall during the load (the load
 * yields between chunks; a dns keeps answering queries while it reloads).
 *
 *   npm run build && node dist/bench/store-load.js [--routes 100000] [--hosts 10] [--chunk 20000]
 *                                                  [--backends sqlite,mysql[,postgres]]
 *
 * Servers: LARS_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306), LARS_BENCH_PG_URL (default
 * postgres://postgres@127.0.0.1:5432). A database `lars_b_<random>` is created and dropped after;
 * the SQLite file lives in a temp directory that is removed after.
 *
 * The dns snapshot build is benchmarked separately; this measures only the store.
 */
import { cpus } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { insertRouteRows, openStore, type RouteRow } from '../src/store/index.js';
import { BACKEND_LABEL, benchBackend, withBenchDatabase } from './lib/databases.js';

const { values: args } = parseArgs({
  options: {
    routes: { type: 'string', default: '100000' },
    hosts: { type: 'string', default: '10' },
    chunk: { type: 'string', default: '20000' },
    backends: { type: 'string', default: 'sqlite,mysql' },
  },
});
const ROUTES = Number(args.routes);
const HOSTS = Number(args.hosts);
const CHUNK = Number(args.chunk);

interface Result {
  backend: string;
  rows: number;
  insertS: number;
  loadS: number;
  rowsPerS: number;
  rssMb: number;
  heapMb: number;
  maxStallMs: number;
}

function* generateRows(): Generator<{ modid: number; cmdid: number; ip: number; port: number }> {
  for (let r = 0; r < ROUTES; r++) {
    const modid = 1 + Math.floor(r / 1000);
    const cmdid = 1 + (r % 1000);
    for (let h = 0; h < HOSTS; h++) {
      // 10.x.y.z and 192.168.x.y alternate: half the addresses are >= 2^31 (unsigned path).
      const ip = (h % 2 === 0 ? 0x0a000000 + r : 0xc0a80000 + ((r * 16 + h) & 0xffff)) >>> 0;
      yield { modid, cmdid, ip, port: 7000 + h };
    }
  }
}

const mb = (bytes: number): number => Math.round(bytes / 1048576);

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function runOne(backend: string, url: string): Promise<Result> {
  const store = await openStore(url);
  try {
    await store.migrate();
    const t0 = performance.now();
    const inserted = await insertRouteRows(store.db, store.kind, generateRows());
    const insertS = (performance.now() - t0) / 1000;
    process.stderr.write(`${backend}: inserted ${inserted} rows in ${insertS.toFixed(1)} s\n`);

    gc();
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const t1 = performance.now();
    const routes = new Map<string, RouteRow[]>();
    let rows = 0;
    for await (const chunk of store.loadRoutes({ chunkSize: CHUNK })) {
      for (const row of chunk) {
        const key = `${row.modid}:${row.cmdid}`;
        const hosts = routes.get(key);
        if (hosts) hosts.push(row);
        else routes.set(key, [row]);
      }
      rows += chunk.length;
    }
    const loadS = (performance.now() - t1) / 1000;
    loop.disable();
    const mem = process.memoryUsage();
    if (rows !== inserted || routes.size !== ROUTES) {
      process.stderr.write(
        `${backend}: loaded ${rows} rows / ${routes.size} routes, expected ${inserted} / ${ROUTES}\n`,
      );
      process.exitCode = 1;
    }
    return {
      backend,
      rows,
      insertS,
      loadS,
      rowsPerS: rows / loadS,
      rssMb: mb(mem.rss),
      heapMb: mb(mem.heapUsed),
      maxStallMs: loop.max / 1e6,
    };
  } finally {
    await store.close();
  }
}

const runners: Record<string, () => Promise<Result>> = Object.fromEntries(
  ['sqlite', 'mysql', 'mariadb', 'postgres'].map((name) => {
    const backend = benchBackend(name);

    return [name, () => withBenchDatabase(backend, (url) => runOne(BACKEND_LABEL[backend], url))];
  }),
);

const results: Result[] = [];
for (const name of args.backends.split(',').map((s) => s.trim())) {
  const run = runners[name];
  if (!run) {
    process.stderr.write(`unknown backend ${name} (sqlite, mysql, postgres)\n`);
    process.exit(2);
  }
  results.push(await run());
}

const cpu = cpus()[0]?.model ?? 'unknown cpu';
console.log(`store load benchmark: ${ROUTES} routes x ${HOSTS} hosts, chunk ${CHUNK}`);
console.log(`node ${process.version}, ${cpus().length} x ${cpu}, ${new Date().toISOString()}`);
const header = ['backend', 'rows', 'insert s', 'load s', 'rows/s', 'RSS MB', 'heap MB', 'max stall ms'];
const lines = results.map((r) => [
  r.backend,
  String(r.rows),
  r.insertS.toFixed(1),
  r.loadS.toFixed(2),
  Math.round(r.rowsPerS).toLocaleString('en-US'),
  String(r.rssMb),
  String(r.heapMb),
  r.maxStallMs.toFixed(0),
]);
const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
const fmt = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] as number)).join(' | ');
console.log(fmt(header));
console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
for (const l of lines) console.log(fmt(l));
