/**
 * Route service (dns) benchmarks (issue 3). Every side runs in its own process: the dns server, the
 * query clients and the change-maker.
 *
 *   npm run bench:dns                                   # query + push scenarios on SQLite
 *   node dist/bench/dns.js --scenario query [--duration 5] [--warmup 1]
 *   node dist/bench/dns.js --scenario push [--conns 1000] [--changes 20]
 *   node dist/bench/dns.js --scenario reload --db sqlite|mysql [--routes 100000] [--hosts 10]
 *
 * query : GetRoute requests/s with 1, 2 and 50 connections, lockstep and pipelined (target ≥ 40k/s
 *         lockstep with 2 connections).
 * push  : one change pushed to N subscribed connections: change-to-push latency, by polling (1 s
 *         interval) and after an immediate-poll request (targets p99 ≤ 1.2 s and ≤ 100 ms).
 * reload: ROUTES x HOSTS rows: first load + swap time, full reload time, RSS, and the worst latency a
 *         lockstep query client sees while full reloads run (targets ≤ 5 s, ≤ 500 MB, ≤ 50 ms).
 */
import { fileURLToPath } from 'node:url';
import { DnsService } from '../src/dns/dns-service.js';
import { TimeoutError } from '../src/errors.js';
import { Dispatcher, TcpClient } from '../src/net/index.js';
import { MsgId, type GetRouteResponse } from '../src/protocol/index.js';
import { insertRouteRows, openStore, type Store } from '../src/store/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { combineRuns, Histogram } from './lib/histogram.js';
import {
  forkRole,
  fromParent,
  machineLine,
  nextMessage,
  stopChild,
  tellParent,
  type BenchMessage,
} from './lib/proc.js';
import { benchBackend, createBenchDatabase, type BenchBackend } from './lib/databases.js';
import { formatTable } from './lib/table.js';

const SELF = fileURLToPath(import.meta.url);
const HOST = '127.0.0.1';
const args = parseArgs(process.argv.slice(2));
/** Epoch milliseconds with sub-ms resolution, comparable across processes on one machine. */
const epochMs = (): number => performance.timeOrigin + performance.now();
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

switch (args.get('role') ?? 'main') {
  case 'server':
    await runServer();
    break;
  case 'query-client':
    await runQueryClient();
    break;
  case 'push-client':
    await runPushClient();
    break;
  default:
    await runMain();
}

// ---------------------------------------------------------------- server

async function runServer(): Promise<void> {
  const url = args.get('db') as string;
  const store = await openStore(url);
  const dns = new DnsService({
    store,
    host: HOST,
    port: 0,
    maxConnections: 20_000,
    maxOutboundBytes: 16 << 20,
    pollIntervalMs: numberArg(args, 'poll', 1) * 1000,
    reloadIntervalMs: numberArg(args, 'reload', 3600) * 1000,
    changeRetentionS: 3600,
  });
  const t0 = performance.now();
  const addr = await dns.start();
  const loadMs = performance.now() - t0;
  tellParent({
    type: 'listening',
    port: addr.port,
    httpPort: addr.httpPort,
    loadMs,
    rss: process.memoryUsage().rss,
  });
  for (;;) {
    const m = await fromParent<BenchMessage & { n: number }>(['stop', 'reload']);
    if (m.type === 'stop') break;
    const times: number[] = [];
    let rss = 0;
    for (let i = 0; i < (m as { n: number }).n; i++) {
      const s = performance.now();
      await dns.pollNow({ full: true });
      times.push(performance.now() - s);
      rss = Math.max(rss, process.memoryUsage().rss);
    }
    tellParent({ type: 'reloaded', times, rss });
  }
  await dns.destroy();
  await store.close();
  process.exit(0);
}

// ---------------------------------------------------------------- query clients

interface QueryResult extends BenchMessage {
  count: number;
  elapsedMs: number;
  counts: number[];
  max: number;
}

