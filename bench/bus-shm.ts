/**
 * Large payloads on the bus (issue 14): the bus with shared-memory payloads (handed over by
 * reference through lars shm) vs the bus with inline payloads vs NATS, in the same run, interleaved.
 *
 *   npm run bench:bus-shm          (also run by npm run bench:bus)
 *   node dist/bench/bus-shm.js --rounds 3 --duration 2 --warmup 0.5 --scenario pub1m,req16m
 *
 * Scenarios (every party in its own process; the bus, lars shm and a private nats-server are three
 * more): pub1m / pub16m: 1 publisher -> 4 subscribers; req1m / req16m: lockstep request/reply, the
 * responder answers with the request's payload (shm: the same block back, by reference). Every
 * sender writes each payload once (the writer's copy); receivers read its first 8 bytes. NATS runs
 * as a private nats-server (same binary as 127.0.0.1:4222) with max_payload 64 MiB so that it can
 * carry 16 MiB at all; the bus runs with max_payload 32 MiB for the same reason (inline only).
 * Verdicts: 16 MiB request/reply p50 bus+shm vs NATS (target >= 20x faster); bytes the bus moved
 * per 1 MiB publish to 4 subscribers (target: nothing beyond the writer's 1 MiB, i.e. frames only).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect as natsConnect } from 'nats';
import { BusService, busSettings } from '../src/bus/server/index.js';
import { ShmDaemon } from '../src/shm/daemon/index.js';
import { parseClasses } from '../src/shm/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { openLarge, type LargeSystem } from './lib/bus-large-transports.js';
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
const MiB = 1024 * 1024;
const SYSTEMS: LargeSystem[] = ['shm', 'inline', 'nats'];

interface Scenario {
  name: string;
  kind: 'pubsub' | 'reqrep';
  size: number;
  subscribers: number;
}

const SCENARIOS: Scenario[] = [
  { name: 'pub1m', kind: 'pubsub', size: MiB, subscribers: 4 },
  { name: 'pub16m', kind: 'pubsub', size: 16 * MiB, subscribers: 4 },
  { name: 'req1m', kind: 'reqrep', size: MiB, subscribers: 0 },
  { name: 'req16m', kind: 'reqrep', size: 16 * MiB, subscribers: 0 },
];

interface Result extends BenchMessage, ClientRun {
  type: 'result';
}
interface Row {
  rate: number;
  p50: number;
  p99: number;
  /** Bytes through the bus's sockets per message sent (pub/sub: per publish). */
  busBytes: number;
}

const args = parseArgs(process.argv.slice(2));
const ends = {
  busSocket: args.get('bus') ?? '',
  shmSocket: args.get('shm') ?? '',
  natsUrl: args.get('nats') ?? '',
};

switch (args.get('role') ?? 'main') {
  case 'daemons':
    await runDaemons();
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

/** lars shm and the bus in one process (two event loops' worth of work is small: frames only). */
async function runDaemons(): Promise<void> {
  const shm = new ShmDaemon({
    socketPath: ends.shmSocket,
    classes: parseClasses('4KiB:64,1MiB:96,16MiB:24'),
    quotaPercent: 100,
    maxBatchesPerProc: 100_000,
  });
  await shm.start();
  const settings = busSettings({ maxPayload: 32 * MiB, maxPendingMsgs: 1 << 20, maxPendingBytes: 1 << 30 });
  const svc = new BusService({ socketPath: ends.busSocket, settings, shmSocket: ends.shmSocket });
  await svc.start();
  tellParent({ type: 'listening' });
  for (;;) {
    const m = await fromParent(['stats', 'stop']);
    if (m.type === 'stop') break;
    const s = svc.engine.stats;
    tellParent({ type: 'stats', bytes: s.bytesIn + s.bytesOut, transfers: svc.engine.relay.transfers });
  }
  await svc.destroy();
  await shm.destroy();
  process.exit(0);
}

async function runSub(): Promise<void> {
  const t = await openLarge(args.get('system') as LargeSystem, `sub-${process.pid}`, ends);
  const hist = new Histogram();
  let measuring = false;
  let count = 0;
  await t.subscribe(args.get('subject')!, (sent) => {
    if (!measuring) return;
    count += 1;
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
  const t = await openLarge(args.get('system') as LargeSystem, `pub-${process.pid}`, ends);
  const size = numberArg(args, 'size', MiB);
  const subject = args.get('subject')!;
  let running = true;
  process.on('message', (m: BenchMessage) => {
    if (m?.type === 'stop') running = false;
  });
  tellParent({ type: 'ready' });
  await fromParent('go');
  let sent = 0;
  // Small batches, then a round trip: bounded memory on every system (16 MiB payloads).
  while (running) {
    for (let i = 0; i < 4; i++) await t.publish(subject, size);
    sent += 4;
    await t.flush();
  }
  tellParent({ type: 'sent', sent });
  await t.close();
  process.exit(0);
}

async function runRep(): Promise<void> {
  const t = await openLarge(args.get('system') as LargeSystem, `rep-${process.pid}`, ends);
  await t.serve(args.get('subject')!);
  tellParent({ type: 'ready' });
  await fromParent('stop');
  await t.close();
  process.exit(0);
}

async function runReq(): Promise<void> {
  const t = await openLarge(args.get('system') as LargeSystem, `req-${process.pid}`, ends);
  const size = numberArg(args, 'size', MiB);
  const subject = args.get('subject')!;
  const hist = new Histogram();
  let running = true;
  let measuring = false;
  let count = 0;
  tellParent({ type: 'ready' });
  await fromParent('go');
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      await t.request(subject, size);
      if (measuring) {
        hist.record((performance.now() - t0) * 1e6);
        count += 1;
      }
    }
  })();
  const elapsedMs = await measured(() => (measuring = true));
  measuring = false;
  running = false;
  await loop;
  tellParent({ type: 'result', count, elapsedMs, counts: hist.counts, max: hist.max } satisfies Result);
  await t.close();
  process.exit(0);
}

