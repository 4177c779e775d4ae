/**
 * Start-up cost of the CLI and of each service (issue 16, item 2).
 *
 *   npm run bench:cli-start                  # 7 rounds
 *   node dist/bench/cli-start.js --rounds 11
 *
 * Per round, interleaved: `node -e 0` (the anchor), `lars --version`, `lars --help`, `lars status`
 * (no master: the cheapest real command), each to its exit; then `lars dns`, `lars reporter`,
 * `lars web` and `lars agent` on free ports (SQLite in a temporary directory, migrated beforehand),
 * each from spawn to its first answer: a TCP connect accepted (dns, reporter), GET /healthz 200
 * (web), a GetHost answer on UDP (agent). Prints median and p99 (the worst of few rounds) and the
 * ratio of the medians to the anchor.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LarsClient } from '../src/api/index.js';
import { openStore } from '../src/store/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { machineLine } from './lib/proc.js';
import { formatTable } from './lib/table.js';

const args = parseArgs(process.argv.slice(2));
const rounds = numberArg(args, 'rounds', 7);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const POLL_MS = 5;
const SERVE_TIMEOUT_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function env(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, LARS_LOG_LEVEL: 'warn' };
  for (const k of Object.keys(e)) if (k.startsWith('LARS_') && k !== 'LARS_LOG_LEVEL') delete e[k];
  return e;
}

/** Milliseconds from spawn to exit. */
function timeToExit(argv: string[]): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: 'ignore', env: env() });
    child.once('error', reject);
    child.once('exit', () => resolve(performance.now() - t0));
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function httpOk(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200;
  } catch {
    return false;
  }
}

async function agentAnswers(client: LarsClient): Promise<boolean> {
  try {
    await client.tryGetHost(1, 1);
    return true;
  } catch {
    return false;
  }
}

/** Milliseconds from spawn to the first successful `probe`; the service is then stopped. */
async function timeToServe(argv: string[], probe: () => Promise<boolean>): Promise<number> {
  const t0 = performance.now();
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'inherit'], env: env() });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    while (!(await probe())) {
      if (child.exitCode !== null) throw new Error(`lars ${argv[1]} exited (${child.exitCode})`);
      if (performance.now() - t0 > SERVE_TIMEOUT_MS) throw new Error(`lars ${argv[1]} did not serve`);
      await sleep(POLL_MS);
    }
    return performance.now() - t0;
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

type Case = { name: string; run: (dir: string) => Promise<number> };

const CASES: Case[] = [
  { name: 'node -e 0 (anchor)', run: () => timeToExit(['-e', '0']) },
  { name: 'lars --version', run: () => timeToExit([CLI, '--version']) },
  { name: 'lars --help', run: () => timeToExit([CLI, '--help']) },
  {
    name: 'lars status (none running)',
    run: (d) => timeToExit([CLI, 'status', '--data-dir', join(d, 'none')]),
  },
  {
    name: 'lars dns: first connect',
    run: async (d) => {
      const port = await freePort();
      const db = `sqlite:${join(d, 'lars.db')}`;
      return timeToServe([CLI, 'dns', '--db', db, '--port', String(port)], () => tcpAccepts(port));
    },
  },
  {
    name: 'lars reporter: first connect',
    run: async (d) => {
      const port = await freePort();
      const db = `sqlite:${join(d, 'lars.db')}`;
      return timeToServe([CLI, 'reporter', '--db', db, '--port', String(port)], () => tcpAccepts(port));
    },
  },
  {
    name: 'lars web: first /healthz 200',
    run: async (d) => {
      const port = await freePort();
      const db = `sqlite:${join(d, 'lars.db')}`;
      return timeToServe([CLI, 'web', '--db', db, '--port', String(port)], () => httpOk(port));
    },
  },
  {
    name: 'lars agent: first UDP answer',
    run: async (d) => {
      const port = await freePort();
      const client = new LarsClient({ ports: [port], timeoutMs: 50 });
      try {
        return await timeToServe(
          [CLI, 'agent', '--no-reporter', '--ports', String(port), '--data-dir', join(d, 'agent')],
          () => agentAnswers(client),
        );
      } finally {
        await client.close();
      }
    },
  },
];

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
};

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lars-bench-start-'));
  try {
    const store = await openStore(`sqlite:${join(dir, 'lars.db')}`);
    await store.migrate();
    await store.close();
    const times = new Map<string, number[]>(CASES.map((c) => [c.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (const c of CASES) times.get(c.name)!.push(await c.run(dir));
      process.stderr.write(`round ${r + 1}/${rounds} done\n`);
    }
    const anchor = quantile(times.get(CASES[0]!.name)!, 0.5);
    const rows = CASES.map((c) => {
      const t = times.get(c.name)!;
      const p50 = quantile(t, 0.5);
      return [c.name, Math.round(p50), Math.round(quantile(t, 0.99)), `${(p50 / anchor).toFixed(2)}×`];
    });
    console.log(machineLine());
    console.log(`${rounds} rounds, interleaved; ms from spawn`);
    console.log(formatTable(['what', 'p50 ms', 'p99 ms', 'p50 / anchor'], rows));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
