/**
 * Reporter end-to-end benchmark (issue 5): host rows persisted per second with 1,000 routes x 10
 * hosts reported from 10 agent TCP connections (each agent its own caller: 100,000 distinct
 * ServerCallStatus keys), and what that costs: batch sizes, queue depth, reporter RSS.
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/reporter.js [--backends sqlite,mysql[,postgres]]
 *       [--duration 20] [--warmup 5] [--writers 3] [--queue 100000] [--batch 2000] [--window W] [--rate 0]
 *
 * The reporter runs in a child process (its RSS is its own); the parent plays the 10 agents. One
 * "round" is every agent reporting every route once (100,000 host rows, 1,000 frames of 10 hosts per
 * connection). Load:
 * - default (--rate 0): closed loop, the fastest the reporter persists without dropping: a new
 *   round is sent whenever fewer than --window rows are outstanding (sent, neither committed nor
 *   dropped; default half of all queues, writers x queue / 2);
 * - --rate N: open loop at N host rows/s (agent rounds split into 10k-row slices); drops show when
 *   N is more than the database takes.
 * Rows/s is measured after --warmup seconds (the first rounds insert; then it is upserts of existing
 * keys, the steady state; history rows are inserted once a minute per key and updated meanwhile).
 *
 * Servers: LARS_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306), LARS_BENCH_PG_URL (default
 * postgres://postgres@127.0.0.1:5432); a database `lars_b_<random>` is created and dropped after. The
 * SQLite file lives in a temp directory removed after.
 */
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { encodeFrame, encodeMessage, MsgId } from '../src/protocol/index.js';
import { DEFAULT_BATCH_MAX_ROWS, ReporterService } from '../src/reporter/index.js';
import { openStore } from '../src/store/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import {
  forkRole,
  fromParent,
  machineLine,
  nextMessage,
  stopChild,
  tellParent,
  type BenchMessage,
} from './lib/proc.js';
import { BACKEND_LABEL, benchBackend, withBenchDatabase } from './lib/databases.js';
import { formatTable } from './lib/table.js';

const SELF = fileURLToPath(import.meta.url);
const HOST = '127.0.0.1';
const ROUTES = 1_000;
const HOSTS = 10;
const AGENTS = 10;
const ROUND_ROWS = ROUTES * HOSTS * AGENTS;
/** Succ values cycle through this many pre-encoded rounds (encoding is not what we measure). */
const VARIANTS = 4;
const STATS_EVERY_MS = 100;
const TARGET_MYSQL_ROWS_S = 50_000;

const args = parseArgs(process.argv.slice(2));

interface ServerStats extends BenchMessage {
  type: 'stats';
  received: number;
  committed: number;
  statusRows: number;
  historyRows: number;
  dropped: number;
  batches: number;
  failures: number;
  conflicts: number;
  depth: number;
  rss: number;
  /** Cumulative counts per upper bound of lars_reporter_batch_rows / _db_write_seconds. */
  batchBuckets: Array<[number, number]>;
  writeBuckets: Array<[number, number]>;
  writeSecondsSum: number;
  loopMaxMs: number;
}

if (args.get('role') === 'server') await runServer();
else await runMain();

// ---------- reporter process ----------

async function runServer(): Promise<void> {
  const svc = new ReporterService({
    dbUrl: args.get('db')!,
    host: HOST,
    port: 0,
    maxConnections: 1000,
    maxOutboundBytes: 1 << 20,
    writers: numberArg(args, 'writers', 3),
    queueMaxRows: numberArg(args, 'queue', 100_000),
    batchMaxRows: numberArg(args, 'batch', DEFAULT_BATCH_MAX_ROWS),
  });
  const { port } = await svc.start();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  tellParent({ type: 'listening', port });
  const timer = setInterval(() => void sendStats(svc, loop), STATS_EVERY_MS);
  await fromParent('stop');
  clearInterval(timer);
  await sendStats(svc, loop);
  await svc.close(30_000);
  process.exit(0);
}

