/**
 * Shared-memory buffer manager benchmark (issue 12): `npm run bench:shm`.
 *
 *   node dist/bench/shm.js [--rounds 5] [--budget-ms 400] [--sizes 4KiB,1MiB,16MiB]
 *                          [--crash-runs 15] [--fuzz 100000] [--only handoff|crash|fuzz]
 *
 * 1. Hand-off of one payload from a sender process to a receiver process, until the receiver has
 *    checked it and acknowledged: through lars shm in addon mode (zero-copy views), in file mode
 *    (pwrite/pread on /dev/shm) and, as the anchor, through a Unix socket. Modes interleaved within
 *    each round (order rotated), several rounds; p50/p99 over all rounds, throughput, and the median
 *    over rounds of the per-round p50 ratio socket/shm.
 * 2. Crash: a client holding 84 blocks is SIGKILLed; time until lars shm has released them against
 *    the time until a plain Unix socket held by the same client reports its close (same process).
 * 3. Fuzz: random and mutated commands; the daemon must answer them all and keep serving, and its
 *    RSS (after GC) is compared before and after.
 */
import { rmSync, mkdtempSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ShmClient } from '../src/shm/index.js';
import { formatSize, parseSize } from '../src/shm/size-classes.js';
import { ShmStatus } from '../src/shm/wire-ids.js';
import { SHM_NODE_FLAGS } from '../src/supervisor/services.js';
import { numberArg, parseArgs } from './lib/args.js';
import { combineRuns, Histogram } from './lib/histogram.js';
import { forkRole, machineLine, nextMessage, stopChild, type BenchMessage } from './lib/proc.js';
import { fuzzDaemon } from './lib/shm-fuzz.js';
import { formatTable } from './lib/table.js';

const PEERS = join(fileURLToPath(new URL('.', import.meta.url)), 'shm-peers.js');
const args = parseArgs(process.argv.slice(2));
const rounds = numberArg(args, 'rounds', 5);
const budgetMs = numberArg(args, 'budget-ms', 400);
const crashRuns = numberArg(args, 'crash-runs', 15);
const fuzzCount = numberArg(args, 'fuzz', 100_000);
const only = args.get('only');
const sizes = (args.get('sizes') ?? '4KiB,1MiB,16MiB').split(',').map((s) => parseSize(s, '--sizes'));

const dir = mkdtempSync(join(tmpdir(), 'lars-b-'));
const socket = join(dir, 'shm.sock');
const notice = join(dir, 'n.sock');
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2 : NaN;
};
const ratio = (x: number): string => `${x.toFixed(1)}x`;

process.stdout.write(
  `${machineLine()}; load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}\n`,
);
// The daemon runs with the Node flags `lars up` gives it (SHM_NODE_FLAGS).
const daemon = forkRole(
  PEERS,
  ['--role', 'daemon', '--socket', socket, '--notice', notice],
  ['--expose-gc', ...SHM_NODE_FLAGS],
);
const ready = await nextMessage<BenchMessage & { mode: string; pid: number }>(daemon, 'ready', 15_000);
process.stdout.write(
  `lars shm: pid ${ready.pid}, ${ready.mode} mode, classes 4KiB:4096,64KiB:512,1MiB:64,16MiB:8\n\n`,
);

try {
  if (!only || only === 'handoff') await handoff();
  if (!only || only === 'crash') await crash();
  if (!only || only === 'fuzz') await fuzz();
} finally {
  await stopChild(daemon);
  rmSync(dir, { recursive: true, force: true });
}

