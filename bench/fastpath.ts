/**
 * SDK fast path through shared memory vs UDP to the same agent (issue 18).
 *
 *   npm run bench:fastpath
 *   node dist/bench/fastpath.js [--rounds 3] [--duration 3] [--busy 4] [--ejections 20]
 *
 * The agent runs in its own process with its fast path on; each measurement forks a fresh client
 * process that does get_host + report in lockstep on a 10-host route, `--duration` seconds counting
 * calls (no clock read per call), then half as long timing every call for p50/p99. Fast path and UDP
 * alternate within each round, idle and with `--busy` busy-loop processes beside them.
 *
 * Ejection: a client reports 10 consecutive failures of one host (contin_err_limit) and then asks
 * for hosts until that host no longer comes up outside probe slots; the time from the 10th failure
 * to that point, fast path vs UDP (where the next request queues behind the failures).
 */
import { fileURLToPath } from 'node:url';
import { loadavg } from 'node:os';
import { AgentService } from '../src/agent/agent-service.js';
import { DEFAULT_LOAD_BALANCE_CONFIG } from '../src/agent/lb-config.js';
import { LarsClient } from '../src/api/index.js';
import { ipToWire } from '../src/protocol/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { Histogram } from './lib/histogram.js';
import {
  forkRole,
  runBusyLoop,
  fromParent,
  machineLine,
  nextMessage,
  stopChild,
  tellParent,
  type BenchMessage,
} from './lib/proc.js';
import { formatTable } from './lib/table.js';

const SELF = fileURLToPath(import.meta.url);
const args = parseArgs(process.argv.slice(2));
const ROUTE = { modid: 1, cmdid: 1 };
const EJECT_MODID = 100;

switch (args.get('role') ?? 'main') {
  case 'agent':
    await runAgent();
    break;
  case 'client':
    await runClient();
    break;
  case 'eject':
    await runEject();
    break;
  case 'busy':
    runBusyLoop();
    break;
  default:
    await runMain();
}

async function runAgent(): Promise<void> {
  const ejections = numberArg(args, 'ejections', 20);
  const agent = new AgentService({
    host: '127.0.0.1',
    ports: [0, 0, 0],
    // No dns: the routes are seeded (served, marked stale, pulls fail quietly).
    dns: { host: '127.0.0.1', port: 1 },
    reporter: undefined,
    lb: { ...DEFAULT_LOAD_BALANCE_CONFIG, overloadTimeoutS: 3600, idleTimeoutS: 3600 },
    reportIntervalS: 1,
    cacheDir: undefined,
    callerIp: ipToWire('127.0.0.1'),
    fastPath: {},
  });
  const { ports } = await agent.start();
  const hosts = (n: number, base: number) =>
    Array.from({ length: n }, (_, i) => ({ ip: ipToWire(`10.0.${base}.${i + 1}`), port: 9000 + i }));
  agent.seed([{ ...ROUTE, hosts: hosts(10, 0) }]);
  // Ejection routes: one per measurement and mode (a host once ejected stays so).
  for (let i = 0; i < 2 * ejections; i++)
    agent.seed([{ modid: EJECT_MODID + i, cmdid: 1, hosts: hosts(3, 1) }]);
  tellParent({ type: 'listening', ports });
  await fromParent('stop');
  await agent.close();
  process.exit(0);
}

async function warm(c: LarsClient, fast: boolean, modid: number, cmdid: number): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    const a = await c.tryGetHost(modid, cmdid);
    const s = c.fastPathStatus() as { getHost?: number };
    if (a.host && (!fast || (s.getHost ?? 0) > 0)) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`route ${modid}:${cmdid} not served ${fast ? 'from shared memory' : 'over UDP'}`);
}

async function runClient(): Promise<void> {
  const ports = JSON.parse(args.get('ports') as string) as number[];
  const fast = args.get('mode') === 'fast';
  const seconds = numberArg(args, 'duration', 3);
  const c = new LarsClient({ ports, fastPath: fast ? 'require' : 'off' });
  await warm(c, fast, ROUTE.modid, ROUTE.cmdid);
  const { modid, cmdid } = ROUTE;
  // Throughput: no clock read per call (one costs ~150 ns on this VM).
  const run = async (ms: number): Promise<{ calls: number; elapsed: number }> => {
    const start = performance.now();
    const until = start + ms;
    let calls = 0;
    for (;;) {
      for (let i = 0; i < 256; i++) {
        const h = await c.getHost(modid, cmdid);
        c.report(modid, cmdid, h.ip, h.port, 0);
      }
      calls += 256;
      const now = performance.now();
      if (now >= until) return { calls, elapsed: now - start };
    }
  };
  await run(300); // JIT warm-up
  const { calls, elapsed } = await run(seconds * 1000);
  // Latency: every call timed (ns).
  const hist = new Histogram();
  const until = performance.now() + (seconds * 1000) / 2;
  for (let t0 = performance.now(); t0 < until;) {
    const h = await c.getHost(modid, cmdid);
    c.report(modid, cmdid, h.ip, h.port, 0);
    const t1 = performance.now();
    hist.record((t1 - t0) * 1e6);
    t0 = t1;
  }
  const status = c.fastPathStatus() as { fallbacks?: Record<string, number> };
  await c.close();
  tellParent({
    type: 'result',
    rate: (calls / elapsed) * 1000,
    counts: hist.counts,
    fallbacks: status.fallbacks ?? {},
  });
  process.exit(0);
}

