/**
 * The agent under a junk datagram flood from another local process (issue 11, item 5): the share
 * of SDK calls answered while ~400 junk 64 KB datagrams/s hit its ports.
 *
 *   npm run bench:agent-flood                        # 2 rounds, 10 s each, both modes
 *   node dist/bench/agent-flood.js --rate 400 --duration 10 --rounds 3 --modes filter,plain,stock
 *
 * A real `lars up` (dns and agent, one worker each) per round and mode; a flood process (this file,
 * `--role flood`) sends random 64 KB datagrams to the agent's three ports at `--rate` per second;
 * this process calls getHost(1, 1) through the SDK every 2 ms (whatever the answers take; the SDK's
 * default 1 s timeout) and counts the answers. Modes, interleaved:
 * - filter: the default with the native addon: a kernel socket filter drops datagrams that are not
 *   one frame of at most 4 KiB before they take receive-buffer space, and SO_RCVBUFFORCE 4 MiB;
 * - plain: LARS_NATIVE=off: the agent drops junk itself after reading it; 4 MiB SO_RCVBUF (capped by
 *   net.core.rmem_max);
 * - stock: plain with `[agent] recv_buffer_kb = 208`, what the agent gets on a stock Linux kernel
 *   (net.core.rmem_max = 212992) whatever it asks for without privileges: the situation of the issue.
 * Also printed: the agent's CPU time during the flood, the datagrams the kernel dropped on its
 * ports (/proc/net/udp: the filter's, and a full receive buffer's), and the junk the agent read and
 * dropped itself. `--busy N` runs N busy-loop processes beside it during the measurement.
 */
import { createSocket } from 'node:dgram';
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LarsClient } from '../src/api/index.js';
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
import { cpuMs, freeUdpPorts, metricValue, stackIni, startBenchStack } from './lib/stack.js';
import { formatTable } from './lib/table.js';

type Mode = 'filter' | 'plain' | 'stock';
const SELF = fileURLToPath(import.meta.url);
const args = parseArgs(process.argv.slice(2));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (args.get('role') === 'flood') await runFlood();
else if (args.get('role') === 'busy') runBusyLoop();
else await runMain();

/** Datagrams the kernel dropped on these local UDP ports (/proc/net/udp "drops"; no addon needed). */
function udpDrops(ports: readonly number[]): number {
  const want = new Set(ports.map((p) => p.toString(16).toUpperCase().padStart(4, '0')));
  let drops = 0;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 13) continue;
    const port = f[1]!.split(':')[1]!;
    if (want.has(port)) drops += Number(f[f.length - 1]);
  }
  return drops;
}

/** The flood process: `rate` random 64 KB datagrams per second over the ports, in 10 ms bursts. */
async function runFlood(): Promise<void> {
  const ports = (args.get('ports') ?? '').split(',').map(Number);
  const rate = numberArg(args, 'rate', 400);
  const socket = createSocket('udp4');
  const junk = randomFillSync(Buffer.alloc(64 * 1024 - 100));
  let sent = 0;
  let credit = 0;
  let i = 0;
  const timer = setInterval(() => {
    credit += rate / 100;
    while (credit >= 1) {
      credit -= 1;
      junk.writeUInt32LE(sent, 0);
      socket.send(junk, ports[i++ % ports.length]!, '127.0.0.1');
      sent++;
    }
  }, 10);
  tellParent({ type: 'ready' });
  await fromParent('stop');
  clearInterval(timer);
  tellParent({ type: 'sent', sent });
  socket.close();
}

