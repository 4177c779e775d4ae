import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onTestFinished } from 'vitest';
import { controlPaths, controlRequest } from '../src/supervisor/control.js';
import type { StatusSnapshot } from '../src/supervisor/status.js';
import { LarsClient } from '../src/api/index.js';
import { rawGetRouteFrame } from './helpers/raw-route-client.js';
import { unusedPort, unusedPorts } from './helpers/ports.js';
import { stretch } from './helpers/latch.js';

/**
 * Shared pieces of the supervisor tests: a `lars up` of the compiled CLI on a temporary data
 * directory with free ports, its status, and load generators that count every failure.
 */

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..');
export const CLI = join(ROOT, 'dist/src/cli/main.js');
export const CLI_BUILT = existsSync(join(ROOT, 'dist/src/supervisor/supervisor.js'));

const realSetTimeout = globalThis.setTimeout;
const sleep = (ms: number) => new Promise((r) => realSetTimeout(r, ms));

/** Re-checks `probe` every `everyMs` until it returns a value other than undefined; fails at the deadline. */
export async function eventually<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
  label: string,
  everyMs = 50,
): Promise<T> {
  timeoutMs = stretch(timeoutMs); // written for an idle machine (helpers/latch.ts)
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `${label}: not reached within ${timeoutMs} ms${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`,
      );
    await sleep(everyMs);
  }
}

/** Ports for a stack's config file (see helpers/ports.ts: never reused ephemeral ports). */
export const freeUdpPorts = unusedPorts;
export const freeTcpPort = unusedPort;

/** True when the pid exists and is not a zombie waiting for a reaper we do not control. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export interface StackOptions {
  /** Extra INI text appended to the generated config (sections may repeat keys of [supervisor] only). */
  supervisor?: Record<string, string | number | boolean>;
  /** Extra sections, verbatim. */
  extra?: string;
  /** Extra lines of the [agent] section. */
  agentExtra?: string;
  /** Wait for "Lars is up" (default true). */
  waitUp?: boolean;
  dnsPort?: number;
  /** Data directory (default: `data` in a fresh temporary directory, created by lars up). */
  dataDir?: string;
}

export class Stack {
  readonly lines: string[] = [];
  readonly errLines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly seenPids = new Set<number>();

  constructor(
    readonly dir: string,
    readonly dataDir: string,
    readonly configFile: string,
    readonly agentPorts: number[],
    readonly child: ChildProcess,
  ) {
    const collect = (into: string[]) => {
      let partial = '';
      return (chunk: Buffer) => {
        const text = partial + chunk.toString('utf8');
        const parts = text.split('\n');
        partial = parts.pop() ?? '';
        into.push(...parts);
      };
    };
    child.stdout!.on('data', collect(this.lines));
    child.stderr!.on('data', collect(this.errLines));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid as number;
  }

  writeConfig(text: string): void {
    writeFileSync(this.configFile, text);
  }

  async status(): Promise<StatusSnapshot> {
    const reply = await controlRequest(
      controlPaths(this.dataDir).socket,
      { cmd: 'status', health: false },
      5_000,
    );
    if (!reply.ok || !reply.status) throw new Error(`status failed: ${JSON.stringify(reply)}`);
    for (const s of reply.status.services) for (const p of s.processes) this.seenPids.add(p.pid);
    return reply.status;
  }

  async workerPids(service?: string): Promise<number[]> {
    const s = await this.status();
    return s.services
      .filter((x) => !service || x.name === service)
      .flatMap((x) => x.processes.map((p) => p.pid));
  }

  /** Every child pid this test has seen in a status. */
  get knownPids(): number[] {
    return [...this.seenPids];
  }

  dnsPort(s: StatusSnapshot): number {
    return s.services.find((x) => x.name === 'dns')!.listen[0]!.port;
  }

  /** Lines of the master's stdout whose JSON has msg === `msg`. */
  logRecords(msg: string): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of this.lines) {
      const i = line.indexOf(' | {');
      if (i < 0) continue;
      try {
        const rec = JSON.parse(line.slice(i + 3)) as Record<string, unknown>;
        if (rec.msg === msg) out.push(rec);
      } catch {
        // not JSON
      }
    }
    return out;
  }

  output(): string {
    return [...this.lines, ...this.errLines].join('\n');
  }
}

/**
 * Starts `lars up --demo` of the compiled CLI with every port free: dns and web on port 0 (the
 * master picks real ones and reports them in its status), the agent on free UDP ports. Cleans up
 * (SIGKILL of the master and every child it reported) when the test ends.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'lars-sup-'));
  const dataDir = options.dataDir ?? join(dir, 'data');
  const configFile = join(dir, 'lars.ini');
  const agentPorts = await freeUdpPorts(3);
  const supervisor = {
    web_workers: 0,
    reporter_workers: 0,
    restart_delay: 0.05,
    // A busy CI machine: give draining and starting workers time (these bound failures only).
    drain_timeout: 30,
    start_timeout: 120,
    ...options.supervisor,
  };
  const text = configText(
    options.dnsPort ?? 0,
    agentPorts,
    supervisor,
    options.extra ?? '',
    options.agentExtra ?? '',
  );
  writeFileSync(configFile, text);
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('LARS_')) delete env[k];
  const child = spawn(
    process.execPath,
    [CLI, 'up', '--data-dir', dataDir, '--config', configFile, '--demo'],
    {
      env: { ...env, LARS_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const stack = new Stack(dir, dataDir, configFile, agentPorts, child);
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await stack.exited;
    for (const pid of stack.knownPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  if (options.waitUp !== false) {
    await eventually(
      async () => {
        if (child.exitCode !== null)
          throw new Error(`lars up exited early (${child.exitCode}):\n${stack.output()}`);
        return stack.lines.some((l) => l.startsWith('Lars is up')) ? true : undefined;
      },
      30_000,
      'lars up ready',
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${stack.output()}`);
    });
    await stack.status();
  }
  return stack;
}

export function configText(
  dnsPort: number,
  agentPorts: number[],
  supervisor: Record<string, string | number | boolean>,
  extra: string,
  agentExtra = '',
): string {
  return [
    '[dnsserver]',
    `port = ${dnsPort}`,
    '[agent]',
    `ports = ${agentPorts.join(',')}`,
    agentExtra,
    '[web]',
    'port = 0',
    '[supervisor]',
    ...Object.entries(supervisor).map(([k, v]) => `${k} = ${v}`),
    extra,
    '',
  ].join('\n');
}

/**
 * Lockstep GetRoute(1, 1) load on `connections` TCP connections to dns: send, wait for the answer,
 * repeat. A connection the server closes (graceful drain) with a request pending either reconnects
 * and sends it again (`reconnect`, what the agent's dns link does) or stops. Counts every failure:
 * a refused or reset connection, or an answer that does not come within `answerTimeoutMs`.
 */
