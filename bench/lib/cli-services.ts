import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TimeoutError } from '../../src/errors.js';
import { insertRouteRows, openStore } from '../../src/store/index.js';
import { CLI, freeUdpPorts } from './stack.js';

/**
 * dns and agent as the real `lars dns` / `lars agent` processes (issue 17 measures what runs in
 * production: its CPU share, context switches and RSS), on a temporary SQLite database seeded with
 * routes (modid 1..routes, cmdid 1) of `hosts` hosts each.
 */
export interface CliServices {
  dir: string;
  dns: ChildProcess;
  dnsPort: number;
  agent: ChildProcess;
  agentPorts: number[];
  stop(): Promise<void>;
}

export interface CliServicesOptions {
  routes: number;
  hosts: number;
  /** Extra `lars agent` flags (e.g. ['--threads', '2']). */
  agentFlags?: readonly string[];
  /** Node flags of the services (e.g. V8 heap options). */
  nodeFlags?: readonly string[];
  env?: NodeJS.ProcessEnv;
}

/** A TCP port nothing listens on now (listen on 0, close). */
export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function seedRoutes(url: string, routes: number, hosts: number): Promise<void> {
  const store = await openStore(url);
  await store.migrate();
  function* rows() {
    for (let r = 1; r <= routes; r++)
      for (let h = 0; h < hosts; h++) yield { modid: r, cmdid: 1, ip: 0x0a000001 + h, port: 9000 + h };
  }
  await insertRouteRows(store.db, store.kind, rows());
  await store.close();
}

/** Spawns `lars <args>` and resolves once a stdout log line contains `readyText`. */
export function spawnCli(
  args: readonly string[],
  readyText: string,
  o: { nodeFlags?: readonly string[]; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(o.nodeFlags ?? []), CLI, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, LARS_LOG_LEVEL: 'info', ...o.env },
    });
    const kill = (): void => {
      if (child.exitCode === null) child.kill('SIGKILL');
    };
    process.once('exit', kill);
    child.once('exit', () => process.off('exit', kill));
    const timer = setTimeout(
      () => reject(new TimeoutError(`lars ${args[0]}: not ready within ${o.timeoutMs ?? 60_000} ms`)),
      o.timeoutMs ?? 60_000,
    );
    let seen = '';
    const onData = (d: Buffer): void => {
      seen = (seen + d.toString()).slice(-4096);
      if (seen.includes(readyText)) {
        clearTimeout(timer);
        // Keep draining stdout (a full pipe would block the service's logging).
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`lars ${args[0]} exited with code ${code} before it was ready`));
    });
  });
}

export async function stopProcess(child: ChildProcess, timeoutMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

export async function startCliServices(o: CliServicesOptions): Promise<CliServices> {
  const dir = mkdtempSync(join(tmpdir(), 'lars-bench-cli-'));
  const url = `sqlite:${join(dir, 'lars.db')}`;
  await seedRoutes(url, o.routes, o.hosts);
  const agentPorts = await freeUdpPorts(3);
  const dnsPort = await freeTcpPort();
  const common = { nodeFlags: o.nodeFlags ?? [], env: o.env ?? {} };
  const dns = await spawnCli(['dns', '--db', url, '--port', String(dnsPort)], 'dns listening', common);
  const agent = await spawnCli(
    [
      'agent',
      '--dns',
      `127.0.0.1:${dnsPort}`,
      '--no-reporter',
      '--ports',
      agentPorts.join(','),
      '--data-dir',
      dir,
      ...(o.agentFlags ?? []),
    ],
    'agent listening',
    common,
  );
  return {
    dir,
    dns,
    dnsPort,
    agent,
    agentPorts,
    async stop() {
      await stopProcess(agent);
      await stopProcess(dns);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
