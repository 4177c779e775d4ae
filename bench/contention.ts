/**
 * The agent on a busy host (issue 17): the real `lars agent` and the minimal C responder
 * (bench/c/udp_responder.c), each driven by the C lockstep client (bench/c/qps_client.c, like the
 * original `qps`), with N busy-loop processes (`sh -c 'while :; do :; done'`) beside them.
 * Interleaved: every round runs every N, and within it both targets (order alternating), so a
 * change in the machine's other load hits both alike. Per target and N: median rate over the
 * rounds, its ratio to the same target's idle rate, and the agent's CPU share and context switches.
 *
 *   npm run bench:contention
 *   node dist/bench/contention.js [--loops 0,2,4,8] [--rounds 3] [--duration 3] [--threads 1]
 *                                 [--agent-threads 1] [--node-flags="--max-semi-space-size=1"]
 *                                 [--generic false]
 *
 * A second agent with `[agent] hot_path = false` runs beside the first (interleaved like the rest)
 * unless --generic false.
 *
 * Target: with 4 busy loops the agent keeps >= 70 % of its idle rate, and its loaded/idle ratio is
 * no worse than the C responder's in the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { LarsClient } from '../src/api/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { buildCTools, runCClient, startCResponder, type QpsResult } from './lib/c-yardstick.js';
import { startCliServices, stopProcess } from './lib/cli-services.js';
import { median, procDelta, sampleProc } from './lib/proc-stat.js';
import { machineLine } from './lib/proc.js';
import { freeUdpPorts } from './lib/stack.js';
import { formatTable } from './lib/table.js';
import { uptime } from './lib/uptime.js';
import { LEAN_NODE_FLAGS } from '../src/supervisor/services.js';

const HOST = '127.0.0.1';
const args = parseArgs(process.argv.slice(2));
const loopCounts = (args.get('loops') ?? '0,2,4,8').split(',').map(Number);
const rounds = numberArg(args, 'rounds', 3);
const duration = numberArg(args, 'duration', 3);
const threads = numberArg(args, 'threads', 1);
const agentThreads = numberArg(args, 'agent-threads', 1);
/** Default: the flags `lars up` starts the agent with (LEAN_NODE_FLAGS). */
const nodeFlags = (args.get('node-flags') ?? LEAN_NODE_FLAGS.join(' ')).split(' ').filter(Boolean);
/** Also run an agent with `[agent] hot_path = false`, to show what the hot path changes. */
const withGeneric = args.get('generic') !== 'false';

type Target = 'agent' | 'agent (generic path)' | 'C responder';
const TARGETS: readonly Target[] = ['agent', 'agent (generic path)', 'C responder'];
interface Run {
  target: Target;
  loops: number;
  result: QpsResult;
  cpu: number;
  involuntaryPerS: number;
  voluntaryPerS: number;
}

function busyLoops(n: number): ChildProcess[] {
  return Array.from({ length: n }, () => spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map((c) => stopProcess(c, 1_000)));
}