async function runQueryClient(): Promise<void> {
  const port = numberArg(args, 'port', 0);
  const conns = numberArg(args, 'conns', 1);
  const depth = numberArg(args, 'depth', 1);
  const routes = numberArg(args, 'routes', 1000);
  const warmupMs = numberArg(args, 'warmup', 1) * 1000;
  const durationMs = numberArg(args, 'duration', 5) * 1000;
  const hist = new Histogram();
  let measuring = false;
  let running = true;
  let count = 0;
  let connected = 0;
  let allConnected!: () => void;
  const ready = new Promise<void>((r) => (allConnected = r));
  const clients: Array<{ client: TcpClient; start: () => void }> = [];
  for (let c = 0; c < conns; c++) {
    const sentAt: number[] = [];
    let next = c;
    // eslint-disable-next-line prefer-const
    let client: TcpClient;
    const send = () => {
      sentAt.push(performance.now());
      next = (next + 1) % routes;
      client.send(MsgId.GetRouteRequest, { modid: 1 + next, cmdid: 1 });
    };
    client = new TcpClient({
      host: HOST,
      port,
      maxQueuedFrames: depth + 10,
      dispatcher: new Dispatcher<TcpClient>().on(MsgId.GetRouteResponse, () => {
        const t0 = sentAt.shift() as number;
        if (measuring) {
          hist.record((performance.now() - t0) * 1e6);
          count++;
        }
        if (running) send();
      }),
      onConnect: () => {
        if (++connected === conns) allConnected();
      },
    });
    client.start();
    clients.push({ client, start: () => Array.from({ length: depth }, send) });
  }
  await ready;
  tellParent({ type: 'ready' });
  await fromParent('go');
  for (const c of clients) c.start();
  await delay(warmupMs);
  hist.reset();
  count = 0;
  measuring = true;
  const t0 = performance.now();
  // A parent may end the run early with {type:'finish'} (the reload scenario does).
  await Promise.race([delay(durationMs), fromParent('finish')]);
  measuring = false;
  running = false;
  tellParent({
    type: 'result',
    count,
    elapsedMs: performance.now() - t0,
    counts: hist.counts,
    max: hist.max,
  });
  await Promise.all(clients.map((c) => c.client.destroy()));
  process.exit(0);
}

// ---------------------------------------------------------------- push clients

async function runPushClient(): Promise<void> {
  const port = numberArg(args, 'port', 0);
  const conns = numberArg(args, 'conns', 1000);
  let subscribed = 0;
  let allSubscribed!: () => void;
  const ready = new Promise<void>((r) => (allSubscribed = r));
  let arrivals: number[] = [];
  let expectHosts = -1;
  const clients: TcpClient[] = [];
  for (let i = 0; i < conns; i++) {
    let first = true;
    const client: TcpClient = new TcpClient({
      host: HOST,
      port,
      dispatcher: new Dispatcher<TcpClient>().on(MsgId.GetRouteResponse, (m: GetRouteResponse) => {
        if (first) {
          first = false;
          if (++subscribed === conns) allSubscribed();
          return;
        }
        if (m.host.length === expectHosts) arrivals.push(epochMs());
      }),
      onConnect: () => client.send(MsgId.GetRouteRequest, { modid: 1, cmdid: 1 }),
    });
    client.start();
    clients.push(client);
  }
  await ready;
  tellParent({ type: 'ready' });
  for (;;) {
    const m = await fromParent<BenchMessage & { hosts: number }>(['stop', 'expect']);
    if (m.type === 'stop') break;
    arrivals = [];
    expectHosts = (m as { hosts: number }).hosts;
    tellParent({ type: 'armed' });
    const started = performance.now();
    while (arrivals.length < conns && performance.now() - started < 10_000) await delay(5);
    tellParent({ type: 'arrivals', arrivals });
  }
  await Promise.all(clients.map((c) => c.destroy()));
  process.exit(0);
}

// ---------------------------------------------------------------- main

/** A fresh database of `routes` x `hosts` rows; cleanup() removes it. */
async function filledDatabase(
  backend: BenchBackend,
  routes: number,
  hosts: number,
): Promise<{ url: string; cleanup: () => Promise<void> }> {
  const db = await createBenchDatabase(backend);
  await fill(db.url, routes, hosts);
  return { url: db.url, cleanup: () => db.drop() };
}

