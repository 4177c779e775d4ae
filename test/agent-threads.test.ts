import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ownerShard, portsOfShard } from '../src/agent/agent-shards.js';
import { ThreadedAgent } from '../src/agent/agent-threads.js';
import { DEFAULT_LOAD_BALANCE_CONFIG } from '../src/agent/lb-config.js';
import { LarsClient } from '../src/api/index.js';
import { ipToNumber, ipToWire } from '../src/protocol/index.js';
import { backends, freshStore } from './helpers/databases.js';
import { startTestDns } from './helpers/dns.js';
import { waitFor } from './helpers/latch.js';

const sqlite = backends().find((b) => b.name === 'sqlite-file')!;

describe('agent shard ownership', () => {
  it('gives each route to the shard that binds its original port', () => {
    expect(portsOfShard(0, 3, 2)).toEqual([0, 2]);
    expect(portsOfShard(1, 3, 2)).toEqual([1]);
    expect(ownerShard(1, 1, 3, 2)).toBe(0); // port index 2
    expect(ownerShard(1, 0, 3, 2)).toBe(1); // port index 1
    expect(ownerShard(-4, 0, 3, 3)).toBe(2);
    const counts = [0, 0, 0];
    for (let m = 0; m < 3000; m++) counts[ownerShard(m, 1, 3, 3)]!++;
    expect(counts).toEqual([1000, 1000, 1000]);
  });
});

describe('agent on several threads', () => {
  it('serves every route on every port, keeps one owner per route, and caches routes', async () => {
    const { store } = await freshStore(sqlite);
    for (let m = 1; m <= 6; m++) {
      await store.addHost(m, 1, ipToNumber('10.0.0.1'), 1000 + m);
      await store.addHost(m, 1, ipToNumber('10.0.0.2'), 2000 + m);
    }
    const { port: dnsPort } = await startTestDns(store, { register: false });
    const cacheDir = mkdtempSync(join(tmpdir(), 'lars-threads-'));
    const agent = new ThreadedAgent({
      threads: 2,
      host: '127.0.0.1',
      ports: [0, 0, 0],
      dns: { host: '127.0.0.1', port: dnsPort },
      reporter: undefined,
      lb: DEFAULT_LOAD_BALANCE_CONFIG,
      reportIntervalS: 1,
      cacheDir,
      callerIp: ipToWire('127.0.0.1'),
      workerScript: new URL('./fixtures/agent-worker.mjs', import.meta.url),
      logLevel: 'silent',
    });
    const { ports, httpPort } = await agent.start();
    onTestFinished(() => agent.destroy());
    expect(ports).toHaveLength(3);

    // Through the original port choice: never crosses threads.
    const sdk = new LarsClient({ host: '127.0.0.1', ports });
    onTestFinished(() => sdk.close());
    // The agent asks dns on the first try; a busy machine may need more than the default 100 ms.
    for (let m = 1; m <= 6; m++)
      expect(await sdk.regInit(m, 1, { tries: 200, intervalMs: 25 })).toHaveLength(2);
    // Every route through every port: forwarded to its owner and answered from the port it hit.
    for (const p of ports) {
      const one = new LarsClient({ host: '127.0.0.1', ports: [p] });
      onTestFinished(() => one.close());
      for (let m = 1; m <= 6; m++) {
        const h = await one.getHost(m, 1);
        expect([1000 + m, 2000 + m]).toContain(h.port);
      }
    }
    // One owner per route: a host ejected through one port is ejected for every port.
    const viaFirst = new LarsClient({ host: '127.0.0.1', ports: [ports[0]!] });
    onTestFinished(() => viaFirst.close());
    for (let i = 0; i < 10; i++) viaFirst.report(4, 1, '10.0.0.2', 2004, 1);
    await waitFor(() => agent.health().overloaded === 1, 10_000, 'shard stats show the overloaded host');
    const viaOther = new LarsClient({ host: '127.0.0.1', ports: [ports[1]!] });
    onTestFinished(() => viaOther.close());
    const picks = [];
    for (let i = 0; i < 20; i++) picks.push((await viaOther.getHost(4, 1)).port);
    // Only the probes (every 10th request of the route) reach the overloaded host.
    expect(picks.filter((p) => p === 2004)).toHaveLength(2);

    const health = (await (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).json()) as Record<
      string,
      unknown
    >;
    expect(health).toMatchObject({ threads: 2, routes: 6, hosts: 12 });
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    expect(metrics).toMatch(/lars_agent_routes 6/);

    await agent.close();
    const { RouteCache } = await import('../src/agent/route-cache.js');
    expect(new RouteCache(join(cacheDir, 'routes.json'), () => []).load().routes).toHaveLength(6);
  });
});

describe('agent on several threads: self-registration', () => {
  it('registrations through any port live in one shard: one lease batch per interval', async () => {
    const { store } = await freshStore(sqlite);
    const dns = await startTestDns(store, { register: false });
    const agent = new ThreadedAgent({
      threads: 2,
      host: '127.0.0.1',
      ports: [0, 0, 0],
      dns: { host: '127.0.0.1', port: dns.port },
      reporter: undefined,
      lb: DEFAULT_LOAD_BALANCE_CONFIG,
      reportIntervalS: 1,
      cacheDir: undefined,
      callerIp: ipToWire('127.0.0.1'),
      workerScript: new URL('./fixtures/agent-worker.mjs', import.meta.url),
      logLevel: 'silent',
    });
    const { ports } = await agent.start();
    onTestFinished(() => agent.destroy());
    // Each client uses one port only: registrations arriving at shard 1's port are forwarded.
    for (const [i, p] of ports.entries()) {
      const one = new LarsClient({ host: '127.0.0.1', ports: [p] });
      onTestFinished(() => one.close());
      const reg = await one.register({ modid: 8, cmdid: 1, port: 7000 + i, ttlS: 3 });
      expect(reg.port).toBe(7000 + i);
    }
    await waitFor(() => dns.dns.snapshot.hosts(8, 1).length === 3, 5_000);
    const leases = await store.listLeases();
    expect(new Set(leases.map((l) => l.agent))).toEqual(new Set([`127.0.0.1:${ports[0]}`]));
    await waitFor(() => agent.health().registrations === 3, 5_000);
  });
});
