/**
 * Footprint of the services (issue 17): resident memory (VmRSS) of the real `lars agent` idle and
 * holding 10,000 routes x 10 hosts, and of `lars dns` holding 100,000 rows. Targets: agent <= 55 MB
 * idle and <= 100 MB with the routes; dns <= 80 MB with 100,000 rows.
 *
 *   npm run bench:footprint
 *   node dist/bench/footprint.js [--routes 10000] [--hosts 10] [--node-flags="--max-semi-space-size=1"]
 *
 * Without --node-flags it measures twice: plain `node`, and with the flags `lars up` starts dns and
 * the agent with (LEAN_NODE_FLAGS).
 *
 * Each figure is sampled every 0.5 s over a window (--window, default 12 s: longer than dns's
 * 10 s full reload, whose garbage comes and goes) after the process has been quiet for a moment;
 * the table gives the median and the highest sample. The agent's routes are fetched by asking for
 * each once.
 */
import { LarsClient } from '../src/api/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { startCliServices } from './lib/cli-services.js';
import { median, sampleProc } from './lib/proc-stat.js';
import { machineLine } from './lib/proc.js';
import { formatTable } from './lib/table.js';
import { LEAN_NODE_FLAGS } from '../src/supervisor/services.js';
import { uptime } from './lib/uptime.js';

const args = parseArgs(process.argv.slice(2));
const routes = numberArg(args, 'routes', 10_000);
const hosts = numberArg(args, 'hosts', 10);
const settleMs = numberArg(args, 'settle', 3) * 1000;
const windowMs = numberArg(args, 'window', 12) * 1000;
const nodeFlagsArg = args.get('node-flags');
/** Default: plain `node`, then the flags `lars up` gives dns and the agent (LEAN_NODE_FLAGS). */
const variants: string[][] =
  nodeFlagsArg === undefined ? [[], [...LEAN_NODE_FLAGS]] : [nodeFlagsArg.split(' ').filter(Boolean)];
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const mb = (kb: number) => Math.round(kb / 102.4) / 10;

async function main(): Promise<void> {
  console.log(machineLine());
  for (const flags of variants) await measure(flags);
}

async function measure(nodeFlags: string[]): Promise<void> {
  console.log(`load before: ${uptime()}`);
  const services = await startCliServices({
    routes,
    hosts,
    nodeFlags,
  });
  try {
    await delay(settleMs);
    const [agentIdle, dnsIdle] = await sampleWindow([services.agent.pid!, services.dns.pid!]);
    const client = new LarsClient({ host: '127.0.0.1', ports: services.agentPorts, timeoutMs: 5_000 });
    const t0 = performance.now();
    for (let m = 1; m <= routes; m += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, routes - m + 1) }, (_, i) =>
          client.regInit(m + i, 1, { tries: 40, intervalMs: 50 }),
        ),
      );
    }
    const warmS = (performance.now() - t0) / 1000;
    await client.close();
    await delay(settleMs);
    const [agentFull, dnsAfter] = await sampleWindow([services.agent.pid!, services.dns.pid!]);
    console.log(
      `\n${routes.toLocaleString('en-US')} routes x ${hosts} hosts (${(routes * hosts).toLocaleString('en-US')} rows); agent fetched them all in ${warmS.toFixed(1)} s; node flags: ${nodeFlags.join(' ') || '(none)'}`,
    );
    console.log(
      formatTable(
        ['process', 'state', 'RSS MB median', 'RSS MB max', 'target MB', 'threads'],
        [
          ['agent', 'idle (no routes)', ...row(agentIdle), 55, agentIdle.threads],
          ['agent', `${routes} routes x ${hosts} hosts`, ...row(agentFull), 100, agentFull.threads],
          ['dns', `${routes * hosts} rows, before agents asked`, ...row(dnsIdle), 80, dnsIdle.threads],
          [
            'dns',
            `${routes * hosts} rows, one agent subscribed to all`,
            ...row(dnsAfter),
            80,
            dnsAfter.threads,
          ],
        ],
      ),
    );
  } finally {
    await services.stop();
  }
  console.log(`load after: ${uptime()}`);
}

interface RssWindow {
  medianKb: number;
  maxKb: number;
  threads: number;
}

/** RSS of each process every 0.5 s over windowMs. */
async function sampleWindow(pids: [number, number]): Promise<[RssWindow, RssWindow]> {
  const seen = pids.map(() => [] as number[]);
  let threads = pids.map(() => 0);
  for (const end = performance.now() + windowMs; performance.now() < end; await delay(500)) {
    const samples = pids.map((pid) => sampleProc(pid));
    samples.forEach((x, i) => seen[i]!.push(x.rssKb));
    threads = samples.map((x) => x.threads);
  }
  const at = (i: number): RssWindow => ({
    medianKb: median(seen[i]!),
    maxKb: Math.max(...seen[i]!),
    threads: threads[i]!,
  });
  return [at(0), at(1)];
}

const row = (w: RssWindow): [number, number] => [mb(w.medianKb), mb(w.maxKb)];

await main();
process.exit(0);
