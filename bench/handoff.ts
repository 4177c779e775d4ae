/**
 * dns under many agent connections: shared listening socket vs. handoff by the master (issue 7).
 *
 *   npm run build && node dist/bench/handoff.js                   # 1000 connections, 1 s + 5 s each
 *   node dist/bench/handoff.js --connections 1000 --duration 5 --modes shared,handoff,rr
 *
 * For each mode a real `lars up` (compiled CLI, 2 dns workers, no agent/reporter/console) runs on a
 * temporary data directory with the demo routes; a client process (this file, `--role client`)
 * opens the connections, each from its own loopback source address (127.0.x.y) as agents on
 * separate hosts would, then:
 *
 * - steady: every connection does GetRoute(1, 1) in lockstep (send, wait for the answer, repeat);
 *   reports answers/s and latency percentiles, how long it took until every connection had its
 *   first answer (connect storm), and how the connections spread over the workers.
 * - churn: `--churn` loops each connect, ask once, close, repeat (reconnect storms after a dns
 *   restart); reports connections/s and the latency of connect + answer.
 *
 * Modes: shared = every worker accepts on the shared socket (node:cluster SCHED_NONE); handoff =
 * the master accepts and passes each socket to the worker picked by a hash of the peer address;
 * rr = node:cluster's own round-robin (the master accepts, no key), for reference.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlPaths, controlRequest } from '../src/supervisor/control.js';
import type { StatusSnapshot } from '../src/supervisor/status.js';
import { numberArg, parseArgs } from './lib/args.js';
import { Histogram } from './lib/histogram.js';
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
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const HOST = '127.0.0.1';
const DEFAULT_CONNECTIONS = 1_000;
const DEFAULT_CHURN = 200;
const DEFAULT_DURATION_S = 5;
const DEFAULT_WARMUP_S = 1;
const DEFAULT_WORKERS = 2;

type Mode = 'shared' | 'handoff' | 'rr';
type Scenario = 'steady' | 'churn';

interface ClientResult extends BenchMessage {
  type: 'result';
  count: number;
  elapsedMs: number;
  connectMs: number;
  errors: number;
  counts: number[];
  max: number;
}

const args = parseArgs(process.argv.slice(2));
if (args.get('role') === 'client') await runClient();
else await runMain();

/** A GetRouteRequest frame for (1, 1), built once. */
function requestFrame(): Buffer {
  const body = Buffer.from([0x08, 0x01, 0x10, 0x01]);
  const frame = Buffer.alloc(8 + body.length);
  frame.writeInt32LE(1, 0);
  frame.writeInt32LE(body.length, 4);
  body.copy(frame, 8);
  return frame;
}

/** A distinct loopback source address per agent: 127.0.x.y, x and y in 1..250. */
function sourceAddress(i: number): string {
  return `127.0.${1 + (Math.floor(i / 250) % 250)}.${1 + (i % 250)}`;
}

/** Calls `onFrame` per complete frame on the socket (frames are small; one chunk usually holds one). */
function onFrames(socket: Socket, onFrame: () => void): void {
  let buf: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    while (buf.length >= 8) {
      const len = buf.readInt32LE(4);
      if (buf.length < 8 + len) break;
      buf = buf.subarray(8 + len);
      onFrame();
    }
  });
}

async function runClient(): Promise<void> {
  const port = numberArg(args, 'port', 0);
  const scenario = (args.get('scenario') ?? 'steady') as Scenario;
  const n = numberArg(args, 'connections', DEFAULT_CONNECTIONS);
  const warmupMs = numberArg(args, 'warmup', DEFAULT_WARMUP_S) * 1000;
  const durationMs = numberArg(args, 'duration', DEFAULT_DURATION_S) * 1000;
  const frame = requestFrame();
  const hist = new Histogram();
  let measuring = false;
  let running = true;
  let count = 0;
  let errors = 0;

  if (scenario === 'steady') {
    // Connected = the first answer arrived (in handoff mode the master passes sockets one at a
    // time, so a socket can be connected in the kernel long before a worker serves it).
    const t0 = performance.now();
    let lockstep = false;
    let firstAnswers = 0;
    let allAnswered!: () => void;
    const served = new Promise<void>((resolve) => (allAnswered = resolve));
    const sockets = Array.from({ length: n }, (_, i) => {
      const s = connect({ host: HOST, port, localAddress: sourceAddress(i) }, () => s.write(frame));
      s.setNoDelay(true);
      let sentAt = 0;
      s.on('error', () => errors++);
      onFrames(s, () => {
        if (!lockstep) {
          if (++firstAnswers === n) allAnswered();
          return;
        }
        if (measuring) {
          hist.record((performance.now() - sentAt) * 1e6);
          count++;
        }
        if (!running) return;
        sentAt = performance.now();
        s.write(frame);
      });
      return { s, start: () => ((sentAt = performance.now()), s.write(frame)) };
    });
    await served;
    const connectMs = performance.now() - t0;
    tellParent({ type: 'ready', connectMs });
    await fromParent('go');
    lockstep = true;
    for (const c of sockets) c.start();
    const result = await measure(warmupMs, durationMs, () => {
      hist.reset();
      count = 0;
      measuring = true;
    });
    measuring = false;
    running = false;
    tellParent({
      type: 'result',
      count,
      elapsedMs: result,
      connectMs,
      errors,
      counts: hist.counts,
      max: hist.max,
    } satisfies ClientResult);
    for (const c of sockets) c.s.destroy();
    process.exit(0);
  }

  // churn: `n` loops of connect, one GetRoute, close.
  tellParent({ type: 'ready', connectMs: 0 });
  await fromParent('go');
  const loop = (i: number): void => {
    if (!running) return;
    const started = performance.now();
    const s = connect({ host: HOST, port, localAddress: sourceAddress(i) }, () => s.write(frame));
    s.setNoDelay(true);
    let answered = false;
    s.on('error', () => {
      if (!answered && running) errors++;
    });
    onFrames(s, () => {
      answered = true;
      if (measuring) {
        hist.record((performance.now() - started) * 1e6);
        count++;
      }
      s.destroy();
    });
    s.on('close', () => setImmediate(loop, (i + n) % 65_000));
  };
  for (let i = 0; i < n; i++) loop(i);
  const elapsed = await measure(warmupMs, durationMs, () => {
    hist.reset();
    count = 0;
    errors = 0;
    measuring = true;
  });
  measuring = false;
  running = false;
  tellParent({
    type: 'result',
    count,
    elapsedMs: elapsed,
    connectMs: 0,
    errors,
    counts: hist.counts,
    max: hist.max,
  } satisfies ClientResult);
  process.exit(0);
}

