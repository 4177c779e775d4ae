import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AgentService } from '../src/agent/agent-service.js';
import { DEFAULT_LOAD_BALANCE_CONFIG } from '../src/agent/lb-config.js';
import { runRouteRegister } from '../src/cli/commands/route-register.js';
import { runRouteAdd, runRouteLs, runRouteWeight, type RouteCommandDeps } from '../src/cli/commands/route.js';
import type { CliIo } from '../src/cli/options.js';
import { ipToNumber, ipToWire } from '../src/protocol/index.js';
import type { NotifyResult, Store } from '../src/store/index.js';
import { backends, freshStore } from './helpers/databases.js';
import { startTestDns } from './helpers/dns.js';
import { Latch, waitFor } from './helpers/latch.js';
import { unusedPorts } from './helpers/ports.js';

// CLI of issue 15: `lars route add --weight`, `lars route weight`, `lars route ls` with origin,
// owner, expiry and weight, and `lars route register` (in process and as the compiled CLI).

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const CLI = join(ROOT, 'dist/src/cli/main.js');
const CLI_BUILT = existsSync(join(ROOT, 'dist/src/cli/commands/route-register.js'));
const sqlite = backends().find((b) => b.name === 'sqlite-file')!;

function captureIo(): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => void stdout.push(l), err: (l) => void stderr.push(l) };
}

const noDns = async (): Promise<NotifyResult> => ({ attempted: 0, acknowledged: 0, failures: [] });

/** dns and an agent (the one `lars route register` talks to) on a fresh store. */
async function startStack(store: Store) {
  const dns = await startTestDns(store, { register: false });
  const agent = new AgentService({
    host: '127.0.0.1',
    ports: [0, 0, 0],
    dns: { host: '127.0.0.1', port: dns.port },
    reporter: undefined,
    lb: DEFAULT_LOAD_BALANCE_CONFIG,
    reportIntervalS: 1,
    cacheDir: undefined,
    callerIp: ipToWire('127.0.0.1'),
    backoff: { initialMs: 20, maxMs: 200, jitter: 0.2 },
  });
  const { ports } = await agent.start();
  onTestFinished(() => agent.destroy());
  // The agent dials dns on its first registration: nothing to wait for.
  return { dns: dns.dns, agent, ports };
}

describe('route CLI: weights and origins', () => {
  it('add --weight, weight N / clear, and ls shows weight, origin, owner and expiry', async () => {
    const { store, url } = await freshStore(sqlite);
    const io = captureIo();
    const deps: RouteCommandDeps = { io, notifier: noDns };
    await runRouteAdd({ modid: '3', cmdid: '1', ip: '10.0.0.1', port: '80' }, { db: url, weight: '4' }, deps);
    expect(io.stdout[0]).toMatch(/^added 10\.0\.0\.1:80 to route 3\/1 \(id \d+, weight 4\); version \d+$/);
    await expect(
      runRouteAdd({ modid: '3', cmdid: '1', ip: '10.0.0.2', port: '80' }, { db: url, weight: '0' }, deps),
    ).rejects.toMatchObject({
      code: 'LARS_ERR_INVALID_ARGUMENT',
      message: expect.stringMatching(/--weight/),
    });
    await store.renewLeases({
      agent: 'host-b:8888',
      renew: [{ modid: 3, cmdid: 1, ip: ipToNumber('10.0.0.3'), port: 81, weight: 2, ttlMs: 10_000 }],
      remove: [],
      nowMs: Date.now(),
      dnsId: 'x',
    });

    io.stdout.length = 0;
    await runRouteLs('3', undefined, { db: url }, deps);
    expect(io.stdout[2]).toMatch(/^\d+\s+3\s+1\s+10\.0\.0\.1\s+80\s+4\s+manual\s+-\s+-$/);
    expect(io.stdout[3]).toMatch(
      /^\d+\s+3\s+1\s+10\.0\.0\.3\s+81\s+2\s+registered\s+host-b:8888\s+in (9|10) s$/,
    );

    await runRouteWeight(
      { modid: '3', cmdid: '1', ip: '10.0.0.3', port: '81', weight: '7' },
      { db: url },
      deps,
    );
    await runRouteWeight(
      { modid: '3', cmdid: '1', ip: '10.0.0.1', port: '80', weight: 'clear' },
      { db: url },
      deps,
    );
    await expect(
      runRouteWeight({ modid: '3', cmdid: '1', ip: '10.0.0.9', port: '81', weight: '2' }, { db: url }, deps),
    ).rejects.toMatchObject({ code: 'LARS_ERR_NOT_FOUND' });
    io.stdout.length = 0;
    await runRouteLs('3', '1', { db: url, json: true }, deps);
    const json = JSON.parse(io.stdout[0]!) as { routes: Array<Record<string, unknown>> };
    expect(json.routes).toEqual([
      expect.objectContaining({ ip: '10.0.0.1', weight: 1, origin: 'manual' }),
      expect.objectContaining({
        ip: '10.0.0.3',
        weight: 7,
        origin: 'registered',
        agent: 'host-b:8888',
        ttlS: 10,
        expiresAt: expect.any(Number),
      }),
    ]);
  });
});