async function round(
  mode: Mode,
  rate: number,
  durationS: number,
  busyLoops: number,
): Promise<(string | number)[]> {
  const ports = await freeUdpPorts(3);
  const ini = stackIni(ports, { reporter_workers: 0, web_workers: 0 });
  const env: NodeJS.ProcessEnv =
    mode === 'plain'
      ? { LARS_NATIVE: 'off' }
      : mode === 'stock'
        ? { LARS_NATIVE: 'off', LARS_AGENT_RECV_BUFFER_KB: '208' }
        : {};
  const stack = await startBenchStack(ini, env);
  try {
    const client = new LarsClient({ ports });
    for (let i = 0; i < 200 && (await client.tryGetHost(1, 1)).retcode !== 0; i++) await sleep(25);
    const [agentPid] = await stack.pids('agent');
    const flood = forkRole(SELF, ['--role', 'flood', '--ports', ports.join(','), '--rate', String(rate)]);
    await nextMessage(flood, 'ready', 10_000);
    await sleep(1_000);
    const busy = Array.from({ length: busyLoops }, () => forkRole(SELF, ['--role', 'busy']));
    const cpu0 = cpuMs(agentPid!);
    const drops0 = udpDrops(ports);
    const hist = new Histogram();
    let calls = 0;
    let answered = 0;
    const failures = new Map<string, number>();
    const pending = new Set<Promise<void>>();
    const started = Date.now();
    const timer = setInterval(() => {
      calls++;
      const t0 = performance.now();
      const p: Promise<void> = client
        .tryGetHost(1, 1)
        .then((a) => {
          if (a.retcode === 0) {
            answered++;
            hist.record((performance.now() - t0) * 1000);
          } else failures.set(`retcode ${a.retcode}`, (failures.get(`retcode ${a.retcode}`) ?? 0) + 1);
        })
        .catch(
          (err: { code?: string }) =>
            void failures.set(err.code ?? 'error', (failures.get(err.code ?? 'error') ?? 0) + 1),
        )
        .finally(() => pending.delete(p));
      pending.add(p);
    }, 2);
    await sleep(durationS * 1000);
    clearInterval(timer);
    await Promise.all([...pending]);
    const elapsedS = (Date.now() - started) / 1000;
    const cpu = (cpuMs(agentPid!) - cpu0) / 10 / elapsedS; // percent of one core
    const drops = udpDrops(ports) - drops0;
    for (const b of busy) b.kill('SIGKILL');
    const stopping = nextMessage<BenchMessage & { sent: number }>(flood, 'sent', 10_000);
    await stopChild(flood);
    const { sent } = await stopping.catch(() => ({ sent: NaN }));
    await client.close();
    const httpPort = await stack.httpPort('agent');
    const metrics = httpPort ? await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text() : '';
    return [
      mode,
      Math.round(sent / elapsedS),
      calls,
      Number(((100 * answered) / calls).toFixed(2)),
      [...failures].map(([k, v]) => `${v} ${k}`).join(', ') || '-',
      Math.round(hist.percentile(99)),
      Math.round(cpu),
      drops,
      metricValue(metrics, 'lars_agent_malformed_datagrams_total'),
    ];
  } finally {
    await stack.stop();
  }
}

async function runMain(): Promise<void> {
  const rate = numberArg(args, 'rate', 400);
  const durationS = numberArg(args, 'duration', 10);
  const rounds = numberArg(args, 'rounds', 2);
  const busyLoops = numberArg(args, 'busy', 0);
  const modes = (args.get('modes') ?? 'filter,plain,stock').split(',') as Mode[];
  const rows: (string | number)[][] = [];
  for (let r = 0; r < rounds; r++)
    for (const mode of modes) rows.push(await round(mode, rate, durationS, busyLoops));
  process.stdout.write(
    `agent under a junk flood of ${rate} x 64 KB datagrams/s, ${durationS} s, ${busyLoops} busy loops beside it (${machineLine()})\n`,
  );
  process.stdout.write(
    formatTable(
      [
        'mode',
        'junk/s',
        'SDK calls',
        'answered %',
        'failures',
        'p99 µs',
        'agent CPU %',
        'kernel drops',
        'agent-dropped junk',
      ],
      rows,
    ) + '\n',
  );
}