async function measure(warmupMs: number, durationMs: number, begin: () => void): Promise<number> {
  await delay(warmupMs);
  begin();
  const start = performance.now();
  await delay(durationMs);
  return performance.now() - start;
}

async function runMain(): Promise<void> {
  const duration = numberArg(args, 'duration', DEFAULT_DURATION_S);
  const warmup = numberArg(args, 'warmup', DEFAULT_WARMUP_S);
  const connections = numberArg(args, 'connections', DEFAULT_CONNECTIONS);
  const churn = numberArg(args, 'churn', DEFAULT_CHURN);
  const workers = numberArg(args, 'workers', DEFAULT_WORKERS);
  const modes = (args.get('modes') ?? 'shared,handoff,rr').split(',') as Mode[];
  const scenarios = (args.get('scenarios') ?? 'steady,churn').split(',') as Scenario[];
  console.log(
    `handoff bench: ${machineLine()}; ${workers} dns workers; ${warmup} s warm-up + ${duration} s per run`,
  );
  const rows: (string | number)[][] = [];
  for (const scenario of scenarios) {
    for (const mode of modes) {
      const stack = await startStack(mode, workers);
      try {
        const conns = scenario === 'steady' ? connections : churn;
        const client = forkRole(SELF, [
          '--role',
          'client',
          '--port',
          String(stack.port),
          '--scenario',
          scenario,
          '--connections',
          String(conns),
          '--warmup',
          String(warmup),
          '--duration',
          String(duration),
        ]);
        try {
          const ready = await nextMessage<BenchMessage & { connectMs: number }>(client, 'ready', 60_000);
          const spread = scenario === 'steady' ? await connectionSpread(stack.dataDir) : '-';
          const result = nextMessage<ClientResult>(client, 'result', (warmup + duration) * 1000 + 60_000);
          client.send({ type: 'go' });
          const r = await result;
          const hist = new Histogram(r.counts);
          rows.push([
            scenario,
            mode,
            conns,
            (r.count / r.elapsedMs) * 1000,
            hist.percentile(50) / 1000,
            hist.percentile(99) / 1000,
            r.max / 1000,
            scenario === 'steady' ? ready.connectMs : '-',
            spread,
            r.errors,
          ]);
        } finally {
          await stopChild(client);
        }
      } finally {
        await stack.stop();
      }
    }
  }
  console.log(
    formatTable(
      [
        'scenario',
        'mode',
        'connections',
        'answers/s',
        'p50 us',
        'p99 us',
        'max us',
        'all served ms',
        'conns per worker',
        'errors',
      ],
      rows,
    ),
  );
}

interface BenchStack {
  port: number;
  dataDir: string;
  stop(): Promise<void>;
}

async function startStack(mode: Mode, workers: number): Promise<BenchStack> {
  const dir = mkdtempSync(join(tmpdir(), 'lars-handoff-bench-'));
  const dataDir = join(dir, 'data');
  const config = join(dir, 'lars.ini');
  writeFileSync(
    config,
    [
      '[dnsserver]',
      'port = 0',
      '[reactor]',
      // Room for every bench connection on one worker, whatever the spread.
      'maxConn = 100000',
      '[supervisor]',
      `dns_workers = ${workers}`,
      `dns_handoff = ${mode === 'handoff'}`,
      'agent_workers = 0',
      'reporter_workers = 0',
      'web_workers = 0',
      '',
    ].join('\n'),
  );
  const env = { ...process.env, LARS_LOG_LEVEL: 'warn' } as NodeJS.ProcessEnv;
  if (mode === 'rr') env.NODE_CLUSTER_SCHED_POLICY = 'rr';
  else delete env.NODE_CLUSTER_SCHED_POLICY;
  const child: ChildProcess = spawn(
    process.execPath,
    [CLI, 'up', '--data-dir', dataDir, '--config', config, '--demo'],
    {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('Lars is up')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`lars up exited (${code}): ${out}`)));
  });
  child.stdout!.resume();
  const status = await masterStatus(dataDir, false);
  const port = status.services.find((s) => s.name === 'dns')!.listen[0]!.port;
  return {
    port,
    dataDir,
    async stop() {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function masterStatus(dataDir: string, health: boolean): Promise<StatusSnapshot> {
  const reply = await controlRequest(controlPaths(dataDir).socket, { cmd: 'status', health }, 10_000);
  if (!reply.ok || !reply.status) throw new Error(`status: ${JSON.stringify(reply)}`);
  return reply.status;
}

/** Open connections per dns worker, from each worker's /healthz. */
async function connectionSpread(dataDir: string): Promise<string> {
  const s = await masterStatus(dataDir, true);
  const dns = s.services.find((x) => x.name === 'dns')!;
  return dns.processes.map((p) => String(p.health?.detail?.connections ?? '?')).join('/');
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
