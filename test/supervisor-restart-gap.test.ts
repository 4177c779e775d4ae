import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LarsClient } from '../src/api/index.js';
import { nativeSockets } from '../src/native/index.js';
import { ExitCode } from '../src/supervisor/exit-codes.js';
import type { StatusSnapshot } from '../src/supervisor/status.js';
import { stretch } from './helpers/latch.js';
import { CLI_BUILT, eventually, RouteLoad, startStack, type Stack } from './supervisor-harness.js';

/**
 * Issue 11, item 4: no restart gap under `lars up`. While the only worker of a service is replaced
 * after a SIGKILL, the master keeps its listening sockets open: TCP clients queue instead of being
 * refused, datagrams wait in the receive buffer, and the replacement serves them.
 */
const suite = CLI_BUILT && nativeSockets() ? describe : describe.skip;

const realSetTimeout = globalThis.setTimeout;
const realSetInterval = globalThis.setInterval;

async function getHostOk(ports: number[]): Promise<boolean | undefined> {
  const c = new LarsClient({ ports, timeoutMs: 500 });
  try {
    return (await c.tryGetHost(1, 1)).retcode === 0 ? true : undefined;
  } finally {
    await c.close();
  }
}

function listenPort(s: StatusSnapshot, name: string): number {
  return s.services.find((x) => x.name === name)!.listen[0]!.port;
}

async function killAndAwaitRestart(stack: Stack, service: string): Promise<number> {
  const [pid] = await stack.workerPids(service);
  process.kill(pid!, 'SIGKILL');
  await eventually(
    async () => {
      const s = (await stack.status()).services.find((x) => x.name === service)!;
      const running = s.processes.filter((p) => p.state === 'running' && p.pid !== pid);
      return s.restarts >= 1 && running.length === 1 ? true : undefined;
    },
    15_000,
    `${service} restarted`,
  );
  return pid!;
}

/** Opens TCP connections one after another until stopped; counts refusals (nothing listening). */
class ConnectProbe {
  ok = 0;
  refused = 0;
  readonly other: string[] = [];
  private running = true;
  private readonly done: Promise<void>;

  constructor(private readonly port: number) {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const outcome = await new Promise<string>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: this.port });
        const timer = realSetTimeout(() => {
          s.destroy();
          resolve('timeout');
        }, stretch(10_000));
        s.once('connect', () => {
          clearTimeout(timer);
          s.destroy();
          resolve('ok');
        });
        s.once('error', (err: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          resolve(err.code ?? err.message);
        });
      });
      if (outcome === 'ok') this.ok++;
      else if (outcome === 'ECONNREFUSED') this.refused++;
      else this.other.push(outcome);
      await new Promise((r) => realSetTimeout(r, 5));
    }
  }
}

/**
 * getHost(1, 1) through the SDK at a steady rate, whatever the answers take (open loop), so that
 * requests keep being sent while the agent is down. Every timeout, error or non-SUCC is a failure.
 */
class OpenLoopHostLoad {
  sent = 0;
  ok = 0;
  readonly failures: string[] = [];
  private readonly client: LarsClient;
  private readonly timer: NodeJS.Timeout;
  private readonly pending = new Set<Promise<void>>();

  constructor(ports: number[], everyMs: number, timeoutMs: number) {
    this.client = new LarsClient({ ports, timeoutMs });
    this.timer = realSetInterval(() => this.one(), everyMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.pending]);
    await this.client.close();
  }

  private one(): void {
    this.sent++;
    const p = this.client
      .tryGetHost(1, 1)
      .then((a) => {
        if (a.retcode === 0) this.ok++;
        else this.failures.push(`retcode ${a.retcode}`);
      })
      .catch((err: { code?: string; message: string }) => void this.failures.push(err.code ?? err.message))
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }
}

suite('lars up: no restart gap', () => {
  it('a SIGKILLed only worker of dns, the reporter and the console: no connection is refused meanwhile', async () => {
    const stack = await startStack({ supervisor: { dns_workers: 1, reporter_workers: 1, web_workers: 1 } });
    const status = await stack.status();
    for (const service of ['dns', 'reporter', 'web']) {
      const port = listenPort(status, service);
      const probe = new ConnectProbe(port);
      await eventually(() => (probe.ok >= 5 ? true : undefined), 10_000, `${service} accepting`);
      await killAndAwaitRestart(stack, service);
      const okAtRestart = probe.ok;
      await eventually(() => (probe.ok >= okAtRestart + 5 ? true : undefined), 10_000, `${service} again`);
      await probe.stop();
      expect({ service, refused: probe.refused, other: probe.other }).toEqual({
        service,
        refused: 0,
        other: [],
      });
    }
    // dns under lockstep load across a kill: requests on connections to the killed worker are sent
    // again on a new connection (as the agent does); none is refused.
    const load = new RouteLoad(listenPort(status, 'dns'), 4, { reconnect: true });
    await eventually(() => (load.answered > 200 ? true : undefined), 10_000, 'dns load running');
    await killAndAwaitRestart(stack, 'dns');
    const answered = load.answered;
    await eventually(() => (load.answered > answered + 200 ? true : undefined), 15_000, 'dns answers again');
    await load.stop();
    expect(load.failures.filter((f) => !f.includes('ECONNRESET'))).toEqual([]);

    const web = await fetch(`http://127.0.0.1:${listenPort(status, 'web')}/healthz`);
    expect(web.status).toBe(200);
    process.kill(stack.pid, 'SIGTERM');
    expect((await stack.exited).code).toBe(ExitCode.STOPPED);
  });

  it('a SIGKILLed agent: SDK calls wait in the socket buffer and the replacement answers them', async () => {
    const stack = await startStack({ supervisor: { dns_workers: 1 } });
    await eventually(() => getHostOk(stack.agentPorts), 10_000, 'agent knows the route');
    // The replacement answers from the route cache the agent writes within a second of a change.
    await eventually(
      () => (existsSync(join(stack.dataDir, 'agent-cache', 'routes.json')) ? true : undefined),
      10_000,
      'route cache written',
    );
    const load = new OpenLoopHostLoad(stack.agentPorts, 5, stretch(2_000));
    await eventually(() => (load.ok > 100 ? true : undefined), 15_000, 'agent answering');
    await killAndAwaitRestart(stack, 'agent');
    const okAtRestart = load.ok;
    await eventually(() => (load.ok > okAtRestart + 100 ? true : undefined), 15_000, 'agent answers again');
    await load.stop();
    // Requests sent while no agent ran waited in the socket and were answered by the replacement:
    // none was refused, none got a wrong answer. Only a request the killed agent had already read
    // can be lost (it handles one datagram at a time); the SDK does not retry.
    expect(load.failures.filter((f) => f !== 'LARS_ERR_TIMEOUT')).toEqual([]);
    expect(load.failures.length).toBeLessThanOrEqual(1);
    expect(load.sent).toBe(load.ok + load.failures.length);
    process.kill(stack.pid, 'SIGTERM');
    expect((await stack.exited).code).toBe(ExitCode.STOPPED);
  });
});