async function handoff(): Promise<void> {
  const channel = join(dir, 'c.sock');
  const receiver = forkRole(PEERS, ['--role', 'receiver', '--socket', socket, '--channel', channel]);
  const rpid = (await nextMessage<BenchMessage & { pid: number }>(receiver, 'ready', 15_000)).pid;
  const sender = forkRole(PEERS, ['--role', 'sender', '--socket', socket, '--channel', channel]);
  const sready = await nextMessage<BenchMessage & { addon: boolean }>(sender, 'ready', 15_000);
  const modes = sready.addon ? ['socket', 'addon', 'file'] : ['socket', 'file'];
  if (!sready.addon) process.stdout.write('native addon unavailable: addon mode not measured\n');
  type Run = { count: number; elapsedMs: number; counts: number[]; max: number; allocCounts: number[] };
  const runs = new Map<string, Run[]>();
  const p50s = new Map<string, number[]>();
  for (let round = 0; round < rounds; round++) {
    for (const size of sizes) {
      const order = modes.map((_, i) => modes[(i + round) % modes.length]!);
      for (const mode of order) {
        sender.send({ type: 'run', mode, size, budgetMs, minIters: 5, to: rpid });
        const r = await nextMessage<BenchMessage & Run>(sender, 'result', 120_000);
        const key = `${mode}/${size}`;
        runs.set(key, [...(runs.get(key) ?? []), r]);
        p50s.set(key, [...(p50s.get(key) ?? []), new Histogram(r.counts).percentile(50)]);
      }
    }
  }
  await stopChild(sender);
  await stopChild(receiver);

  const p50 = (mode: string, size: number): number => combineRuns(runs.get(`${mode}/${size}`)!).p50;
  const rows: (string | number)[][] = [];
  for (const size of sizes) {
    for (const mode of modes) {
      const key = `${mode}/${size}`;
      const c = combineRuns(runs.get(key)!);
      const perRound = p50s.get(key)!.map((p, i) => p50s.get(`socket/${size}`)![i]! / p);
      const alloc = new Histogram();
      for (const r of runs.get(key)!) alloc.merge(new Histogram(r.allocCounts));
      const allocP50 = alloc.percentile(50) / 1000;
      const shm = mode !== 'socket';
      rows.push([
        formatSize(size),
        mode,
        c.rate,
        (c.rate * size) / 2 ** 20,
        c.p50,
        c.p99,
        shm ? ratio(median(perRound)) : '1.0x',
        shm ? allocP50 : '-',
        shm ? ratio(p50('socket', size) / (c.p50 + allocP50)) : '-',
      ]);
    }
  }
  process.stdout.write(
    `Hand-off sender -> receiver (lockstep; ${rounds} rounds x ${budgetMs} ms per mode and size, interleaved)\n` +
      formatTable(
        [
          'size',
          'mode',
          'hand-offs/s',
          'MiB/s',
          'p50 µs',
          'p99 µs',
          'socket/shm p50',
          'alloc p50 µs',
          '… with alloc',
        ],
        rows,
      ) +
      '\n',
  );
  const MiB = 1 << 20;
  if (sizes.includes(MiB) && sizes.includes(16 * MiB)) {
    for (const mode of modes.filter((m) => m !== 'socket')) {
      process.stdout.write(
        `${mode}: p50 16MiB / p50 1MiB = ${(p50(mode, 16 * MiB) / p50(mode, MiB)).toFixed(2)}\n`,
      );
    }
  }
  process.stdout.write('\n');
}

async function crash(): Promise<void> {
  const notices: number[] = [];
  const reclaims: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < crashRuns; i++) {
    const victim = forkRole(PEERS, ['--role', 'victim', '--socket', socket, '--notice', notice]);
    const { pid } = await nextMessage<BenchMessage & { pid: number }>(victim, 'ready', 15_000);
    const closed = waitFor(daemon, 'closed', pid);
    const released = waitFor(daemon, 'released', pid);
    const t0 = process.hrtime.bigint();
    victim.kill('SIGKILL');
    const [c, r] = await Promise.all([closed, released]);
    const n = Number(BigInt(c.at) - t0) / 1000;
    const rc = Number(BigInt(r.at) - t0) / 1000;
    notices.push(n);
    reclaims.push(rc);
    ratios.push(rc / n);
  }
  process.stdout.write(
    `Crash: SIGKILL of a client holding 84 blocks (${crashRuns} runs), µs after the kill\n` +
      formatTable(
        ['event', 'p50 µs', 'max µs'],
        [
          ['socket-close notice', median(notices), Math.max(...notices)],
          ['blocks released by lars shm', median(reclaims), Math.max(...reclaims)],
        ],
      ) +
      `\nmedian ratio released / notice: ${median(ratios).toFixed(2)} (target <= 1.5)\n\n`,
  );
}

