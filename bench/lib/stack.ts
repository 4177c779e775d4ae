import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlPaths, controlRequest } from '../../src/supervisor/control.js';
import type { StatusSnapshot } from '../../src/supervisor/status.js';

/**
 * A real `lars up` of the compiled CLI on a temporary data directory, for benchmarks that need the
 * whole stack (issue 11: restart gap, agent flood, fuzz): its status, worker pids and ports, the
 * workers' RSS, and a clean stop.
 */

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface BenchStack {
  readonly dir: string;
  readonly dataDir: string;
  readonly child: ChildProcess;
  /** The master's and the children's output so far. */
  output(): string;
  status(): Promise<StatusSnapshot>;
  /** Pids of the running workers of a service. */
  pids(service: string): Promise<number[]>;
  /** The public port of a service (the first of the agent's). */
  port(service: string): Promise<number>;
  /** A worker's admin HTTP port (dns, reporter, agent). */
  httpPort(service: string): Promise<number | undefined>;
  stop(): Promise<void>;
}

/** Free UDP ports (bind 0, close; fine for a benchmark on an otherwise quiet range). */
export async function freeUdpPorts(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const port = await new Promise<number>((resolve) => {
      const s = createSocket('udp4');
      s.bind(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    if (!out.includes(port)) out.push(port);
  }
  return out;
}

/**
 * INI text of a bench stack: dns, reporter and console on ports the master picks, the agent on
 * `agentPorts`, one worker of each service unless `supervisor` says otherwise, plus `extra` lines.
 */
export function stackIni(
  agentPorts: readonly number[],
  supervisor: Record<string, number> = {},
  extra: readonly string[] = [],
): string {
  const workers = { dns_workers: 1, reporter_workers: 1, web_workers: 1, ...supervisor };
  return [
    '[dnsserver]',
    'port = 0',
    '[reporter]',
    'port = 0',
    '[web]',
    'port = 0',
    '[agent]',
    `ports = ${agentPorts.join(',')}`,
    '[supervisor]',
    ...Object.entries(workers).map(([k, v]) => `${k} = ${v}`),
    ...extra,
    '',
  ].join('\n');
}

/**
 * Starts `lars up --demo` with the given INI text (ports left at 0 are chosen by the master).
 * `env` is added to the environment (e.g. LARS_NATIVE=off).
 */
export async function startBenchStack(ini: string, env: NodeJS.ProcessEnv = {}): Promise<BenchStack> {
  const dir = mkdtempSync(join(tmpdir(), 'lars-bench-'));
  const dataDir = join(dir, 'data');
  const config = join(dir, 'lars.ini');
  writeFileSync(config, ini);
  const childEnv: NodeJS.ProcessEnv = { ...process.env, LARS_LOG_LEVEL: 'warn', ...env };
  for (const k of Object.keys(childEnv))
    if (k.startsWith('LARS_') && !(k in env) && k !== 'LARS_LOG_LEVEL') delete childEnv[k];
  const child = spawn(process.execPath, [CLI, 'up', '--data-dir', dataDir, '--config', config, '--demo'], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let out = '';
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('Lars is up')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`lars up exited (${code}):\n${out}`)));
  });
  const status = async (): Promise<StatusSnapshot> => {
    const reply = await controlRequest(
      controlPaths(dataDir).socket,
      { cmd: 'status', health: false },
      10_000,
    );
    if (!reply.ok || !reply.status) throw new Error(`status: ${JSON.stringify(reply)}`);
    return reply.status;
  };
  const service = async (name: string) => {
    const s = (await status()).services.find((x) => x.name === name);
    if (!s) throw new Error(`no service ${name}`);
    return s;
  };
  return {
    dir,
    dataDir,
    child,
    output: () => out,
    status,
    async pids(name) {
      return (await service(name)).processes.filter((p) => p.state === 'running').map((p) => p.pid);
    },
    async port(name) {
      return (await service(name)).listen[0]!.port;
    },
    async httpPort(name) {
      const p = (await service(name)).processes.find((x) => x.state === 'running');
      const http = p?.ports.http;
      return typeof http === 'number' ? http : undefined;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGTERM');
        await exited;
      }
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resident set size of a process in MiB (from /proc), or NaN when it is gone. */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** CPU time (user + system) a process has used, in ms, from /proc (ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** The value of one Prometheus sample line (`name` or `name{labels}`), or NaN. */
export function metricValue(text: string, sample: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return NaN;
}
