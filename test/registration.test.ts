import { spawn, type ChildProcess } from 'node:child_process';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AgentService, type AgentServiceOptions } from '../src/agent/agent-service.js';
import { DEFAULT_LOAD_BALANCE_CONFIG } from '../src/agent/lb-config.js';
import { LarsClient, type Host } from '../src/api/index.js';
import { ErrorCode } from '../src/errors.js';
import { ipToWire } from '../src/protocol/index.js';
import type { Store } from '../src/store/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';
import { startTestDns } from './helpers/dns.js';
import { Latch, waitFor, waitForAsync } from './helpers/latch.js';

// Self-registration end to end (issue 15): SDK -> agent -> dns -> database -> every agent.

const CHILD = new URL('./fixtures/register-child.mjs', import.meta.url);

async function startAgent(dnsPort: number, extra: Partial<AgentServiceOptions> = {}) {
  const agent = new AgentService({
    host: '127.0.0.1',
    ports: [0, 0, 0],
    dns: { host: '127.0.0.1', port: dnsPort },
    reporter: undefined,
    lb: DEFAULT_LOAD_BALANCE_CONFIG,
    reportIntervalS: 1,
    cacheDir: undefined,
    callerIp: ipToWire('127.0.0.1'),
    backoff: { initialMs: 20, maxMs: 200, jitter: 0.2 },
    ...extra,
  });
  const { ports } = await agent.start();
  onTestFinished(() => agent.destroy());
  const client = new LarsClient({ host: '127.0.0.1', ports, timeoutMs: 5_000 });
  onTestFinished(() => client.close());
  return { agent, ports, client };
}

/** The route as another agent serves it (asked until the predicate holds). */
async function routeUntil(
  client: LarsClient,
  modid: number,
  cmdid: number,
  ok: (hosts: Host[]) => boolean,
  timeoutMs = 3_000,
): Promise<Host[]> {
  let hosts: Host[] = [];
  await waitForAsync(
    async () => {
      hosts = await client.getRoute(modid, cmdid);
      return ok(hosts);
    },
    timeoutMs,
    `route ${modid}/${cmdid}`,
  );
  return hosts;
}

const portsOf = (hosts: Host[]) => hosts.map((h) => h.port).sort((a, b) => a - b);

