/**
 * The same-host bus against NATS (the anchor), in the same run, interleaved (issue 13).
 *
 *   npm run bench:bus
 *   node dist/bench/bus.js --rounds 5 --duration 3 --warmup 1 --scenario pubsub16,reqrep1
 *
 * Scenarios (every party in its own process; the bus daemon is one more process, NATS is the
 * nats-server at LARS_BENCH_NATS_URL, default nats://127.0.0.1:4222):
 *   pubsub16 / pubsub1k   1 publisher -> 1 subscriber, 16 B / 1 KiB payloads
 *   fanout16              1 publisher -> 4 subscribers, 16 B
 *   reqrep1 / reqrep64    request/reply, lockstep / 64 in flight (one requester, one responder)
 * Publishers send batches (--batch, default 1000) and flush (a PING/PONG round trip) after each,
 * the same on both systems. Pub/sub rates are messages delivered per second, summed over
 * subscribers; latency is publish-to-delivery (timestamp in the payload, every 16th message). Each round runs every
 * scenario on both systems, alternating which goes first; the verdict uses the median over rounds
 * of the bus/NATS ratio.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BusService, busSettings } from '../src/bus/server/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { openTransport, type SystemName } from './lib/bus-transports.js';
import { combineRuns, Histogram, type ClientRun } from './lib/histogram.js';
import {
  forkRole,
  fromParent,
  machineLine,
  measured,
  nextMessage,
  stopChild,
  tellParent,
  type BenchMessage,
} from './lib/proc.js';
import { formatTable } from './lib/table.js';

const SELF = fileURLToPath(import.meta.url);

interface Scenario {
  name: string;
  kind: 'pubsub' | 'reqrep';
  size: number;
  subscribers: number;
  depth: number;
}

const SCENARIOS: Scenario[] = [
  { name: 'pubsub16', kind: 'pubsub', size: 16, subscribers: 1, depth: 0 },
  { name: 'pubsub1k', kind: 'pubsub', size: 1024, subscribers: 1, depth: 0 },
  { name: 'fanout16', kind: 'pubsub', size: 16, subscribers: 4, depth: 0 },
  { name: 'reqrep1', kind: 'reqrep', size: 16, subscribers: 0, depth: 1 },
  { name: 'reqrep64', kind: 'reqrep', size: 16, subscribers: 0, depth: 64 },
];

/** Targets of issue 13: bus/NATS rate ratio (and p50 ratio for lockstep request/reply). */
const TARGETS: Record<string, { rate: number; p50?: number }> = {
  pubsub16: { rate: 1.5 },
  pubsub1k: { rate: 1.0 },
  reqrep1: { rate: 2.0, p50: 0.5 },
};

interface Result extends BenchMessage, ClientRun {
  type: 'result';
}

const args = parseArgs(process.argv.slice(2));
switch (args.get('role') ?? 'main') {
  case 'bus':
    await runBus();
    break;
  case 'sub':
    await runSub();
    break;
  case 'pub':
    await runPub();
    break;
  case 'rep':
    await runRep();
    break;
  case 'req':
    await runReq();
    break;
  default:
    await runMain();
}

function roleArgs(): { system: SystemName; socket: string; subject: string } {
  return {
    system: (args.get('system') ?? 'bus') as SystemName,
    socket: args.get('socket') ?? '',
    subject: args.get('subject') ?? 'bench',
  };
}

async function runBus(): Promise<void> {
  // Limits comparable to nats-server's 64 MiB max_pending (NATS counts bytes only).
  const settings = busSettings({ maxPendingMsgs: 1 << 20, maxPendingBytes: 64 << 20 });
  const svc = new BusService({ socketPath: args.get('socket') ?? '', settings });
  await svc.start();
  tellParent({ type: 'listening' });
  await fromParent('stop');
  const d = svc.engine.stats.dropped;
  if (d.slow_consumer + d.offline > 0)
    process.stderr.write(
      `bus bench: the bus dropped ${d.slow_consumer} (slow consumer) + ${d.offline} (offline) messages\n`,
    );
  await svc.destroy();
  process.exit(0);
}

/** Publish timestamp (ms, comparable across processes) in the first 8 bytes of each payload. */
function stamp(buf: Buffer): void {
  buf.writeDoubleLE(performance.timeOrigin + performance.now(), 0);
}