async function fill(url: string, routes: number, hosts: number): Promise<void> {
  const store = await openStore(url);
  await store.migrate();
  function* rows() {
    for (let r = 0; r < routes; r++) {
      for (let h = 0; h < hosts; h++)
        yield { modid: 1 + r, cmdid: 1, ip: 0x0a000000 + h + 1, port: 9000 + h };
    }
  }
  await insertRouteRows(store.db, store.kind, rows());
  await store.close();
}

async function startServer(url: string, extra: string[] = []) {
  const server = forkRole(SELF, ['--role', 'server', '--db', url, ...extra]);
  const info = await nextMessage<
    BenchMessage & { port: number; httpPort: number; loadMs: number; rss: number }
  >(server, 'listening', 600_000);
  return { server, ...info };
}

async function queryScenario(
  port: number,
  procs: number,
  connsPerProc: number,
  depth: number,
  routes: number,
  warmup: number,
  duration: number,
) {
  const clients = Array.from({ length: procs }, () =>
    forkRole(SELF, [
      '--role',
      'query-client',
      '--port',
      String(port),
      '--conns',
      String(connsPerProc),
      '--depth',
      String(depth),
      '--routes',
      String(routes),
      '--warmup',
      String(warmup),
      '--duration',
      String(duration),
    ]),
  );
  try {
    await Promise.all(clients.map((c) => nextMessage(c, 'ready', 30_000)));
    const results = clients.map((c) =>
      nextMessage<QueryResult>(c, 'result', (warmup + duration) * 1000 + 60_000),
    );
    for (const c of clients) c.send({ type: 'go' });
    return combineRuns(await Promise.all(results));
  } finally {
    await Promise.all(clients.map((c) => stopChild(c)));
  }
}

async function runQuery(): Promise<void> {
  const duration = numberArg(args, 'duration', 5);
  const warmup = numberArg(args, 'warmup', 1);
  const routes = 1000;
  const db = await filledDatabase('sqlite', routes, 10);
  const { server, port } = await startServer(db.url);
  const rows: (string | number)[][] = [];
  try {
    for (const [mode, depth] of [
      ['lockstep', 1],
      ['pipelined', 100],
    ] as const) {
      for (const [conns, procs] of [
        [1, 1],
        [2, 2],
        [50, 2],
      ] as const) {
        const d = conns === 50 && mode === 'pipelined' ? 20 : depth;
        const r = await queryScenario(port, procs, conns / procs, d, routes, warmup, duration);
        rows.push([mode, conns, d, r.rate, r.p50, r.p99, r.max]);
      }
    }
  } finally {
    await stopChild(server);
    await db.cleanup();
  }
  console.log(
    `dns query bench: ${machineLine()}; 1,000 routes x 10 hosts on SQLite; ${warmup} s warm-up + ${duration} s each`,
  );
  console.log(
    formatTable(['mode', 'connections', 'in flight/conn', 'req/s', 'p50 us', 'p99 us', 'max us'], rows),
  );
  const l2 = rows.find((r) => r[0] === 'lockstep' && r[1] === 2)!;
  console.log(
    `lockstep, 2 connections: ${Math.round(l2[3] as number)} req/s vs target 40,000: ${(l2[3] as number) >= 40_000 ? 'OK' : 'BELOW TARGET'}`,
  );
}