async function runEject(): Promise<void> {
  const ports = JSON.parse(args.get('ports') as string) as number[];
  const fast = args.get('mode') === 'fast';
  const first = numberArg(args, 'first', EJECT_MODID);
  const count = numberArg(args, 'count', 20);
  const c = new LarsClient({ ports, fastPath: fast ? 'require' : 'off' });
  const times: number[] = [];
  for (let k = 0; k < count; k++) {
    const modid = first + k;
    await warm(c, fast, modid, 1);
    const victim = await c.getHost(modid, 1);
    for (let i = 0; i < 10; i++) c.report(modid, 1, victim.ip, victim.port, 1);
    const t0 = performance.now();
    // Ejected once 9 picks in a row (fewer than probe_num) avoid the victim.
    for (let clean = 0; clean < 9;) {
      const h = await c.getHost(modid, 1);
      clean = h.ip === victim.ip && h.port === victim.port ? 0 : clean + 1;
    }
    times.push((performance.now() - t0) * 1000);
  }
  await c.close();
  tellParent({ type: 'result', times });
  process.exit(0);
}

interface ClientResult extends BenchMessage {
  rate: number;
  counts: number[];
  fallbacks: Record<string, number>;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function runMain(): Promise<void> {
  const rounds = numberArg(args, 'rounds', 3);
  const duration = numberArg(args, 'duration', 3);
  const busyCount = numberArg(args, 'busy', 4);
  const ejections = numberArg(args, 'ejections', 20);
  console.log(machineLine());
  console.log(
    `load average before: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const agent = forkRole(SELF, ['--role', 'agent', '--ejections', String(ejections)]);
  const { ports } = await nextMessage<BenchMessage & { ports: number[] }>(agent, 'listening', 30_000);
  const portArg = JSON.stringify(ports);

  const rows: Array<Array<string | number>> = [];
  const rates: Record<string, number[]> = {};
  const p99s: Record<string, number[]> = {};
  for (const busy of rounds > 0 ? [0, busyCount] : []) {
    const loops = Array.from({ length: busy }, () => forkRole(SELF, ['--role', 'busy']));
    const load = busy === 0 ? 'idle' : `${busy} busy loops`;
    for (let r = 1; r <= rounds; r++) {
      // Alternate which goes first, so neither always runs on a fresher machine.
      const order = r % 2 === 1 ? ['fast', 'udp'] : ['udp', 'fast'];
      for (const mode of order) {
        const child = forkRole(SELF, [
          '--role',
          'client',
          '--mode',
          mode,
          '--ports',
          portArg,
          '--duration',
          String(duration),
        ]);
        const res = await nextMessage<ClientResult>(child, 'result', 120_000);
        const hist = new Histogram(res.counts);
        const key = `${load}/${mode}`;
        (rates[key] ??= []).push(res.rate);
        (p99s[key] ??= []).push(hist.percentile(99) / 1000);
        const fb = Object.entries(res.fallbacks)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ');
        rows.push([
          load,
          mode === 'fast' ? 'fast path' : 'UDP',
          r,
          res.rate,
          hist.percentile(50) / 1000,
          hist.percentile(99) / 1000,
          fb || '-',
        ]);
      }
    }
    for (const l of loops) l.kill('SIGKILL');
  }
  if (rounds > 0) printThroughput(rows, rates, p99s, busyCount);

  if (ejections > 0) {
    const ej: Array<Array<string | number>> = [];
    for (const [i, mode] of ['fast', 'udp'].entries()) {
      const child = forkRole(SELF, [
        '--role',
        'eject',
        '--mode',
        mode,
        '--ports',
        portArg,
        '--first',
        String(EJECT_MODID + i * ejections),
        '--count',
        String(ejections),
      ]);
      const { times } = await nextMessage<BenchMessage & { times: number[] }>(child, 'result', 120_000);
      const h = new Histogram();
      for (const t of times) h.record(t);
      ej.push([mode === 'fast' ? 'fast path' : 'UDP', times.length, h.percentile(50) / 1000, h.max / 1000]);
    }
    console.log('\nejection: 10th consecutive failure reported -> host no longer picked (idle)');
    console.log(formatTable(['path', 'hosts', 'p50 ms', 'max ms'], ej));
  }
  console.log(
    `load average after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  await stopChild(agent);
}

function printThroughput(
  rows: Array<Array<string | number>>,
  rates: Record<string, number[]>,
  p99s: Record<string, number[]>,
  busyCount: number,
): void {
  console.log(formatTable(['load', 'path', 'round', 'calls/s', 'p50 µs', 'p99 µs', 'fallbacks'], rows));
  const summary: Array<Array<string | number>> = [];
  for (const load of ['idle', `${busyCount} busy loops`]) {
    const f = median(rates[`${load}/fast`] ?? [0]);
    const u = median(rates[`${load}/udp`] ?? [0]);
    summary.push([load, f, u, `${(f / u).toFixed(0)}x`, median(p99s[`${load}/fast`] ?? [0])]);
  }
  console.log('\nmedians over rounds');
  console.log(formatTable(['load', 'fast calls/s', 'UDP calls/s', 'fast / UDP', 'fast p99 µs'], summary));
  const idleFast = median(rates['idle/fast'] ?? [0]);
  const busyFast = median(rates[`${busyCount} busy loops/fast`] ?? [0]);
  console.log(
    `fast path with ${busyCount} busy loops: ${((busyFast / idleFast) * 100).toFixed(0)} % of its idle rate`,
  );
}