async function sendStats(
  svc: ReporterService,
  loop: ReturnType<typeof monitorEventLoopDelay>,
): Promise<void> {
  const lanes = svc.laneStats();
  const sum = (k: keyof (typeof lanes)[number]): number => lanes.reduce((n, l) => n + l[k], 0);
  const buckets = async (name: string): Promise<{ buckets: Array<[number, number]>; sum: number }> => {
    const m = await svc.registry.getSingleMetric(name)?.get();
    const out: Array<[number, number]> = [];
    let total = 0;
    for (const v of m?.values ?? []) {
      // Histogram values carry their series name (not in prom-client's types).
      const series = (v as { metricName?: string }).metricName ?? '';
      if (series.endsWith('_bucket'))
        out.push([v.labels.le === '+Inf' ? Infinity : Number(v.labels.le), v.value]);
      if (series.endsWith('_sum')) total = v.value;
    }
    return { buckets: out, sum: total };
  };
  const batch = await buckets('lars_reporter_batch_rows');
  const write = await buckets('lars_reporter_db_write_seconds');
  tellParent({
    type: 'stats',
    received: svc.stats.rowsReceived,
    committed: sum('rowsCommitted'),
    statusRows: sum('statusRows'),
    historyRows: sum('historyRows'),
    dropped: sum('dropped'),
    batches: sum('batches'),
    failures: sum('failures'),
    conflicts: sum('conflictRetries'),
    depth: svc.queueDepths().reduce((a, b) => a + b, 0),
    rss: process.memoryUsage().rss,
    batchBuckets: batch.buckets,
    writeBuckets: write.buckets,
    writeSecondsSum: write.sum,
    loopMaxMs: loop.max / 1e6,
  } satisfies ServerStats);
}

// ---------- agents and orchestration ----------

/** One agent's round: 1,000 ReportStatusRequest frames of 10 hosts, concatenated. */
function encodeRound(agent: number, variant: number): Buffer {
  const frames: Buffer[] = [];
  for (let r = 0; r < ROUTES; r++) {
    const results = [];
    for (let h = 0; h < HOSTS; h++) {
      results.push({
        ip: (0xc0a80000 + r * HOSTS + h) | 0,
        port: 8000 + h,
        succ: 1000 + variant,
        err: variant,
        overload: false,
      });
    }
    const body = encodeMessage(MsgId.ReportStatusRequest, {
      modid: 1 + Math.floor(r / 100),
      cmdid: 1 + (r % 100),
      caller: (0x0a000001 + agent) | 0,
      results,
      ts: Math.floor(Date.now() / 1000),
    });
    frames.push(encodeFrame(MsgId.ReportStatusRequest, body));
  }
  return Buffer.concat(frames);
}

function connectAgent(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: HOST, port }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

function write(s: Socket, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (s.write(data)) resolve();
    else s.once('drain', () => resolve());
  });
}

interface Result {
  backend: string;
  seconds: number;
  sent: number;
  persistedPerS: number;
  statusPerS: number;
  historyPerS: number;
  dropped: number;
  avgBatch: number;
  p50Batch: string;
  p99Batch: string;
  avgWriteMs: number;
  p99WriteMs: string;
  depthMax: number;
  depthAvg: number;
  rssStartMb: number;
  rssMaxMb: number;
  loopMaxMs: number;
}

function bucketPercentile(
  buckets: Array<[number, number]>,
  fromCounts: Array<[number, number]> | undefined,
  p: number,
): number {
  // Differences of cumulative counts between two samples: the distribution within the window.
  const at = (i: number): number => buckets[i]![1] - (fromCounts?.[i]?.[1] ?? 0);
  const total = at(buckets.length - 1);
  if (total <= 0) return 0;
  for (let i = 0; i < buckets.length; i++) if (at(i) >= (p / 100) * total) return buckets[i]![0];
  return Infinity;
}