async function main(): Promise<void> {
  const tools = buildCTools();
  console.log(machineLine());
  console.log(`load before: ${uptime()}`);
  const services = await startCliServices({
    routes: Math.max(8, threads),
    hosts: 10,
    agentFlags: ['--threads', String(agentThreads)],
    nodeFlags,
  });
  const generic = withGeneric
    ? await startCliServices({
        routes: Math.max(8, threads),
        hosts: 10,
        agentFlags: ['--threads', String(agentThreads)],
        nodeFlags,
        env: { LARS_AGENT_HOT_PATH: 'false' },
      })
    : undefined;
  const responderPorts = await freeUdpPorts(3);
  const responder = await startCResponder(tools, HOST, responderPorts);
  const loopsAlive: ChildProcess[] = [];
  try {
    // The agent fetches each route on its first request: ask for them all before measuring.
    for (const s of [services, generic]) {
      if (!s) continue;
      const sdk = new LarsClient({ host: HOST, ports: s.agentPorts, timeoutMs: 2_000 });
      for (let m = 1; m <= threads; m++) await sdk.regInit(m, 1, { tries: 40, intervalMs: 50 });
      await sdk.close();
      // Warm-up: the agent's JIT and the C tools' caches, not measured.
      await runCClient(tools, { host: HOST, ports: s.agentPorts, threads, seconds: 2 });
    }
    const where = (t: Target): { pid: number; ports: number[] } =>
      t === 'agent'
        ? { pid: services.agent.pid!, ports: services.agentPorts }
        : t === 'C responder'
          ? { pid: responder.pid!, ports: responderPorts }
          : { pid: generic!.agent.pid!, ports: generic!.agentPorts };
    const targets = TARGETS.filter((t) => withGeneric || t !== 'agent (generic path)');
    const runs: Run[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const n of r % 2 === 0 ? loopCounts : [...loopCounts].reverse()) {
        const loops = busyLoops(n);
        loopsAlive.push(...loops);
        // Rotate the order of the targets from one run to the next.
        const k = (r + loopCounts.indexOf(n)) % targets.length;
        for (const target of [...targets.slice(k), ...targets.slice(0, k)]) {
          const { pid, ports } = where(target);
          const before = sampleProc(pid);
          const result = await runCClient(tools, { host: HOST, ports, threads, seconds: duration });
          const d = procDelta(before, sampleProc(pid));
          runs.push({ target, loops: n, result, ...d });
          console.log(
            `round ${r + 1} loops ${n} ${target.padEnd(11)} ${String(result.rate).padStart(7)}/s p50 ${result.p50_us} µs p99 ${result.p99_us} µs cpu ${(d.cpu * 100).toFixed(0)} % invol ${Math.round(d.involuntaryPerS)}/s`,
          );
        }
        await stopAll(loops);
        loopsAlive.length = 0;
      }
    }
    report(runs);
  } finally {
    await stopAll(loopsAlive);
    await stopProcess(responder, 1_000);
    await services.stop();
    await generic?.stop();
  }
  console.log(`load after: ${uptime()}`);
}

function report(runs: Run[]): void {
  const rows: Array<Array<string | number>> = [];
  const idle = (t: Target): number =>
    median(runs.filter((x) => x.target === t && x.loops === 0).map((x) => x.result.rate));
  const ratios = new Map<string, number>();
  for (const n of loopCounts) {
    for (const t of TARGETS) {
      const rs = runs.filter((x) => x.target === t && x.loops === n);
      if (rs.length === 0) continue;
      const rate = median(rs.map((x) => x.result.rate));
      const ratio = rate / idle(t);
      ratios.set(`${t}:${n}`, ratio);
      rows.push([
        n,
        t,
        rs.map((x) => Math.round(x.result.rate / 100) / 10 + 'k').join(', '),
        rate,
        `${(ratio * 100).toFixed(0)} %`,
        median(rs.map((x) => x.result.p50_us)),
        median(rs.map((x) => x.result.p99_us)),
        `${(median(rs.map((x) => x.cpu)) * 100).toFixed(0)} %`,
        median(rs.map((x) => x.involuntaryPerS)),
        median(rs.map((x) => x.voluntaryPerS)),
      ]);
    }
  }
  console.log(
    `\n${threads} client thread(s), ${duration} s per run, ${rounds} interleaved rounds; agent threads ${agentThreads}${nodeFlags.length ? `, node flags ${nodeFlags.join(' ')}` : ''}`,
  );
  console.log(
    formatTable(
      [
        'busy loops',
        'target',
        'calls/s per round',
        'median calls/s',
        'of idle',
        'p50 µs',
        'p99 µs',
        'CPU',
        'invol. cs/s',
        'vol. cs/s',
      ],
      rows,
    ),
  );
  for (const n of loopCounts.filter((x) => x > 0)) {
    const a = ratios.get(`agent:${n}`)!;
    const g = ratios.get(`agent (generic path):${n}`);
    const c = ratios.get(`C responder:${n}`)!;
    console.log(
      `${n} loops: agent keeps ${(a * 100).toFixed(0)} % of its idle rate${g !== undefined ? ` (generic path ${(g * 100).toFixed(0)} %)` : ''}, C responder ${(c * 100).toFixed(0)} %; agent/C ${(a / c).toFixed(2)}`,
    );
  }
}

await main();
process.exit(0);