type SessionEnd = 'stopped' | 'failed' | 'eof-pending' | 'eof-idle' | 'reset-pending' | 'reset-idle';

export class RouteLoad {
  answered = 0;
  sent = 0;
  /** Requests sent again on a new connection after a graceful close left them unanswered. */
  resent = 0;
  /** Requests pending when a connection ended and was not resumed. */
  pendingAtEnd = 0;
  readonly failures: string[] = [];
  private running = true;
  private readonly conns = new Set<Socket>();
  private readonly done: Promise<void>[] = [];

  constructor(
    private readonly port: number,
    connections: number,
    private readonly opts: { reconnect: boolean; answerTimeoutMs?: number; spreadSources?: boolean } = {
      reconnect: false,
    },
  ) {
    for (let i = 0; i < connections; i++) this.done.push(this.loop(i));
  }

  /** Stops sending; resolves when every connection finished its last exchange and closed. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
  }

  /** Resolves when every connection has ended (the server closed them). */
  async ended(): Promise<void> {
    await Promise.all(this.done);
  }

  private async loop(i: number): Promise<void> {
    let resend = false;
    while (this.running) {
      const outcome = await this.session(i, resend);
      if (outcome === 'stopped') return;
      if (outcome === 'failed') return;
      // 'eof-*': the server drained this connection; 'reset-*': it died (a killed worker).
      const pending = outcome === 'eof-pending' || outcome === 'reset-pending';
      if (!this.opts.reconnect) {
        if (pending) this.pendingAtEnd++;
        return;
      }
      resend = pending;
    }
  }

  private session(i: number, resend: boolean): Promise<SessionEnd> {
    const answerTimeoutMs = this.opts.answerTimeoutMs ?? stretch(3_000);
    return new Promise((resolve) => {
      const source = this.opts.spreadSources
        ? `127.0.${1 + (Math.floor(i / 250) % 250)}.${1 + (i % 250)}`
        : undefined;
      const socket = connect({
        host: '127.0.0.1',
        port: this.port,
        ...(source ? { localAddress: source } : {}),
      });
      this.conns.add(socket);
      socket.setNoDelay(true);
      let buf = Buffer.alloc(0);
      let pending = false;
      let timer: NodeJS.Timeout | undefined;
      let finished = false;
      const finish = (r: SessionEnd) => {
        if (finished) return;
        finished = true;
        if (timer) clearTimeout(timer);
        this.conns.delete(socket);
        socket.destroy();
        resolve(r);
      };
      const send = () => {
        if (!this.running) {
          socket.end();
          return finish('stopped');
        }
        pending = true;
        this.sent++;
        socket.write(rawGetRouteFrame(1, 1));
        timer = realSetTimeout(() => {
          this.failures.push(`conn ${i}: no answer within ${answerTimeoutMs} ms`);
          finish('failed');
        }, answerTimeoutMs);
      };
      socket.on('connect', () => {
        if (resend) this.resent++;
        send();
      });
      socket.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 8) {
          const len = buf.readInt32LE(4);
          if (buf.length < 8 + len) break;
          buf = buf.subarray(8 + len);
          if (!pending) continue;
          pending = false;
          if (timer) clearTimeout(timer);
          this.answered++;
          send();
        }
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        // Recorded either way; with `reconnect` the request is sent again, as the agent does.
        this.failures.push(`conn ${i}: ${err.code ?? err.message}`);
        finish(pending ? 'reset-pending' : 'reset-idle');
      });
      socket.on('end', () => finish(pending ? 'eof-pending' : 'eof-idle'));
      socket.on('close', () => finish(pending ? 'eof-pending' : 'eof-idle'));
    });
  }
}

/** Continuous getHost(1, 1) through the SDK on `concurrency` loops; every timeout or non-SUCC answer is a failure. */
export class HostLoad {
  ok = 0;
  readonly failures: string[] = [];
  private running = true;
  private readonly client: LarsClient;
  private readonly done: Promise<void>[] = [];

  constructor(ports: number[], concurrency: number, timeoutMs = stretch(1_000)) {
    this.client = new LarsClient({ ports, timeoutMs });
    for (let i = 0; i < concurrency; i++) this.done.push(this.loop());
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
    await this.client.close();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      try {
        const a = await this.client.tryGetHost(1, 1);
        if (a.retcode === 0) this.ok++;
        else this.failures.push(`retcode ${a.retcode}`);
      } catch (err) {
        this.failures.push((err as { code?: string }).code ?? (err as Error).message);
      }
    }
  }
}
