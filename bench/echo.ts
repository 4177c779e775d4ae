/**
 * TCP echo benchmark of the networking core (TcpServer + TcpClient + codecs).
 *
 *   npm run bench:echo                      # all scenarios, 1 s warm-up + 5 s each
 *   node dist/bench/echo.js --duration 10 --warmup 2 --depth 500 --scenario pipelined
 *
 * The server answers each GetHostRequest with the same message (decoded and re-encoded, so the codec
 * is on the path). The server and every client run in their own processes (this file forked with
 * `--role server|client`); the parent only orchestrates and prints the table.
 *
 * Scenarios: lockstep (send, wait for the reply, repeat) over 1 and 2 connections (one client process
 * each), and pipelined (keep `--depth` frames in flight on one connection). Latency is measured per
 * message from send to reply, in the client.
 */
import { fileURLToPath } from 'node:url';
import { Dispatcher, TcpClient, TcpServer, type TcpConnection } from '../src/net/index.js';
import { MsgId } from '../src/protocol/index.js';
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
import { formatTable } from './lib/table.js';

const SELF = fileURLToPath(import.meta.url);
const HOST = '127.0.0.1';
const DEFAULT_DURATION_S = 5;
const DEFAULT_WARMUP_S = 1;
const DEFAULT_DEPTH = 500;
const TARGETS: Record<string, number> = { 'lockstep/1': 25_000, 'pipelined/1': 150_000 };

interface Scenario {
  readonly name: 'lockstep' | 'pipelined';
  readonly connections: number;
  readonly depth: number;
}

interface ClientResult extends BenchMessage {
  type: 'result';
  count: number;
  elapsedMs: number;
  counts: number[];
  max: number;
}

const args = parseArgs(process.argv.slice(2));

switch (args.get('role') ?? 'main') {
  case 'server':
    await runServer();
    break;
  case 'client':
    await runClient();
    break;
  default:
    await runMain();
}

async function runServer(): Promise<void> {
  const dispatcher = new Dispatcher<TcpConnection>().on(MsgId.GetHostRequest, (m, conn) => {
    conn.send(MsgId.GetHostRequest, m);
  });
  const server = new TcpServer({
    host: HOST,
    port: 0,
    maxConnections: 64,
    maxOutboundBytes: 64 << 20,
    dispatcher,
  });
  const { port } = await server.listen();
  tellParent({ type: 'listening', port });
  await fromParent('stop');
  await server.destroy();
  process.exit(0);
}

async function runClient(): Promise<void> {
  const port = numberArg(args, 'port', 0);
  const depth = Math.max(1, numberArg(args, 'depth', 1));
  const warmupMs = numberArg(args, 'warmup', DEFAULT_WARMUP_S) * 1000;
  const durationMs = numberArg(args, 'duration', DEFAULT_DURATION_S) * 1000;

  // Send times of the frames in flight, oldest first (replies come back in order on one connection).
  let size = 1;
  while (size < depth) size *= 2;
  const sentAt = new Float64Array(size);
  const mask = size - 1;
  let head = 0;
  let tail = 0;
  let seq = 0;
  let running = true;
  let measuring = false;
  let count = 0;
  const hist = new Histogram();

  const dispatcher = new Dispatcher<TcpClient>().on(MsgId.GetHostRequest, () => {
    const t0 = sentAt[head & mask]!;
    head += 1;
    if (measuring) {
      hist.record((performance.now() - t0) * 1e6);
      count += 1;
    }
    if (running) send();
  });
  let onConnected!: () => void;
  const connected = new Promise<void>((resolve) => (onConnected = resolve));
  const client = new TcpClient({
    host: HOST,
    port,
    maxQueuedFrames: depth,
    dispatcher,
    onConnect: () => onConnected(),
  });
  function send(): void {
    sentAt[tail & mask] = performance.now();
    tail += 1;
    seq = (seq + 1) >>> 0;
    client.send(MsgId.GetHostRequest, { seq, modid: 1, cmdid: 2 });
  }

  client.start();
  await connected;
  tellParent({ type: 'ready' });
  await fromParent('go');
  for (let i = 0; i < depth; i++) send();
  await delay(warmupMs);
  hist.reset();
  count = 0;
  measuring = true;
  const start = performance.now();
  await delay(durationMs);
  measuring = false;
  running = false;
  const elapsedMs = performance.now() - start;
  tellParent({ type: 'result', count, elapsedMs, counts: hist.counts, max: hist.max } satisfies ClientResult);
  await client.destroy();
  process.exit(0);
}

async function runMain(): Promise<void> {
  const duration = numberArg(args, 'duration', DEFAULT_DURATION_S);
  const warmup = numberArg(args, 'warmup', DEFAULT_WARMUP_S);
  const depth = numberArg(args, 'depth', DEFAULT_DEPTH);
  const only = args.get('scenario');
  const scenarios: Scenario[] = [
    { name: 'lockstep', connections: 1, depth: 1 },
    { name: 'lockstep', connections: 2, depth: 1 },
    { name: 'pipelined', connections: 1, depth },
  ];
  console.log(`echo bench: ${machineLine()}; ${warmup} s warm-up + ${duration} s per scenario`);
  const rows: (string | number)[][] = [];
  const verdicts: string[] = [];
  for (const s of scenarios) {
    if (only !== undefined && only !== s.name) continue;
    const r = await runScenario(s, warmup, duration);
    rows.push([s.name, s.connections, s.depth, r.rate, r.p50, r.p99, r.max]);
    const target = TARGETS[`${s.name}/${s.connections}`];
    if (target !== undefined) {
      verdicts.push(
        `${s.name}, ${s.connections} connection: ${Math.round(r.rate).toLocaleString('en-US')} msgs/s vs target ${target.toLocaleString('en-US')}: ${r.rate >= target ? 'OK' : 'BELOW TARGET'}`,
      );
    }
  }
  console.log(
    formatTable(['scenario', 'connections', 'in flight/conn', 'msgs/s', 'p50 us', 'p99 us', 'max us'], rows),
  );
  for (const v of verdicts) console.log(v);
}

async function runScenario(
  s: Scenario,
  warmup: number,
  duration: number,
): Promise<{ rate: number; p50: number; p99: number; max: number }> {
  const server = forkRole(SELF, ['--role', 'server']);
  const { port } = await nextMessage<BenchMessage & { port: number }>(server, 'listening', 10_000);
  const clientArgs = [
    '--role',
    'client',
    '--port',
    String(port),
    '--depth',
    String(s.depth),
    '--warmup',
    String(warmup),
    '--duration',
    String(duration),
  ];
  const clients = Array.from({ length: s.connections }, () => forkRole(SELF, clientArgs));
  try {
    await Promise.all(clients.map((c) => nextMessage(c, 'ready', 10_000)));
    const results = clients.map((c) =>
      nextMessage<ClientResult>(c, 'result', (warmup + duration) * 1000 + 30_000),
    );
    for (const c of clients) c.send({ type: 'go' });
    return combineRuns(await Promise.all(results));
  } finally {
    await Promise.all(clients.map((c) => stopChild(c)));
    await stopChild(server);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