async function busBytes(daemons: ChildProcess): Promise<number> {
  const reply = nextMessage<BenchMessage & { bytes: number }>(daemons, 'stats', 10_000);
  daemons.send({ type: 'stats' });
  return (await reply).bytes;
}

async function runScenario(
  s: Scenario,
  system: LargeSystem,
  daemons: ChildProcess,
  o: { warmupMs: number; durationMs: number; natsUrl: string },
): Promise<Row> {
  const subject = `larsbench.${process.pid}.${s.name}.${Math.random().toString(36).slice(2, 8)}`;
  const common = [
    '--system',
    system,
    '--bus',
    ends.busSocket,
    '--shm',
    ends.shmSocket,
    '--nats',
    o.natsUrl,
    '--subject',
    subject,
    '--size',
    String(s.size),
  ];
  const receivers =
    s.kind === 'pubsub'
      ? Array.from({ length: s.subscribers }, () => forkRole(SELF, ['--role', 'sub', ...common]))
      : [forkRole(SELF, ['--role', 'rep', ...common])];
  const driver = forkRole(SELF, ['--role', s.kind === 'pubsub' ? 'pub' : 'req', ...common]);
  try {
    await Promise.all([...receivers, driver].map((c) => nextMessage(c, 'ready', 30_000)));
    driver.send({ type: 'go' });
    await delay(o.warmupMs);
    const measuring = s.kind === 'pubsub' ? receivers : [driver];
    const results = measuring.map((c) => nextMessage<Result>(c, 'result', o.durationMs + 60_000));
    const bytes0 = await busBytes(daemons);
    for (const c of measuring) c.send({ type: 'measure' });
    await delay(o.durationMs);
    for (const c of measuring) c.send({ type: 'stop' });
    const runs = await Promise.all(results);
    const bytes1 = await busBytes(daemons);
    if (s.kind === 'pubsub') driver.send({ type: 'stop' });
    const r = combineRuns(runs);
    // Messages sent while measured: deliveries / subscribers (pub/sub), requests (req/rep).
    const sent = runs.reduce((n, x) => n + x.count, 0) / Math.max(1, s.subscribers);
    return {
      rate: r.rate,
      p50: r.p50,
      p99: r.p99,
      busBytes: system === 'nats' ? NaN : (bytes1 - bytes0) / Math.max(1, sent),
    };
  } finally {
    await Promise.all([...receivers, driver].map((c) => stopChild(c, 15_000)));
  }
}