async function runSub(): Promise<void> {
  const { system, socket, subject } = roleArgs();
  const t = await openTransport(system, `sub-${process.pid}`, socket);
  const hist = new Histogram();
  let measuring = false;
  let count = 0;
  await t.subscribe(subject, (data) => {
    if (!measuring) return;
    count += 1;
    // Latency of every 16th message: recording each one cost the subscriber (the bottleneck of
    // both systems) a fifth of its time; the same sampling applies to both.
    if ((count & 15) !== 0) return;
    const sent = new DataView(data.buffer, data.byteOffset, 8).getFloat64(0, true);
    hist.record((performance.timeOrigin + performance.now() - sent) * 1e6);
  });
  tellParent({ type: 'ready' });
  const elapsedMs = await measured(() => (measuring = true));
  measuring = false;
  tellParent({ type: 'result', count, elapsedMs, counts: hist.counts, max: hist.max } satisfies Result);
  await t.close();
  process.exit(0);
}

async function runPub(): Promise<void> {
  const { system, socket, subject } = roleArgs();
  const size = numberArg(args, 'size', 16);
  const batch = numberArg(args, 'batch', 1000);
  const t = await openTransport(system, `pub-${process.pid}`, socket);
  let running = true;
  process.on('message', (m: BenchMessage) => {
    if (m?.type === 'stop') running = false;
  });
  tellParent({ type: 'ready' });
  await fromParent('go');
  let sent = 0;
  while (running) {
    for (let i = 0; i < batch; i++) {
      const payload = Buffer.allocUnsafe(size);
      stamp(payload);
      t.publish(subject, payload);
    }
    sent += batch;
    await t.flush();
  }
  tellParent({ type: 'sent', sent });
  await t.close();
  process.exit(0);
}

async function runRep(): Promise<void> {
  const { system, socket, subject } = roleArgs();
  const t = await openTransport(system, `rep-${process.pid}`, socket);
  await t.serve(subject, (data) => data);
  tellParent({ type: 'ready' });
  await fromParent('stop');
  await t.close();
  process.exit(0);
}

async function runReq(): Promise<void> {
  const { system, socket, subject } = roleArgs();
  const depth = numberArg(args, 'depth', 1);
  const size = numberArg(args, 'size', 16);
  const t = await openTransport(system, `req-${process.pid}`, socket);
  const hist = new Histogram();
  let running = true;
  let measuring = false;
  let count = 0;
  const payload = Buffer.alloc(size, 7);
  const worker = async (): Promise<void> => {
    while (running) {
      const t0 = performance.now();
      await t.request(subject, payload);
      if (measuring) {
        hist.record((performance.now() - t0) * 1e6);
        count += 1;
      }
    }
  };
  tellParent({ type: 'ready' });
  await fromParent('go');
  const workers = Array.from({ length: depth }, worker);
  const elapsedMs = await measured(() => (measuring = true));
  measuring = false;
  running = false;
  await Promise.all(workers);
  tellParent({ type: 'result', count, elapsedMs, counts: hist.counts, max: hist.max } satisfies Result);
  await t.close();
  process.exit(0);
}

interface Row {
  rate: number;
  p50: number;
  p99: number;
}

async function runScenario(
  s: Scenario,
  system: SystemName,
  socket: string,
  warmupMs: number,
  durationMs: number,
): Promise<Row> {
  const subject = `larsbench.${process.pid}.${s.name}.${Math.random().toString(36).slice(2, 8)}`;
  const common = ['--system', system, '--socket', socket, '--subject', subject, '--size', String(s.size)];
  const receivers =
    s.kind === 'pubsub'
      ? Array.from({ length: s.subscribers }, () => forkRole(SELF, ['--role', 'sub', ...common]))
      : [forkRole(SELF, ['--role', 'rep', ...common])];
  const driver =
    s.kind === 'pubsub'
      ? forkRole(SELF, ['--role', 'pub', ...common, '--batch', String(numberArg(args, 'batch', 1000))])
      : forkRole(SELF, ['--role', 'req', ...common, '--depth', String(s.depth)]);
  try {
    await Promise.all([...receivers, driver].map((c) => nextMessage(c, 'ready', 15_000)));
    driver.send({ type: 'go' });
    await delay(warmupMs);
    const measuring = s.kind === 'pubsub' ? receivers : [driver];
    const results = measuring.map((c) => nextMessage<Result>(c, 'result', durationMs + 30_000));
    for (const c of measuring) c.send({ type: 'measure' });
    await delay(durationMs);
    for (const c of measuring) c.send({ type: 'stop' });
    const runs = await Promise.all(results);
    if (s.kind === 'pubsub') driver.send({ type: 'stop' });
    const r = combineRuns(runs);
    return { rate: r.rate, p50: r.p50, p99: r.p99 };
  } finally {
    await Promise.all([...receivers, driver].map((c) => stopChild(c)));
  }
}