async function runPush(): Promise<void> {
  const conns = numberArg(args, 'conns', 1000);
  const changes = numberArg(args, 'changes', 20);
  const db = await filledDatabase('sqlite', 10, 2);
  const { server, port, httpPort } = await startServer(db.url, ['--poll', '1']);
  const push = forkRole(SELF, ['--role', 'push-client', '--port', String(port), '--conns', String(conns)]);
  const store: Store = await openStore(db.url);
  const rows: (string | number)[][] = [];
  try {
    await nextMessage(push, 'ready', 60_000);
    let hosts = (await store.getRoute(1, 1)).length;
    for (const mode of ['polling', 'immediate poll'] as const) {
      const hist = new Histogram();
      let worst = 0;
      for (let i = 0; i < changes; i++) {
        hosts++;
        push.send({ type: 'expect', hosts });
        await nextMessage(push, 'armed', 10_000);
        // Spread changes over the poll period so polling latency is sampled fairly.
        await delay(Math.random() * 1000);
        const t0 = epochMs();
        await store.addHost(1, 1, 0x0b000000 + hosts, 80);
        if (mode === 'immediate poll')
          await fetch(`http://${HOST}:${httpPort}/admin/poll`, { method: 'POST' });
        const { arrivals } = await nextMessage<BenchMessage & { arrivals: number[] }>(
          push,
          'arrivals',
          20_000,
        );
        if (arrivals.length < conns)
          throw new TimeoutError(`only ${arrivals.length}/${conns} connections got the push`);
        for (const a of arrivals) {
          hist.record((a - t0) * 1e6);
          worst = Math.max(worst, a - t0);
        }
      }
      rows.push([mode, conns, changes, hist.percentile(50) / 1e6, hist.percentile(99) / 1e6, worst]);
    }
  } finally {
    await store.close();
    await stopChild(push);
    await stopChild(server);
    await db.cleanup();
  }
  console.log(
    `dns push bench: ${machineLine()}; one change pushed to ${conns} subscribed connections; SQLite, poll interval 1 s`,
  );
  console.log(formatTable(['trigger', 'subscribers', 'changes', 'p50 ms', 'p99 ms', 'max ms'], rows));
}

async function runReload(): Promise<void> {
  const routes = numberArg(args, 'routes', 100_000);
  const hosts = numberArg(args, 'hosts', 10);
  const reloads = numberArg(args, 'reloads', 3);
  const backend = args.get('db') ?? 'sqlite';
  const t0 = performance.now();
  const db = await filledDatabase(benchBackend(backend), routes, hosts);
  const fillS = (performance.now() - t0) / 1000;
  const { server, port, loadMs, rss } = await startServer(db.url);
  const rows: (string | number)[][] = [];
  try {
    // A lockstep prober measures what a query waits while full reloads run.
    const prober = forkRole(SELF, [
      '--role',
      'query-client',
      '--port',
      String(port),
      '--conns',
      '1',
      '--depth',
      '1',
      '--routes',
      String(routes),
      '--warmup',
      '0',
      '--duration',
      String(600),
    ]);
    await nextMessage(prober, 'ready', 30_000);
    const result = nextMessage<QueryResult>(prober, 'result', 700_000);
    prober.send({ type: 'go' });
    await delay(500);
    server.send({ type: 'reload', n: reloads });
    const r = await nextMessage<BenchMessage & { times: number[]; rss: number }>(server, 'reloaded', 600_000);
    prober.send({ type: 'finish' });
    const q = await result.catch(() => undefined);
    await stopChild(prober);
    const maxWait = q ? q.max / 1e6 : NaN;
    rows.push([
      backend,
      routes * hosts,
      fillS,
      loadMs / 1000,
      Math.max(...r.times) / 1000,
      rss / 2 ** 20,
      r.rss / 2 ** 20,
      maxWait,
    ]);
  } finally {
    await stopChild(server);
    await db.cleanup();
  }
  console.log(
    `dns reload bench: ${machineLine()}; ${routes} routes x ${hosts} hosts; ${reloads} full reloads under a lockstep query client`,
  );
  console.log(
    formatTable(
      [
        'db',
        'rows',
        'fill s',
        'first load+swap s',
        'full reload s (max)',
        'RSS after load MB',
        'RSS peak MB',
        'worst query wait ms',
      ],
      rows,
    ),
  );
}

async function runMain(): Promise<void> {
  const scenario = args.get('scenario');
  if (scenario === undefined || scenario === 'query') await runQuery();
  if (scenario === undefined || scenario === 'push') await runPush();
  if (scenario === 'reload') await runReload();
}
