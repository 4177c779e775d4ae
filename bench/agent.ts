/**
 * Agent + SDK benchmarks (issue 4). dns, the agent and the clients each run in their own process.
 *
 *   npm run bench:agent
 *   node dist/bench/agent.js --scenario qps|inflight|latency|memory [--duration 5] [--agent-threads N]
 *   taskset -c 0 node dist/bench/agent.js ...     # every process on one core (see bench/RESULTS.md)
 *
 * qps      : get_host + report through the agent, lockstep like the original `qps` tool, with 1 and 2
 *            client processes (targets ≥ 25k req/s and ≥ 35k req/s).
 * inflight : one SDK client keeping many get_host requests in flight (target ≥ 100k get_host/s).
 * latency  : open-loop get_host at a fixed 10k req/s: p50/p99 (target p99 ≤ 1 ms).
 * memory   : agent RSS with 10k routes x 20 hosts cached (target ≤ 150 MB).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentService } from '../src/agent/agent-service.js';
import { ThreadedAgent } from '../src/agent/agent-threads.js';
import { DEFAULT_LOAD_BALANCE_CONFIG } from '../src/agent/lb-config.js';
import { LarsClient } from '../src/api/index.js';
import { DnsService } from '../src/dns/dns-service.js';
import { ipToWire } from '../src/protocol/index.js';
import { openStore } from '../src/store/index.js';
import { seedRoutes } from './lib/cli-services.js';
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
const args = parseArgs(process.argv.slice(2));
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

switch (args.get('role') ?? 'main') {
  case 'dns':
    await runDns();
    break;
  case 'agent':
    await runAgent();
    break;
  case 'client':
    await runClient();
    break;
  default:
    await runMain();
}

async function runDns(): Promise<void> {
  const store = await openStore(args.get('db') as string);
  const dns = new DnsService({
    store,
    host: HOST,
    port: 0,
    maxConnections: 100,
    maxOutboundBytes: 64 << 20,
    pollIntervalMs: 1000,
    reloadIntervalMs: 3_600_000,
    changeRetentionS: 3600,
    register: false,
  });
  const { port } = await dns.start();
  tellParent({ type: 'listening', port });
  await fromParent('stop');
  await dns.destroy();
  await store.close();
  process.exit(0);
}

async function runAgent(): Promise<void> {
  const threads = numberArg(args, 'threads', 1);
  const options = {
    host: HOST,
    ports: [0, 0, 0],
    dns: { host: HOST, port: numberArg(args, 'dns', 0) },
    reporter: undefined,
    lb: DEFAULT_LOAD_BALANCE_CONFIG,
    reportIntervalS: 1,
    cacheDir: undefined,
    callerIp: ipToWire('127.0.0.1'),
  };
  const agent =
    threads > 1 ? new ThreadedAgent({ ...options, threads, logLevel: 'warn' }) : new AgentService(options);
  const { ports } = await agent.start();
  tellParent({ type: 'listening', ports });
  for (;;) {
    const m = await fromParent(['stop', 'memory']);
    if (m.type === 'stop') break;
    (globalThis as { gc?: () => void }).gc?.();
    const mu = process.memoryUsage();
    const h = agent.health();
    tellParent({ type: 'memory', rss: mu.rss, heapUsed: mu.heapUsed, routes: h.routes, hosts: h.hosts });
  }
  await agent.destroy();
  process.exit(0);
}

interface ClientResult extends BenchMessage {
  count: number;
  elapsedMs: number;
  counts: number[];
  errors: number;
}

async function runClient(): Promise<void> {
  const ports = (args.get('ports') as string).split(',').map(Number);
  const mode = args.get('mode') as 'lockstep' | 'inflight' | 'rate' | 'warm';
  const modid = numberArg(args, 'modid', 1);
  const routes = numberArg(args, 'routes', 1);
  const warmupMs = numberArg(args, 'warmup', 1) * 1000;
  const durationMs = numberArg(args, 'duration', 5) * 1000;
  const client = new LarsClient({ host: HOST, ports, timeoutMs: 2000, maxInFlight: 8192 });
  if (mode === 'warm') {
    // Ask for every route once so the agent fetches and caches them all.
    for (let m = 1; m <= routes; m += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, routes - m + 1) }, (_, i) =>
          client.regInit(m + i, 1, { tries: 20, intervalMs: 50 }),
        ),
      );
    }
    tellParent({ type: 'result', count: routes, elapsedMs: 0, counts: [], errors: 0 });
    await client.close();
    process.exit(0);
  }
  await client.regInit(modid, 1);
  for (let m = 1; m <= routes; m++) await client.regInit(m, 1);
  tellParent({ type: 'ready' });
  await fromParent('go');
  const hist = new Histogram();
  let measuring = false;
  let running = true;
  let count = 0;
  let errors = 0;
  const one = async (m: number) => {
    const t0 = performance.now();
    try {
      const a = await client.tryGetHost(m, 1);
      if (a.host && mode === 'lockstep') client.report(m, 1, a.host.ip, a.host.port, 0);
      if (measuring) {
        hist.record((performance.now() - t0) * 1e6);
        count++;
      }
    } catch {
      if (measuring) errors++;
    }
  };
  const loops: Promise<void>[] = [];
  if (mode === 'lockstep') {
    loops.push(
      (async () => {
        while (running) await one(modid);
      })(),
    );
  } else if (mode === 'inflight') {
    const depth = numberArg(args, 'depth', 256);
    let next = 0;
    for (let d = 0; d < depth; d++) {
      loops.push(
        (async () => {
          while (running) await one(1 + (next++ % routes));
        })(),
      );
    }
  } else {
    const rate = numberArg(args, 'rate', 10_000);
    loops.push(
      (async () => {
        const start = performance.now();
        let sent = 0;
        const pending = new Set<Promise<void>>();
        while (running) {
          const due = Math.floor(((performance.now() - start) * rate) / 1000);
          while (sent < due) {
            const p = one(1 + (sent % routes)).finally(() => pending.delete(p));
            pending.add(p);
            sent++;
          }
          await new Promise<void>((r) => setImmediate(r));
        }
        await Promise.all(pending);
      })(),
    );
  }
  await delay(warmupMs);
  hist.reset();
  count = 0;
  errors = 0;
  measuring = true;
  const t0 = performance.now();
  await delay(durationMs);
  measuring = false;
  const elapsedMs = performance.now() - t0;
  running = false;
  await Promise.all(loops);
  tellParent({ type: 'result', count, elapsedMs, counts: hist.counts, errors } satisfies ClientResult);
  await client.close();
  process.exit(0);
}

async function stack(routes: number, hosts: number, agentFlags: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'lars-bench-agent-'));
  const url = `sqlite:${join(dir, 'lars.db')}`;
  await seedRoutes(url, routes, hosts);
  const dns = forkRole(SELF, ['--role', 'dns', '--db', url]);
  const { port } = await nextMessage<BenchMessage & { port: number }>(dns, 'listening', 60_000);
  const agent = forkRole(SELF, [
    '--role',
    'agent',
    '--dns',
    String(port),
    '--threads',
    String(numberArg(args, 'agent-threads', 1)),
    ...agentFlags,
  ]);
  const { ports } = await nextMessage<BenchMessage & { ports: number[] }>(agent, 'listening', 60_000);
  return {
    agent,
    ports,
    async stop() {
      await stopChild(agent);
      await stopChild(dns);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function clients(ports: number[], specs: string[][], warmup: number, duration: number) {
  const procs = specs.map((s) =>
    forkRole(SELF, [
      '--role',
      'client',
      '--ports',
      ports.join(','),
      '--warmup',
      String(warmup),
      '--duration',
      String(duration),
      ...s,
    ]),
  );
  try {
    await Promise.all(procs.map((p) => nextMessage(p, 'ready', 60_000)));
    const results = procs.map((p) =>
      nextMessage<ClientResult>(p, 'result', (warmup + duration) * 1000 + 60_000),
    );
    for (const p of procs) p.send({ type: 'go' });
    const done = await Promise.all(results);
    return { ...combineRuns(done), errors: done.reduce((n, r) => n + r.errors, 0) };
  } finally {
    await Promise.all(procs.map((p) => stopChild(p)));
  }
}

async function runMain(): Promise<void> {
  const duration = numberArg(args, 'duration', 5);
  const warmup = numberArg(args, 'warmup', 1);
  const only = args.get('scenario');
  console.log(
    `agent bench: ${machineLine()}; agent threads ${numberArg(args, 'agent-threads', 1)}; ${warmup} s warm-up + ${duration} s per scenario`,
  );
  const rows: (string | number)[][] = [];
  if (!only || only === 'qps' || only === 'inflight' || only === 'latency') {
    const s = await stack(10, 10);
    try {
      if (!only || only === 'qps') {
        for (const n of [1, 2]) {
          const r = await clients(
            s.ports,
            Array.from({ length: n }, (_, i) => ['--mode', 'lockstep', '--modid', String(i + 1)]),
            warmup,
            duration,
          );
          rows.push([
            `qps lockstep get_host+report`,
            `${n} client process${n > 1 ? 'es' : ''}`,
            r.rate,
            r.p50,
            r.p99,
            r.errors,
          ]);
        }
      }
      if (!only || only === 'inflight') {
        const r = await clients(
          s.ports,
          [['--mode', 'inflight', '--depth', '256', '--routes', '10']],
          warmup,
          duration,
        );
        rows.push(['SDK get_host, 256 in flight', '1 client process', r.rate, r.p50, r.p99, r.errors]);
      }
      if (!only || only === 'latency') {
        const r = await clients(
          s.ports,
          [['--mode', 'rate', '--rate', '10000', '--routes', '10']],
          warmup,
          duration,
        );
        rows.push(['SDK get_host at 10k req/s', '1 client process', r.rate, r.p50, r.p99, r.errors]);
      }
    } finally {
      await s.stop();
    }
    console.log(formatTable(['scenario', 'clients', 'req/s', 'p50 us', 'p99 us', 'errors'], rows));
  }
  if (!only || only === 'memory') {
    const routes = numberArg(args, 'routes', 10_000);
    const hosts = numberArg(args, 'hosts', 20);
    const s = await stack(routes, hosts);
    try {
      const warm = forkRole(SELF, [
        '--role',
        'client',
        '--ports',
        s.ports.join(','),
        '--mode',
        'warm',
        '--routes',
        String(routes),
      ]);
      await nextMessage(warm, 'result', 300_000);
      await stopChild(warm);
      s.agent.send({ type: 'memory' });
      const m = await nextMessage<
        BenchMessage & { rss: number; heapUsed: number; routes: number; hosts: number }
      >(s.agent, 'memory', 30_000);
      console.log(
        formatTable(
          ['agent cache', 'routes', 'hosts', 'RSS MB', 'heap used MB'],
          [[`${routes} x ${hosts}`, m.routes, m.hosts, m.rss / 2 ** 20, m.heapUsed / 2 ** 20]],
        ),
      );
    } finally {
      await s.stop();
    }
  }
}
