import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LarsClient } from '../src/api/index.js';
import { ExitCode } from '../src/supervisor/exit-codes.js';
import {
  alive,
  CLI,
  CLI_BUILT,
  configText,
  eventually,
  freeTcpPort,
  HostLoad,
  RouteLoad,
  startStack,
  type Stack,
} from './supervisor-harness.js';

/**
 * `lars up` end to end (issue 7), against the compiled CLI: run `npx tsc -p tsconfig.build.json;
 * node scripts/copy-generated.mjs` first. Every stack runs on a temporary data directory with free
 * ports; waits are deadlines on observable state, never fixed sleeps.
 */
const suite = CLI_BUILT ? describe : describe.skip;

async function getHostOk(ports: number[]): Promise<boolean | undefined> {
  const c = new LarsClient({ ports, timeoutMs: 500 });
  try {
    return (await c.tryGetHost(1, 1)).retcode === 0 ? true : undefined;
  } finally {
    await c.close();
  }
}

/** A TCP port this test process holds until the test ends. */
async function heldTcpPort(): Promise<number> {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
  onTestFinished(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  return (blocker.address() as { port: number }).port;
}

function masterExit(stack: Stack): Promise<number> {
  return eventually(
    () => (stack.child.exitCode !== null ? stack.child.exitCode : undefined),
    30_000,
    'master exits',
  );
}

suite('lars up supervisor', () => {
  it('restarts a killed worker and the service keeps answering', async () => {
    const stack = await startStack({ supervisor: { dns_workers: 2 } });
    const before = await stack.status();
    const dnsPort = stack.dnsPort(before);
    const [victim, survivor] = await stack.workerPids('dns');
    expect(survivor).toBeDefined();
    await eventually(() => getHostOk(stack.agentPorts), 10_000, 'agent answers');

    // Load on dns across the kill: connections to the killed worker die with it (their requests are
    // re-sent on a new connection, as the agent does); the service never stops answering.
    const load = new RouteLoad(dnsPort, 8, { reconnect: true });
    await eventually(() => (load.answered > 200 ? true : undefined), 10_000, 'dns load running');
    process.kill(victim!, 'SIGKILL');
    const after = await eventually(
      async () => {
        const s = await stack.status();
        const dns = s.services.find((x) => x.name === 'dns')!;
        const pids = dns.processes.filter((p) => p.state === 'running').map((p) => p.pid);
        return dns.restarts === 1 && pids.length === 2 && !pids.includes(victim!) ? s : undefined;
      },
      15_000,
      'dns worker restarted',
    );
    expect(after.services.find((x) => x.name === 'dns')!.state).toBe('running');
    const answeredAtRestart = load.answered;
    await eventually(
      () => (load.answered > answeredAtRestart + 200 ? true : undefined),
      10_000,
      'dns keeps answering',
    );
    await load.stop();
    // A connection reset by the dying worker is the only acceptable error.
    expect(load.failures.every((f) => f.includes('ECONNRESET'))).toBe(true);

    // The agent too: killed, restarted from its cache, answering again.
    const [agentPid] = await stack.workerPids('agent');
    process.kill(agentPid!, 'SIGKILL');
    await eventually(
      async () => {
        const s = await stack.status();
        const a = s.services.find((x) => x.name === 'agent')!;
        return a.restarts === 1 && a.state === 'running' ? true : undefined;
      },
      15_000,
      'agent restarted',
    );
    await eventually(() => getHostOk(stack.agentPorts), 10_000, 'restarted agent answers');
    expect(stack.logRecords('worker exited unexpectedly; restarting it').length).toBe(2);

    process.kill(stack.pid, 'SIGTERM');
    expect((await stack.exited).code).toBe(ExitCode.STOPPED);
  });

  it('SIGTERM under load: every request a dns worker accepted is answered, then exit 0', async () => {
    const stack = await startStack({ supervisor: { dns_workers: 2, agent_workers: 0 } });
    const s = await stack.status();
    const pids = await stack.workerPids();
    const load = new RouteLoad(stack.dnsPort(s), 12, { reconnect: false });
    await eventually(() => (load.answered > 1_000 ? true : undefined), 15_000, 'load running');
    process.kill(stack.pid, 'SIGTERM');
    const exit = await stack.exited;
    await load.ended();
    expect(exit.code).toBe(ExitCode.STOPPED);
    expect(load.failures).toEqual([]);
    // Each dns worker logs how many requests it processed after its graceful close: all of them
    // reached the client. (A request that arrived after its connection began closing was not
    // accepted: the client saw a clean end with it pending and may send it again elsewhere.)
    const stopped = stack.logRecords('dns stopped');
    expect(stopped.length).toBe(2);
    const processed = stopped.reduce((n, r) => n + (r.queries as number), 0);
    expect(processed).toBe(load.answered);
    expect(load.sent).toBe(load.answered + load.pendingAtEnd);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  describe.each([
    ['shared socket', false],
    ['handoff', true],
  ])('SIGHUP (%s)', (_name, handoff) => {
    it('applies a changed setting by replacing workers one at a time, without a failed request', async () => {
      const [dnsHttpA, dnsHttpB, agentHttpA, agentHttpB] = [
        await freeTcpPort(),
        await freeTcpPort(),
        await freeTcpPort(),
        await freeTcpPort(),
      ];
      const supervisor = {
        dns_workers: 2,
        dns_handoff: handoff,
        restart_delay: 0.05,
        web_workers: 0,
        reporter_workers: 0,
      };
      const dnsSection = (port: number) => `[dns]\nhttp_port = ${port}\n`;
      const stack = await startStack({
        supervisor,
        extra: dnsSection(dnsHttpA),
        agentExtra: `http_port = ${agentHttpA}`,
      });
      const before = await stack.status();
      const oldPids = await stack.workerPids();
      await eventually(() => getHostOk(stack.agentPorts), 10_000, 'agent answers');

      const tcp = new RouteLoad(stack.dnsPort(before), 8, { reconnect: true, spreadSources: true });
      const udp = new HostLoad(stack.agentPorts, 4);
      await eventually(() => (tcp.answered > 300 && udp.ok > 300 ? true : undefined), 10_000, 'load running');
      // dns keeps its port: the setting is still 0 and the master keeps the port it chose.
      stack.writeConfig(
        configText(0, stack.agentPorts, supervisor, dnsSection(dnsHttpB), `http_port = ${agentHttpB}`),
      );
      process.kill(stack.pid, 'SIGHUP');
      const after = await eventually(
        async () => {
          const s = await stack.status();
          const done = s.master.state === 'running' && s.master.lastReload !== undefined;
          return done ? s : undefined;
        },
        30_000,
        'reload finished',
      );
      const [tcpAtReload, udpAtReload] = [tcp.answered, udp.ok];
      await eventually(
        () => (tcp.answered > tcpAtReload + 100 && udp.ok > udpAtReload + 100 ? true : undefined),
        10_000,
        'load after reload',
      );
      await tcp.stop();
      await udp.stop();

      expect(after.master.lastReload).toMatchObject({ ok: true });
      const dns = after.services.find((x) => x.name === 'dns')!;
      const agent = after.services.find((x) => x.name === 'agent')!;
      expect(dns.processes.map((p) => p.ports.http)).toEqual([dnsHttpB, dnsHttpB]);
      expect(agent.processes.map((p) => p.ports.http)).toEqual([agentHttpB]);
      const newPids = [...dns.processes, ...agent.processes].map((p) => p.pid);
      for (const pid of oldPids) expect(newPids).not.toContain(pid);
      expect(dns.restarts + agent.restarts).toBe(0);
      // The new setting is live: the services answer on the new health ports.
      for (const port of [dnsHttpB, agentHttpB]) {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        expect(res.status).toBe(200);
      }
      expect(tcp.failures).toEqual([]);
      expect(udp.failures).toEqual([]);
      expect(tcp.resent).toBeGreaterThan(0); // old dns workers did drain their connections

      process.kill(stack.pid, 'SIGTERM');
      expect((await stack.exited).code).toBe(ExitCode.STOPPED);
    });
  });

  it('SIGKILL of the master leaves no process behind (within 5 s on an idle machine)', async () => {
    const stack = await startStack({ supervisor: { dns_workers: 2 } });
    const pids = await stack.workerPids();
    expect(pids.length).toBe(5); // 2 dns, the agent, the bus, lars shm
    process.kill(stack.pid, 'SIGKILL');
    await stack.exited;
    await eventually(() => (pids.every((p) => !alive(p)) ? true : undefined), 5_000, 'children gone');
  });

  it('a public port in use: fails once, at once, naming the port and its key (exit 1)', async () => {
    // Issue 16: a second lars up (or anything) on the dns port used to restart dns workers for ~10 s.
    const port = await heldTcpPort();
    const stack = await startStack({ dnsPort: port, waitUp: false, supervisor: { dns_workers: 1 } });
    const exit = await masterExit(stack);
    expect(exit).toBe(ExitCode.START_FAILED);
    const err = stack.errLines.join('\n');
    const lines = stack.errLines.filter((l) => l.includes('LARS_ERR_ADDRESS_IN_USE'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`lars: LARS_ERR_ADDRESS_IN_USE: dns cannot listen on tcp 127.0.0.1:${port}`);
    expect(lines[0]).toContain(`by pid ${process.pid}`); // this test process holds it
    expect(lines[0]).toContain('[dnsserver] port');
    expect(err).not.toMatch(/gave up|SIGHUP|EADDRINUSE|\n\s+at /);
    expect(stack.logRecords('worker started')).toHaveLength(0);
  });

  it('a second lars up on the same data directory is refused at once, in one line', async () => {
    const stack = await startStack({ supervisor: { dns_workers: 1 } });
    const second = spawn(process.execPath, [CLI, 'up', '--data-dir', stack.dataDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onTestFinished(() => void second.kill('SIGKILL'));
    let err = '';
    second.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((r) => second.once('exit', (c) => r(c)));
    expect(code).toBe(ExitCode.START_FAILED);
    expect(err.trim().split('\n')).toEqual([
      expect.stringMatching(
        new RegExp(
          `^lars: LARS_ERR_ADDRESS_IN_USE: another lars up \\(pid ${stack.pid}\\) is running on .*lars stop --data-dir`,
        ),
      ),
    ]);
    expect((await stack.status()).master.state).toBe('running');
  });

  it('gives up on a crash-looping service with a clear message (at start: exit 1, no SIGHUP advice)', async () => {
    // Something else holds the dns admin port (not checked before start): every dns worker fails.
    const port = await heldTcpPort();
    const stack = await startStack({
      waitUp: false,
      supervisor: { dns_workers: 1, restart_max: 3 },
      extra: `[dns]\nhttp_port = ${port}`,
    });
    const exit = await masterExit(stack);
    expect(exit).toBe(ExitCode.START_FAILED);
    const err = stack.errLines.join('\n');
    expect(err).toMatch(
      /lars up: dns gave up: 3 crashes within 60 s \(last: exit code 1\); not restarting it\. lars up stops\./,
    );
    expect(err).not.toContain('SIGHUP');
    expect(err).toContain('lars up: could not start');
    // Each worker's own failure is one line naming the port and the key, not a stack.
    expect(stack.output()).toContain(
      `LARS_ERR_ADDRESS_IN_USE: the dns admin HTTP cannot listen on tcp 127.0.0.1:${port}`,
    );
    expect(stack.output()).not.toMatch(/\n\S+ \|\s+at /);
    expect(stack.lines.some((l) => l.startsWith('Lars is up'))).toBe(false);
  });

  it('gives up on a service that keeps crashing while running, keeps the rest, exits 4 on stop', async () => {
    const stack = await startStack({ supervisor: { dns_workers: 1, restart_max: 2 } });
    const first = (await stack.workerPids('agent'))[0]!;
    process.kill(first, 'SIGKILL');
    const second = await eventually(
      async () => (await stack.workerPids('agent')).find((p) => p !== first),
      15_000,
      'agent restarted',
    );
    await eventually(
      async () =>
        (await stack.status()).services.find((x) => x.name === 'agent')!.state === 'running'
          ? true
          : undefined,
      15_000,
      'agent running',
    );
    process.kill(second, 'SIGKILL');
    const s = await eventually(
      async () => {
        const st = await stack.status();
        return st.services.find((x) => x.name === 'agent')!.state === 'failed' ? st : undefined;
      },
      15_000,
      'agent failed',
    );
    expect(s.services.find((x) => x.name === 'agent')!.gaveUp?.message).toMatch(
      /agent gave up: 2 crashes within 60 s \(last: killed by SIGKILL\)/,
    );
    expect(s.services.find((x) => x.name === 'dns')!.state).toBe('running');
    expect(s.master.state).toBe('running');
    await eventually(
      () => (stack.errLines.some((l) => l.includes('lars up: agent gave up')) ? true : undefined),
      5_000,
      'notice printed',
    );
    process.kill(stack.pid, 'SIGTERM');
    expect((await stack.exited).code).toBe(ExitCode.STOPPED_DEGRADED);
  });
});
