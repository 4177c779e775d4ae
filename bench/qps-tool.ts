/**
 * `lars test qps` against the C yardstick (issue 17): both drive the same real `lars agent` in
 * lockstep (get_host + report), interleaved, several rounds, with 1 and 2 client threads. Target:
 * `lars test qps` at least as fast as the C client, at full rate from the first second.
 *
 *   npm run bench:qps
 *   node dist/bench/qps-tool.js [--rounds 3] [--duration 3] [--threads 1,2]
 */
import { spawn } from 'node:child_process';
import type { QpsSummary } from '../src/cli/qps-load.js';
import { LarsClient } from '../src/api/index.js';
import { LEAN_NODE_FLAGS } from '../src/supervisor/services.js';
import { numberArg, parseArgs } from './lib/args.js';
import { buildCTools, runCClient } from './lib/c-yardstick.js';
import { startCliServices } from './lib/cli-services.js';
import { median } from './lib/proc-stat.js';
import { machineLine } from './lib/proc.js';
import { CLI } from './lib/stack.js';
import { formatTable } from './lib/table.js';
import { uptime } from './lib/uptime.js';

const HOST = '127.0.0.1';
const args = parseArgs(process.argv.slice(2));
const rounds = numberArg(args, 'rounds', 3);
const duration = numberArg(args, 'duration', 3);
const threadCounts = (args.get('threads') ?? '1,2').split(',').map(Number);

interface Run {
  tool: 'C client' | 'lars test qps';
  threads: number;
  rate: number;
  first: number;
  p50: number;
  p99: number;
}

function larsQps(ports: readonly number[], threads: number): Promise<QpsSummary> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        CLI,
        'test',
        'qps',
        String(threads),
        '--ports',
        ports.join(','),
        '--duration',
        String(duration),
        '--json',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out) as QpsSummary) : reject(new Error(`lars test qps exited ${code}`)),
    );
  });
}

async function main(): Promise<void> {
  const tools = buildCTools();
  console.log(machineLine());
  console.log(`load before: ${uptime()}`);
  const maxThreads = Math.max(...threadCounts);
  const s = await startCliServices({
    routes: Math.max(8, maxThreads),
    hosts: 10,
    nodeFlags: [...LEAN_NODE_FLAGS],
  });
  const runs: Run[] = [];
  try {
    const sdk = new LarsClient({ host: HOST, ports: s.agentPorts, timeoutMs: 2_000 });
    for (let m = 1; m <= maxThreads; m++) await sdk.regInit(m, 1, { tries: 40, intervalMs: 50 });
    await sdk.close();
    await runCClient(tools, { host: HOST, ports: s.agentPorts, threads: 1, seconds: 2 });
    for (let r = 0; r < rounds; r++) {
      for (const threads of threadCounts) {
        const order =
          r % 2 === 0 ? (['C client', 'lars test qps'] as const) : (['lars test qps', 'C client'] as const);
        for (const tool of order) {
          if (tool === 'C client') {
            const q = await runCClient(tools, {
              host: HOST,
              ports: s.agentPorts,
              threads,
              seconds: duration,
            });
            runs.push({
              tool,
              threads,
              rate: q.rate,
              first: q.per_second[0] ?? 0,
              p50: q.p50_us,
              p99: q.p99_us,
            });
          } else {
            const q = await larsQps(s.agentPorts, threads);
            runs.push({
              tool,
              threads,
              rate: q.rate,
              first: q.perSecond[0] ?? 0,
              p50: q.p50Us,
              p99: q.p99Us,
            });
          }
          const last = runs[runs.length - 1]!;
          console.log(
            `round ${r + 1} ${threads} thread(s) ${tool.padEnd(13)} ${last.rate}/s (first second ${last.first}) p50 ${last.p50} µs p99 ${last.p99} µs`,
          );
        }
      }
    }
  } finally {
    await s.stop();
  }
  const rows: Array<Array<string | number>> = [];
  for (const threads of threadCounts) {
    for (const tool of ['C client', 'lars test qps'] as const) {
      const rs = runs.filter((x) => x.tool === tool && x.threads === threads);
      rows.push([
        threads,
        tool,
        rs.map((x) => Math.round(x.rate / 100) / 10 + 'k').join(', '),
        median(rs.map((x) => x.rate)),
        median(rs.map((x) => x.first)),
        median(rs.map((x) => x.p50)),
        median(rs.map((x) => x.p99)),
      ]);
    }
  }
  console.log(`\n${duration} s per run, ${rounds} interleaved rounds, the same agent`);
  console.log(
    formatTable(
      ['threads', 'tool', 'calls/s per round', 'median calls/s', 'first second', 'p50 µs', 'p99 µs'],
      rows,
    ),
  );
  for (const threads of threadCounts) {
    const ratios = runs
      .filter((x) => x.tool === 'lars test qps' && x.threads === threads)
      .map((x, i) => x.rate / runs.filter((y) => y.tool === 'C client' && y.threads === threads)[i]!.rate);
    console.log(
      `${threads} thread(s): lars test qps / C client, median of per-round ratios ${median(ratios).toFixed(2)}`,
    );
  }
  console.log(`load after: ${uptime()}`);
}

await main();
process.exit(0);
