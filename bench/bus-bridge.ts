/**
 * The bus's bridge to NATS (issue 14): what exporting a local 16 B publish to NATS costs against a
 * direct NATS publish, in the same run, interleaved. Target: the bridged path at most 2x the direct
 * one (rate ratio direct/bridged, and p50 publish-to-delivery ratio).
 *
 *   npm run bench:bus-bridge       (also run by npm run bench:bus)
 *   node dist/bench/bus-bridge.js --rounds 5 --duration 2 --warmup 0.5
 *
 * direct:  NATS publisher -> nats-server -> NATS subscriber
 * bridged: bus publisher -> lars bus -> bridge (in the bus process) -> nats-server -> NATS subscriber
 * NATS is the server at LARS_BENCH_NATS_URL (default nats://127.0.0.1:4222); subjects are random.
 * Publishers send batches of 1000 and then a round trip to their server (bus: PING/PONG; NATS:
 * flush), the same flow control on both paths.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect as natsConnect } from 'nats';
import { BusClient } from '../src/bus/index.js';
import { BusService, busSettings } from '../src/bus/server/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { NATS_URL } from './lib/bus-transports.js';
import { combineRuns, Histogram, type ClientRun } from './lib/histogram.js';
import {
  forkRole,
  fromParent,
  machineLine,
  nextMessage,
  stopChild,
  tellParent,
  type BenchMessage,
} from './lib/proc.js';
import { formatTable } from './lib/table.js';

const SELF = fileURLToPath(import.meta.url);
type Path = 'direct' | 'bridged';
interface Result extends BenchMessage, ClientRun {
  type: 'result';
}
interface Row {
  rate: number;
  p50: number;
  p99: number;
}

const args = parseArgs(process.argv.slice(2));
const prefix = args.get('prefix') ?? '';
const socket = args.get('socket') ?? '';
const paced = args.get('paced') === 'true';

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
  default:
    await runMain();
}

async function runBus(): Promise<void> {
  const svc = new BusService({
    socketPath: socket,
    settings: busSettings({ maxPendingMsgs: 1 << 20, maxPendingBytes: 256 << 20 }),
    bridge: { url: NATS_URL, prefix, exports: ['ev'], imports: [], serves: [], forwards: [] },
  });
  await svc.start();
  await svc.engine.bridge!.up;
  tellParent({ type: 'listening' });
  await fromParent('stop');
  const c = svc.engine.bridge!.counters;
  if (c.dropped > 0) process.stderr.write(`bridge bench: the bridge dropped ${c.dropped} messages\n`);
  await svc.destroy();
  process.exit(0);
}

async function runSub(): Promise<void> {
  const nc = await natsConnect({ servers: NATS_URL });
  const hist = new Histogram();
  let measuring = false;
  let count = 0;
  nc.subscribe(`${prefix}.ev`, {
    callback: (_e, m) => {
      if (!measuring) return;
      count += 1;
      if (!paced && (count & 15) !== 0) return;
      const sent = new DataView(m.data.buffer, m.data.byteOffset, 8).getFloat64(0, true);
      hist.record((performance.timeOrigin + performance.now() - sent) * 1e6);
    },
  });
  await nc.flush();
  tellParent({ type: 'ready' });
  await fromParent('measure');
  measuring = true;
  const t0 = performance.now();
  await fromParent('stop');
  const elapsedMs = performance.now() - t0;
  measuring = false;
  tellParent({ type: 'result', count, elapsedMs, counts: hist.counts, max: hist.max } satisfies Result);
  await nc.close();
  process.exit(0);
}

async function runPub(): Promise<void> {
  const path = args.get('path') as Path;
  let publish: (b: Buffer) => void;
  let flush: () => Promise<void>;
  let close: () => Promise<void>;
  if (path === 'direct') {
    const nc = await natsConnect({ servers: NATS_URL });
    publish = (b) => nc.publish(`${prefix}.ev`, b);
    flush = () => nc.flush();
    close = () => nc.close();
  } else {
    const bus = await BusClient.connect({ name: `pub-${process.pid}`, socket, maxOutboundBytes: 64 << 20 });
    publish = (b) => bus.publish('ev', b);
    flush = () => bus.flush();
    close = () => bus.close();
  }
  let running = true;
  process.on('message', (m: BenchMessage) => {
    if (m?.type === 'stop') running = false;
  });
  tellParent({ type: 'ready' });
  await fromParent('go');
  while (running && paced) {
    // About 1,000 msg/s: no queue anywhere, so latency is the path's own.
    const b = Buffer.allocUnsafe(16);
    b.writeDoubleLE(performance.timeOrigin + performance.now(), 0);
    publish(b);
    await delay(1);
  }
  while (running) {
    for (let i = 0; i < 1000; i++) {
      const b = Buffer.allocUnsafe(16);
      b.writeDoubleLE(performance.timeOrigin + performance.now(), 0);
      publish(b);
    }
    await flush();
  }
  await close();
  process.exit(0);
}

async function runPath(
  path: Path,
  own: { prefix: string; socket: string },
  o: { warmupMs: number; durationMs: number; paced: boolean },
): Promise<Row> {
  const common = ['--prefix', own.prefix, '--socket', own.socket, ...(o.paced ? ['--paced', 'true'] : [])];
  const sub = forkRole(SELF, ['--role', 'sub', ...common]);
  const pub = forkRole(SELF, ['--role', 'pub', '--path', path, ...common]);
  try {
    await Promise.all([sub, pub].map((c) => nextMessage(c, 'ready', 30_000)));
    pub.send({ type: 'go' });
    await delay(o.warmupMs);
    const result = nextMessage<Result>(sub, 'result', o.durationMs + 30_000);
    sub.send({ type: 'measure' });
    await delay(o.durationMs);
    sub.send({ type: 'stop' });
    const r = combineRuns([await result]);
    return { rate: r.rate, p50: r.p50, p99: r.p99 };
  } finally {
    await Promise.all([sub, pub].map((c) => stopChild(c)));
  }
}

async function runMain(): Promise<void> {
  const rounds = numberArg(args, 'rounds', 5);
  const warmupMs = numberArg(args, 'warmup', 0.5) * 1000;
  const durationMs = numberArg(args, 'duration', 2) * 1000;
  const dir = mkdtempSync('/tmp/lars-bb-');
  const own = { prefix: `larsbench.${randomBytes(4).toString('hex')}`, socket: join(dir, 'bus.sock') };
  const bus = forkRole(SELF, ['--role', 'bus', '--prefix', own.prefix, '--socket', own.socket]);
  await nextMessage(bus, 'listening', 30_000);
  console.log(
    `bridge bench: ${machineLine()}; ${rounds} rounds x ${warmupMs / 1000} s warm-up + ${durationMs / 1000} s; NATS ${NATS_URL}`,
  );
  const rows: Record<Path, Row[]> = { direct: [], bridged: [] };
  const pacedRows: Record<Path, Row[]> = { direct: [], bridged: [] };
  try {
    for (let round = 0; round < rounds; round++) {
      const order: Path[] = round % 2 === 0 ? ['direct', 'bridged'] : ['bridged', 'direct'];
      for (const path of order) {
        for (const p of [false, true]) {
          const row = await runPath(path, own, { warmupMs, durationMs, paced: p });
          (p ? pacedRows : rows)[path].push(row);
          console.log(
            `round ${round + 1} ${path.padEnd(8)} ${p ? 'paced' : 'flood'} ${Math.round(row.rate).toLocaleString('en-US').padStart(9)} msg/s  p50 ${row.p50.toFixed(0)} us  p99 ${row.p99.toFixed(0)} us`,
          );
        }
      }
    }
  } finally {
    await stopChild(bus);
    rmSync(dir, { recursive: true, force: true });
  }
  const med = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const rateCost = med(rows.direct.map((d, i) => d.rate / rows.bridged[i]!.rate));
  const p50Cost = med(pacedRows.direct.map((d, i) => pacedRows.bridged[i]!.p50 / d.p50));
  console.log(
    '\nmedians over rounds (16 B messages received by a NATS subscriber; flood: batches of 1000 as fast as they go; paced: ~1 per ms; latency publish-to-delivery, us)',
  );
  console.log(
    formatTable(
      ['path', 'flood rate msg/s', 'flood p50 us', 'paced p50 us', 'paced p99 us'],
      (['direct', 'bridged'] as Path[]).map((p) => [
        p,
        Math.round(med(rows[p].map((r) => r.rate))),
        Math.round(med(rows[p].map((r) => r.p50))),
        Math.round(med(pacedRows[p].map((r) => r.p50))),
        Math.round(med(pacedRows[p].map((r) => r.p99))),
      ]),
    ),
  );
  console.log(
    `bridge overhead: rate cost ${rateCost.toFixed(2)}x (direct/bridged flood rate), paced p50 cost ${p50Cost.toFixed(2)}x (target <= 2x): ${rateCost <= 2 && p50Cost <= 2 ? 'MET' : 'NOT MET'}`,
  );
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