function waitFor(child: typeof daemon, type: string, pid: number): Promise<BenchMessage & { at: string }> {
  return new Promise((resolve) => {
    const on = (m: BenchMessage & { pid?: number; at?: string }): void => {
      if (m.type === type && m.pid === pid) {
        child.off('message', on);
        resolve(m as BenchMessage & { at: string });
      }
    };
    child.on('message', on);
  });
}

async function rss(): Promise<
  BenchMessage & {
    rss: number;
    heap: number;
    free: number;
    inBatches: number;
    total: number;
    connections: number;
  }
> {
  daemon.send({ type: 'rss' });
  return nextMessage(daemon, 'rss', 10_000);
}

async function fuzz(): Promise<void> {
  // RSS is compared from a warm daemon (after a 10,000-command warm-up: JIT code, V8 young
  // generation sized for the load), then after the 100,000 commands and after as many again: a
  // leak grows with every round, a warm-up does not.
  const cold = await rss();
  await fuzzDaemon(socket, Math.min(10_000, fuzzCount));
  const before = await rss();
  const t0 = performance.now();
  const stats = await fuzzDaemon(socket, fuzzCount);
  const ms = performance.now() - t0;
  // Let batches sent during the fuzz (ttl up to 50 ms) expire, then look.
  await new Promise((r) => setTimeout(r, 200));
  const after = await rss();
  await fuzzDaemon(socket, fuzzCount);
  await new Promise((r) => setTimeout(r, 200));
  const again = await rss();
  const client = await ShmClient.connect({ socket });
  const buf = await client.alloc(4096);
  await buf.release();
  await client.close();
  const mb = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
  const pct = (x: number, base: number): string =>
    `${x >= base ? '+' : ''}${(((x - base) / base) * 100).toFixed(1)} %`;
  const names: Record<string, string> = Object.fromEntries(
    Object.entries(ShmStatus).map(([k, v]) => [String(v), k]),
  );
  const errors = Object.entries(stats.errors)
    .map(([s, n]) => `${names[s] ?? s} ${n}`)
    .join(', ');
  process.stdout.write(
    `Fuzz: ${stats.commands.toLocaleString('en-US')} random and mutated commands over ${stats.connections} connections in ${(ms / 1000).toFixed(1)} s\n` +
      `  replies ${stats.replies.toLocaleString('en-US')} (every non-framing command answered: ${stats.replies === stats.commands - stats.framingCuts}), ` +
      `framing violations ${stats.framingCuts} (each closed only its connection)\n` +
      `  error statuses ${errors}\n` +
      `  daemon alive and serving afterwards: yes; after the fuzz connections closed: ${after.free} of ${after.total} blocks free, ` +
      `${after.inBatches} in unreceived batches (waiting for their ttl), ${after.total - after.free - after.inBatches} unaccounted\n` +
      `  daemon RSS after GC: cold ${mb(cold.rss)}, warm (after a 10,000-command warm-up) ${mb(before.rss)}, ` +
      `after the ${stats.commands.toLocaleString('en-US')} ${mb(after.rss)} (${pct(after.rss, before.rss)}, target <= +10 %), ` +
      `after as many again ${mb(again.rss)} (${pct(again.rss, before.rss)})\n` +
      `  daemon V8 heap used after GC: warm ${mb(before.heap)}, after ${mb(after.heap)}, after as many again ${mb(again.heap)}\n`,
  );
}