function spawnChild(
  agentPorts: number[],
  args: { port: number; ttl: number; watch: boolean; sigterm?: boolean },
) {
  const child = spawn(
    process.execPath,
    [
      CHILD.pathname,
      agentPorts.join(','),
      '6',
      '1',
      String(args.port),
      String(args.ttl),
      args.watch ? '1' : '0',
      args.sigterm ? '1' : '0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

async function registered(child: ChildProcess): Promise<string> {
  const latch = new Latch(1, 'child registered');
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('registered')) latch.countDown();
  });
  child.stderr!.on('data', (d: Buffer) => void (err += d.toString()));
  child.once('exit', (code) => {
    if (!out.includes('registered')) throw new Error(`child exited (${code}) before registering: ${err}`);
  });
  await latch.wait(10_000);
  return out;
}

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'self-registration end to end'), () => {
    async function stack(store: Store) {
      // Polls every 60 s: only the immediate path can make these changes visible in time.
      const dns = await startTestDns(store, { register: false });
      const producer = await startAgent(dns.port);
      const consumer = await startAgent(dns.port);
      // No wait for the dns links: an agent dials dns on its first request or registration.
      return { dns, producer, consumer };
    }

    it('a registered instance is served by another agent; deregistration removes it', async () => {
      const { store } = await freshStore(b);
      const { dns, producer, consumer } = await stack(store);
      await expect(consumer.client.getRoute(6, 1)).resolves.toEqual([]);

      const reg = await producer.client.register({ modid: 6, cmdid: 1, port: 9101 });
      expect(reg).toMatchObject({ ip: '127.0.0.1', port: 9101, weight: 1, ttlS: 10, watched: true });
      expect(portsOf(await routeUntil(consumer.client, 6, 1, (h) => h.length === 1, 1_200))).toEqual([9101]);
      const [lease] = await store.listLeases();
      expect(lease).toMatchObject({
        agent: '127.0.0.1:' + producer.ports[0],
        ttlMs: 10_000,
        createdRow: true,
      });

      await reg.deregister();
      await reg.deregister();
      expect(reg.active).toBe(false);
      await routeUntil(consumer.client, 6, 1, (h) => h.length === 0, 1_200);
      expect(await store.getRoute(6, 1)).toEqual([]);
      expect(dns.dns.leaseStats).toMatchObject({ added: 1, removed: 1 });
    });

    it('weights 1:3 split calls 1:3 at every agent; close() deregisters', async () => {
      const { store } = await freshStore(b);
      const { producer, consumer } = await stack(store);
      await producer.client.register({ modid: 6, cmdid: 1, port: 9201, weight: 1 });
      await producer.client.register({ modid: 6, cmdid: 1, port: 9202, weight: 3 });
      const hosts = await routeUntil(consumer.client, 6, 1, (h) => h.length === 2);
      expect(hosts.map((h) => h.weight ?? 1).sort()).toEqual([1, 3]);
      const count = new Map<number, number>();
      for (let i = 0; i < 10_000; i++) {
        const h = await consumer.client.getHost(6, 1);
        count.set(h.port, (count.get(h.port) ?? 0) + 1);
      }
      expect(Math.abs((count.get(9201) ?? 0) / 10_000 - 0.25)).toBeLessThan(0.01);
      expect(Math.abs((count.get(9202) ?? 0) / 10_000 - 0.75)).toBeLessThan(0.01);

      await producer.client.close();
      await routeUntil(consumer.client, 6, 1, (h) => h.length === 0);
    });

    it('a SIGKILLed registering process is removed at once when the agent watches it', async () => {
      const { store } = await freshStore(b);
      const { consumer, producer } = await stack(store);
      const child = spawnChild(producer.ports, { port: 9301, ttl: 10, watch: true });
      expect(await registered(child)).toContain('watched=true');
      await routeUntil(consumer.client, 6, 1, (h) => h.length === 1);
      child.kill('SIGKILL');
      await exited(child);
      const killedAt = Date.now();
      // Far sooner than the 10 s ttl: the agent saw the process end.
      await routeUntil(consumer.client, 6, 1, (h) => h.length === 0, 2_000);
      expect(Date.now() - killedAt).toBeLessThan(10_000);
      expect(producer.agent.health()).toMatchObject({ registrations: 0 });
    });

    it('a SIGKILLed process the agent cannot watch is removed within ttl + 1 s', async () => {
      const { store } = await freshStore(b);
      const { consumer, producer } = await stack(store);
      const child = spawnChild(producer.ports, { port: 9302, ttl: 2, watch: false });
      expect(await registered(child)).toContain('watched=false');
      await routeUntil(consumer.client, 6, 1, (h) => h.length === 1);
      child.kill('SIGKILL');
      await exited(child);
      await routeUntil(consumer.client, 6, 1, (h) => h.length === 0, 3_000);
    });

    it('SIGTERM with deregisterOnSigterm: withdrawn, and the process still ends', async () => {
      const { store } = await freshStore(b);
      const { consumer, producer } = await stack(store);
      const child = spawnChild(producer.ports, { port: 9303, ttl: 10, watch: false, sigterm: true });
      await registered(child);
      await routeUntil(consumer.client, 6, 1, (h) => h.length === 1);
      child.kill('SIGTERM');
      await exited(child);
      expect(child.signalCode).toBe('SIGTERM');
      await routeUntil(consumer.client, 6, 1, (h) => h.length === 0, 1_200);
      expect(producer.agent.health()).toMatchObject({ registrations: 0 });
    });

    it('1,000 local registrations cost dns one renewal message per interval', async () => {
      const { store } = await freshStore(b);
      const { dns, producer, consumer } = await stack(store);
      const regs = await Promise.all(
        Array.from({ length: 1_000 }, (_, i) =>
          producer.client.register({ modid: 6, cmdid: 2, port: 20_000 + i, ttlS: 6, watchProcess: false }),
        ),
      );
      expect(regs).toHaveLength(1_000);
      await routeUntil(consumer.client, 6, 2, (h) => h.length === 1_000, 10_000);
      await dns.dns.leasesFlushed();
      // Steady state: count what dns receives over three renewal intervals (2 s each: ttl / 3; a
      // ttl with room for a busy machine's late renewals, which would otherwise lapse and flap).
      const agentBatches = () => producer.agent.registrationStats().batches;
      const a0 = agentBatches();
      const d0 = dns.dns.leaseStats.batches;
      await waitFor(() => agentBatches() >= a0 + 3, 10_000);
      const frames = dns.dns.leaseStats.batches - d0;
      const batches = agentBatches() - a0;
      // One frame per batch (1,000 leases fit one), and dns received exactly those.
      expect(producer.agent.registrationStats().frames).toBe(producer.agent.registrationStats().batches);
      expect(frames).toBe(batches);
      expect(batches).toBeGreaterThanOrEqual(3);
      expect(await store.listLeases()).toHaveLength(1_000);
      expect(dns.dns.leaseStats.added).toBe(1_000);
    });

    it('an agent restart: the SDK renewal registers the instance with the new agent, dns keeps the lease', async () => {
      const { store } = await freshStore(b);
      const dns = await startTestDns(store, { register: false });
      const first = await startAgent(dns.port);
      const consumer = await startAgent(dns.port);
      const reg = await first.client.register({ modid: 6, cmdid: 3, port: 9401, ttlS: 3 });
      await routeUntil(consumer.client, 6, 3, (h) => h.length === 1);
      const ports = first.ports;
      await first.agent.close();
      // The replacement on the same ports (a supervisor restart); the SDK keeps renewing.
      const second = await startAgent(dns.port, { ports });
      await waitFor(() => second.agent.registrationCount === 1, 3_000);
      expect(reg.active).toBe(true);
      const [lease] = await store.listLeases();
      expect(lease!.port).toBe(9401);
      expect(portsOf(await consumer.client.getRoute(6, 3))).toEqual([9401]);
    });

    it('refusals and bad options are typed errors', async () => {
      const { store } = await freshStore(b);
      const dns = await startTestDns(store, { register: false });
      const { client } = await startAgent(dns.port, { maxRegistrations: 1 });
      await client.register({ modid: 6, cmdid: 1, port: 1 });
      await expect(client.register({ modid: 6, cmdid: 1, port: 2 })).rejects.toMatchObject({
        code: ErrorCode.RETCODE,
        message: expect.stringMatching(/limit/),
      });
      await expect(client.register({ modid: 6, cmdid: 1, port: 0 })).rejects.toMatchObject({
        code: ErrorCode.INVALID_ARGUMENT,
      });
      await expect(client.register({ modid: 6, cmdid: 1, port: 3, weight: 0 })).rejects.toMatchObject({
        code: ErrorCode.INVALID_ARGUMENT,
      });
      await expect(client.register({ modid: 6, cmdid: 1, port: 3, ip: '1.2.3' })).rejects.toMatchObject({
        code: ErrorCode.INVALID_ARGUMENT,
      });
    });
  });
});