describe('lars route register', () => {
  it('registers through the agent until told to stop, then deregisters', async () => {
    const { store } = await freshStore(sqlite);
    const { dns, ports } = await startStack(store);
    const io = captureIo();
    const stop = new Latch(1, 'stop');
    const done = runRouteRegister(
      { modid: '6', cmdid: '1', port: '9600' },
      { weight: '2', ttl: '3', agent: '127.0.0.1', ports: ports.join(','), timeout: '1000' },
      { io, until: async () => (await stop.wait(60_000), 'SIGINT') },
    );
    await waitFor(() => dns.snapshot.hosts(6, 1).length === 1, 5_000);
    expect(dns.snapshot.hosts(6, 1)).toEqual([{ ip: ipToWire('127.0.0.1'), port: 9600, weight: 2 }]);
    expect(io.stdout[0]).toMatch(
      /^registered 127\.0\.0\.1:9600 in route 6\/1 \(weight 2, ttl 3 s, renewed every 1\.0 s; the agent watches this process\); Ctrl-C deregisters$/,
    );
    stop.countDown();
    await done;
    expect(io.stdout[1]).toBe('deregistered 127.0.0.1:9600 in route 6/1 (SIGINT)');
    await waitFor(() => dns.snapshot.hosts(6, 1).length === 0, 5_000);
  });

  describe.skipIf(!CLI_BUILT)(
    `compiled CLI${CLI_BUILT ? '' : ' (skipped: run `npm run build` first)'}`,
    () => {
      for (const signal of ['SIGINT', 'SIGTERM'] as const) {
        it(`${signal} deregisters cleanly and exits 0`, async () => {
          const { store } = await freshStore(sqlite);
          const { dns, ports } = await startStack(store);
          const child = spawn(
            process.execPath,
            [CLI, 'route', 'register', '6', '2', '9700', '--ports', ports.join(','), '--ttl', '5'],
            { stdio: ['ignore', 'pipe', 'pipe'] },
          );
          onTestFinished(() => void (child.exitCode === null && child.kill('SIGKILL')));
          let out = '';
          let err = '';
          child.stdout.on('data', (d: Buffer) => void (out += d.toString()));
          child.stderr.on('data', (d: Buffer) => void (err += d.toString()));
          await waitFor(() => out.includes('registered'), 10_000);
          await waitFor(() => dns.snapshot.hosts(6, 2).length === 1, 5_000);
          const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
          child.kill(signal);
          expect(await exit).toBe(0);
          expect(out).toContain(`deregistered 127.0.0.1:9700 in route 6/2 (${signal})`);
          expect(err).toBe('');
          await waitFor(() => dns.snapshot.hosts(6, 2).length === 0, 5_000);
        });
      }

      it('fails without a stack: bad arguments, no agent', async () => {
        const bad = await lars(['route', 'register', '6', '1', '9000', '--weight', '0']);
        expect(bad.code).toBe(1);
        expect(bad.stderr).toMatch(
          /^lars: LARS_ERR_INVALID_ARGUMENT: --weight: expected an integer from 1 to 10000/,
        );
        const [p1, p2, p3] = await unusedPorts(3);
        const none = await lars(['route', 'register', '6', '1', '9000', '--ports', `${p1},${p2},${p3}`]);
        expect(none.code).toBe(1);
        expect(none.stderr).toMatch(/^lars: LARS_ERR_(TIMEOUT|NOT_CONNECTED): /);
        expect(none.stderr).not.toMatch(/\n\s+at /);
      });
    },
  );
});

function lars(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}