async function runMain(): Promise<void> {
  const rounds = numberArg(args, 'rounds', 3);
  const warmupMs = numberArg(args, 'warmup', 0.5) * 1000;
  const durationMs = numberArg(args, 'duration', 2) * 1000;
  const only = args.get('scenario')?.split(',');
  const scenarios = SCENARIOS.filter((s) => !only || only.includes(s.name));
  const dir = mkdtempSync('/tmp/lars-bb-');
  const socket = join(dir, 'bus.sock');
  const bus = forkRole(SELF, ['--role', 'bus', '--socket', socket]);
  await nextMessage(bus, 'listening', 15_000);
  console.log(
    `bus bench: ${machineLine()}; ${rounds} rounds x ${warmupMs / 1000} s warm-up + ${durationMs / 1000} s`,
  );
  const all = new Map<string, { nats: Row[]; bus: Row[] }>();
  try {
    for (let round = 0; round < rounds; round++) {
      for (const s of scenarios) {
        const order: SystemName[] = round % 2 === 0 ? ['nats', 'bus'] : ['bus', 'nats'];
        const entry = all.get(s.name) ?? { nats: [], bus: [] };
        all.set(s.name, entry);
        for (const system of order) {
          const row = await runScenario(s, system, socket, warmupMs, durationMs);
          entry[system].push(row);
          console.log(
            `round ${round + 1} ${s.name.padEnd(9)} ${system.padEnd(4)} ${Math.round(row.rate).toLocaleString('en-US').padStart(10)} msg/s  p50 ${row.p50.toFixed(0)} us  p99 ${row.p99.toFixed(0)} us`,
          );
        }
      }
    }
  } finally {
    await stopChild(bus);
    rmSync(dir, { recursive: true, force: true });
  }
  printSummary(scenarios, all);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function printSummary(scenarios: Scenario[], all: Map<string, { nats: Row[]; bus: Row[] }>): void {
  const rows: (string | number)[][] = [];
  const verdicts: string[] = [];
  for (const s of scenarios) {
    const e = all.get(s.name);
    if (!e) continue;
    const rateRatios = e.bus.map((b, i) => b.rate / (e.nats[i] as Row).rate);
    const p50Ratios = e.bus.map((b, i) => b.p50 / (e.nats[i] as Row).p50);
    const m = (sys: 'nats' | 'bus', k: keyof Row): number => median(e[sys].map((r) => r[k]));
    rows.push([
      s.name,
      m('nats', 'rate'),
      m('bus', 'rate'),
      median(rateRatios).toFixed(2),
      m('nats', 'p50'),
      m('bus', 'p50'),
      median(p50Ratios).toFixed(2),
      m('nats', 'p99'),
      m('bus', 'p99'),
    ]);
    const t = TARGETS[s.name];
    if (t) {
      const okRate = median(rateRatios) >= t.rate;
      const okP50 = t.p50 === undefined || median(p50Ratios) <= t.p50;
      verdicts.push(
        `${s.name}: rate ratio ${median(rateRatios).toFixed(2)} (target >= ${t.rate})` +
          (t.p50 !== undefined ? `, p50 ratio ${median(p50Ratios).toFixed(2)} (target <= ${t.p50})` : '') +
          `: ${okRate && okP50 ? 'MET' : 'NOT MET'}`,
      );
    }
  }
  console.log(
    '\nmedians over rounds (rates in msg/s or req/s, latencies in us; ratio = bus / nats, median of per-round ratios)',
  );
  console.log(
    formatTable(
      [
        'scenario',
        'nats rate',
        'bus rate',
        'rate ratio',
        'nats p50',
        'bus p50',
        'p50 ratio',
        'nats p99',
        'bus p99',
      ],
      rows,
    ),
  );
  for (const v of verdicts) console.log(v);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