/** A nats-server of its own, max_payload 64 MiB (the shared one allows 1 MiB). */
async function startNats(dir: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const conf = join(dir, 'nats.conf');
  writeFileSync(conf, `listen: 127.0.0.1:${port}\nmax_payload: 67108864\nmax_pending: 1073741824\n`);
  const proc = spawn('nats-server', ['-c', conf], { stdio: 'ignore' });
  const url = `nats://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      await (await natsConnect({ servers: url, reconnect: false })).close();
      return { url, proc };
    } catch {
      await delay(100);
    }
  }
  throw new Error(`nats-server on ${port} did not come up`);
}

async function runMain(): Promise<void> {
  const rounds = numberArg(args, 'rounds', 3);
  const warmupMs = numberArg(args, 'warmup', 0.5) * 1000;
  const durationMs = numberArg(args, 'duration', 2) * 1000;
  const only = args.get('scenario')?.split(',');
  const scenarios = SCENARIOS.filter((s) => !only || only.includes(s.name));
  const dir = mkdtempSync('/tmp/lars-bs-');
  ends.busSocket = join(dir, 'bus.sock');
  ends.shmSocket = join(dir, 'shm.sock');
  const nats = await startNats(dir);
  const daemons = forkRole(SELF, ['--role', 'daemons', '--bus', ends.busSocket, '--shm', ends.shmSocket]);
  await nextMessage(daemons, 'listening', 30_000);
  console.log(
    `bus-shm bench: ${machineLine()}; ${rounds} rounds x ${warmupMs / 1000} s warm-up + ${durationMs / 1000} s`,
  );
  const all = new Map<string, Record<LargeSystem, Row[]>>();
  try {
    for (let round = 0; round < rounds; round++) {
      for (const s of scenarios) {
        const entry = all.get(s.name) ?? { shm: [], inline: [], nats: [] };
        all.set(s.name, entry);
        // Rotate who goes first, round by round.
        const order = SYSTEMS.map((_, i) => SYSTEMS[(i + round) % SYSTEMS.length] as LargeSystem);
        for (const system of order) {
          const row = await runScenario(s, system, daemons, { warmupMs, durationMs, natsUrl: nats.url });
          entry[system].push(row);
          console.log(
            `round ${round + 1} ${s.name.padEnd(7)} ${system.padEnd(6)} ${row.rate.toFixed(1).padStart(8)} msg/s  p50 ${(row.p50 / 1000).toFixed(2)} ms  p99 ${(row.p99 / 1000).toFixed(2)} ms  bus bytes/msg ${Number.isNaN(row.busBytes) ? '-' : Math.round(row.busBytes)}`,
          );
        }
      }
    }
  } finally {
    await stopChild(daemons, 15_000);
    nats.proc.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
  printSummary(scenarios, all);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function printSummary(scenarios: Scenario[], all: Map<string, Record<LargeSystem, Row[]>>): void {
  const rows: (string | number)[][] = [];
  const verdicts: string[] = [];
  for (const s of scenarios) {
    const e = all.get(s.name)!;
    const m = (sys: LargeSystem, k: keyof Row): number => median(e[sys].map((r) => r[k]));
    const ratio = (a: LargeSystem, b: LargeSystem, k: 'rate' | 'p50'): number =>
      median(e[a].map((r, i) => (k === 'rate' ? r.rate / e[b][i]!.rate : e[b][i]!.p50 / r.p50)));
    rows.push([
      s.name,
      m('shm', 'rate').toFixed(1),
      m('inline', 'rate').toFixed(1),
      m('nats', 'rate').toFixed(1),
      (m('shm', 'p50') / 1000).toFixed(2),
      (m('inline', 'p50') / 1000).toFixed(2),
      (m('nats', 'p50') / 1000).toFixed(2),
      ratio('shm', 'nats', s.kind === 'reqrep' ? 'p50' : 'rate').toFixed(1),
      ratio('shm', 'inline', s.kind === 'reqrep' ? 'p50' : 'rate').toFixed(1),
      Math.round(m('shm', 'busBytes')),
      Math.round(m('inline', 'busBytes')),
    ]);
    if (s.name === 'req16m') {
      const r = ratio('shm', 'nats', 'p50');
      verdicts.push(
        `req16m: bus+shm p50 is ${r.toFixed(1)}x faster than NATS (target >= 20x): ${r >= 20 ? 'MET' : 'NOT MET'}`,
      );
    }
    if (s.name === 'pub1m') {
      const b = m('shm', 'busBytes');
      verdicts.push(
        `pub1m: the bus moved ${Math.round(b)} bytes per 1 MiB publish to 4 subscribers (inline: ${Math.round(m('inline', 'busBytes'))}); ` +
          `copying = the writer's 1 MiB + ${Math.round(b)} B of frames: ${b < 64 * 1024 ? 'MET' : 'NOT MET'}`,
      );
    }
  }
  console.log(
    '\nmedians over rounds (pub/sub: deliveries/s summed over 4 subscribers, publish-to-delivery latency; req/rep: lockstep round trips)',
  );
  console.log(
    formatTable(
      [
        'scenario',
        'shm rate',
        'inline rate',
        'nats rate',
        'shm p50 ms',
        'inline p50 ms',
        'nats p50 ms',
        'shm/nats x',
        'shm/inline x',
        'shm bus B/msg',
        'inline bus B/msg',
      ],
      rows,
    ),
  );
  for (const v of verdicts) console.log(v);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