async function runBackend(backend: string, url: string): Promise<Result> {
  const store = await openStore(url);
  await store.migrate();
  await store.close();
  const durationS = numberArg(args, 'duration', 20);
  const warmupS = numberArg(args, 'warmup', 5);
  // Outstanding rows allowed in the closed loop: half of all queues, so no queue overflows.
  const windowRows = numberArg(args, 'window', defaultWindow());
  const rate = numberArg(args, 'rate', 0);
  const server = forkRole(SELF, [
    '--role',
    'server',
    '--db',
    url,
    '--writers',
    String(numberArg(args, 'writers', 3)),
    '--queue',
    String(numberArg(args, 'queue', 100_000)),
    '--batch',
    String(numberArg(args, 'batch', DEFAULT_BATCH_MAX_ROWS)),
  ]);
  try {
    const { port } = await nextMessage<BenchMessage & { port: number }>(server, 'listening', 30_000);
    process.stderr.write(`${backend}: encoding ${VARIANTS} rounds of ${ROUND_ROWS} rows...\n`);
    const rounds = Array.from({ length: VARIANTS }, (_, v) =>
      Array.from({ length: AGENTS }, (_, a) => encodeRound(a, v)),
    );
    const agents = await Promise.all(Array.from({ length: AGENTS }, () => connectAgent(port)));

    let latest: ServerStats | undefined;
    const samples: ServerStats[] = [];
    server.on('message', (m: BenchMessage) => {
      if (m.type === 'stats') {
        latest = m as ServerStats;
        samples.push(latest);
      }
    });
    let sent = 0;
    let round = 0;
    const t0 = performance.now();
    const endAt = t0 + (warmupS + durationS) * 1000;
    let mark: { t: number; s: ServerStats } | undefined;
    while (performance.now() < endAt) {
      if (mark === undefined && performance.now() - t0 >= warmupS * 1000 && latest) {
        mark = { t: performance.now(), s: latest };
      }
      if (rate > 0) {
        // Open loop: one agent's round (10,000 rows) per slot at the configured rate.
        const slot = t0 + (sent / rate) * 1000;
        const wait = slot - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, Math.min(wait, 50)));
        if (performance.now() < slot) continue;
        const a = (sent / (ROUND_ROWS / AGENTS)) % AGENTS;
        await write(agents[a]!, rounds[round % VARIANTS]![a]!);
        sent += ROUND_ROWS / AGENTS;
        if (a === AGENTS - 1) round += 1;
        continue;
      }
      const outstanding = sent - (latest ? latest.committed + latest.dropped : 0);
      if (outstanding + ROUND_ROWS > windowRows) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      const variant = rounds[round % VARIANTS]!;
      await Promise.all(agents.map((s, a) => write(s, variant[a]!)));
      sent += ROUND_ROWS;
      round += 1;
    }
    const end = { t: performance.now(), s: latest! };
    const start = mark ?? { t: t0, s: samples[0]! };
    const seconds = (end.t - start.t) / 1000;
    const depths = samples.slice(Math.max(0, samples.indexOf(start.s))).map((s) => s.depth);
    const batches = end.s.batches - start.s.batches;
    for (const s of agents) s.destroy();
    const result: Result = {
      backend,
      seconds,
      sent,
      persistedPerS: (end.s.committed - start.s.committed) / seconds,
      statusPerS: (end.s.statusRows - start.s.statusRows) / seconds,
      historyPerS: (end.s.historyRows - start.s.historyRows) / seconds,
      dropped: end.s.dropped,
      avgBatch: batches > 0 ? (end.s.committed - start.s.committed) / batches : 0,
      p50Batch: `<=${bucketPercentile(end.s.batchBuckets, start.s.batchBuckets, 50)}`,
      p99Batch: `<=${bucketPercentile(end.s.batchBuckets, start.s.batchBuckets, 99)}`,
      avgWriteMs: batches > 0 ? ((end.s.writeSecondsSum - start.s.writeSecondsSum) / batches) * 1000 : 0,
      p99WriteMs: `<=${bucketPercentile(end.s.writeBuckets, start.s.writeBuckets, 99) * 1000}`,
      depthMax: Math.max(...depths),
      depthAvg: depths.reduce((a, b) => a + b, 0) / Math.max(1, depths.length),
      rssStartMb: start.s.rss / 1048576,
      rssMaxMb: Math.max(...samples.map((s) => s.rss)) / 1048576,
      loopMaxMs: end.s.loopMaxMs,
    };
    process.stderr.write(
      `${backend}: sent ${sent} rows in ${round} rounds; failures ${end.s.failures}, deadlock retries ${end.s.conflicts}; final queue ${end.s.depth}\n`,
    );
    return result;
  } finally {
    await stopChild(server, 60_000);
  }
}

function defaultWindow(): number {
  return Math.max(ROUND_ROWS, (numberArg(args, 'writers', 3) * numberArg(args, 'queue', 100_000)) / 2);
}

async function runMain(): Promise<void> {
  const runners: Record<string, () => Promise<Result>> = Object.fromEntries(
    ['sqlite', 'mysql', 'mariadb', 'postgres'].map((name) => {
      const backend = benchBackend(name);
      return [name, () => withBenchDatabase(backend, (url) => runBackend(BACKEND_LABEL[backend], url))];
    }),
  );
  const results: Result[] = [];
  for (const name of (args.get('backends') ?? 'sqlite,mysql').split(',').map((s) => s.trim())) {
    const run = runners[name];
    if (!run) {
      process.stderr.write(`unknown backend ${name} (sqlite, mysql, postgres)\n`);
      process.exit(2);
    }
    results.push(await run());
  }
  const rate = numberArg(args, 'rate', 0);
  console.log(
    `reporter bench: ${ROUTES} routes x ${HOSTS} hosts from ${AGENTS} agent connections (${ROUND_ROWS} distinct keys), ` +
      `${numberArg(args, 'writers', 3)} writers, batch ${numberArg(args, 'batch', DEFAULT_BATCH_MAX_ROWS)}, queue ${numberArg(args, 'queue', 100_000)} rows/writer, ` +
      (rate > 0
        ? `open loop at ${rate} rows/s`
        : `closed loop (window ${numberArg(args, 'window', 150_000)} rows)`),
  );
  console.log(`${machineLine()}, ${new Date().toISOString()}`);
  console.log(
    formatTable(
      [
        'backend',
        's',
        'rows sent',
        'persisted rows/s',
        'status rows/s',
        'history rows/s',
        'dropped',
        'batch avg',
        'batch p50',
        'batch p99',
        'write ms avg',
        'write ms p99',
        'queue max',
        'queue avg',
        'RSS @warm MB',
        'RSS max MB',
        'loop max ms',
      ],
      results.map((r) => [
        r.backend,
        Number(r.seconds.toFixed(1)),
        r.sent,
        r.persistedPerS,
        r.statusPerS,
        r.historyPerS,
        r.dropped,
        Math.round(r.avgBatch),
        r.p50Batch,
        r.p99Batch,
        Number(r.avgWriteMs.toFixed(1)),
        r.p99WriteMs,
        r.depthMax,
        r.depthAvg,
        Math.round(r.rssStartMb),
        Math.round(r.rssMaxMb),
        Math.round(r.loopMaxMs),
      ]),
    ),
  );
  for (const r of results) {
    if (r.backend.startsWith('mariadb')) {
      console.log(
        `mariadb: ${Math.round(r.persistedPerS).toLocaleString('en-US')} host rows/s vs target ${TARGET_MYSQL_ROWS_S.toLocaleString('en-US')}: ${r.persistedPerS >= TARGET_MYSQL_ROWS_S ? 'OK' : 'BELOW TARGET'}`,
      );
    }
  }
}
