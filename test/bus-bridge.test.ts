import type { Msg } from 'nats';
import { describe, expect, it, vi } from 'vitest';
import type { BridgeSettings } from '../src/bus/bridge/bridge-settings.js';
import type { BusMsg } from '../src/bus/index.js';
import { ErrorCode } from '../src/errors.js';
import { parseClasses, ShmClient } from '../src/shm/index.js';
import { client, startBus, type TestBus } from './helpers/bus.js';
import { waitFor, waitForAsync } from './helpers/latch.js';
import { NATS_URL, natsClient, natsReachable, PrivateNats, randomPrefix } from './helpers/nats.js';
import { startDaemon } from './helpers/shm.js';

vi.setConfig({ testTimeout: 60_000 });

const reachable = await natsReachable();

function settings(prefix: string, s: Partial<BridgeSettings> = {}): BridgeSettings {
  return { url: NATS_URL, prefix, exports: [], imports: [], serves: [], forwards: [], ...s };
}

/** A bus with a bridge (a "host"), once the bridge reached NATS. */
async function host(bridge: BridgeSettings, shmSocket?: string): Promise<TestBus> {
  const bus = await startBus({}, { bridge, httpPort: 0, ...(shmSocket ? { shmSocket } : {}) });
  await bus.svc.engine.bridge!.up;
  return bus;
}

function collect(): { got: Msg[]; cb: (err: unknown, m: Msg) => void } {
  const got: Msg[] = [];
  return { got, cb: (_e, m) => got.push(m) };
}

describe.skipIf(!reachable)('bus bridge to NATS', () => {
  it('exports local subjects to NATS (prefix + subject), with origin and hops, hierarchically', async () => {
    const t = randomPrefix();
    const a = await host(settings(`${t}.a`, { exports: ['events'] }));
    const nc = await natsClient();
    const { got, cb } = collect();
    nc.subscribe(`${t}.a.>`, { callback: cb });
    await nc.flush();
    const pub = await client(a, 'pub');
    pub.publish('events', 'top', { headers: { k: 'v' } });
    pub.publish('events.cam1.meta', 'deep');
    pub.publish('other', 'not exported');
    await waitFor(() => got.length >= 2, 5_000, 'exports');
    await pub.flush();
    expect(got.map((m) => [m.subject, m.string()])).toEqual([
      [`${t}.a.events`, 'top'],
      [`${t}.a.events.cam1.meta`, 'deep'],
    ]);
    expect(got[0]!.headers?.get('k')).toBe('v');
    expect(got[0]!.headers?.get('Lars-Origin')).toBe(a.svc.engine.busId);
    expect(got[0]!.headers?.get('Lars-Hops')).toBe('1');
    expect(a.svc.engine.bridge!.counters.exported).toBe(2);
  });

  it('two hosts: import publishes locally, without loops; the hop limit stops re-exports', async () => {
    const t = randomPrefix();
    // A exports events and also imports its own export (it must not come back as a duplicate).
    const a = await host(settings(`${t}.a`, { exports: ['events'], imports: [`${t}.a.events`] }));
    // B imports A's events and exports them again under its own prefix (hop limit) plus its own.
    const b = await host(settings(`${t}.b`, { imports: [`${t}.a.events`], exports: [`${t}`] }));
    const onA: BusMsg[] = [];
    const onB: BusMsg[] = [];
    (await client(a, 'sub')).subscribe('events', { callback: (m) => onA.push(m) });
    const subB = await client(b, 'sub');
    subB.subscribe(`${t}.a`, { callback: (m) => onB.push(m) });
    await subB.flush();
    const nc = await natsClient();
    const { got: reexported, cb } = collect();
    nc.subscribe(`${t}.b.>`, { callback: cb });
    await nc.flush();
    const pubA = await client(a, 'pub');
    pubA.publish('events.door', 'open');
    await waitFor(() => onB.length === 1, 5_000, 'import on B');
    expect(onB[0]!.subject).toBe(`${t}.a.events.door`);
    expect(onB[0]!.string()).toBe('open');
    expect(onB[0]!.from).toBe('lars-bridge');
    expect(onB[0]!.headers['Lars-Origin']).toBe(a.svc.engine.busId);
    // A sentinel published on B after: it is exported, the imported message was not.
    (await client(b, 'pubB')).publish(`${t}.mark`, 'sentinel');
    await waitFor(() => reexported.length === 1, 5_000, 'sentinel');
    expect(reexported[0]!.subject).toBe(`${t}.b.${t}.mark`);
    expect(b.svc.engine.bridge!.counters.loops).toBeGreaterThanOrEqual(1);
    await waitFor(() => a.svc.engine.bridge!.counters.loops >= 1, 5_000, 'own echo dropped on A');
    await pubA.flush();
    expect(onA.map((m) => m.string())).toEqual(['open']);
  });

  it('serve answers NATS requests with local servers; forward sends unserved local requests to NATS', async () => {
    const t = randomPrefix();
    const b = await host(settings(`${t}.b`, { serves: ['svc.echo', 'svc.none'] }));
    const a = await host(settings(`${t}.a`, { forwards: [`${t}.b.svc`, 'native'] }));
    const server = await client(b, 'server');
    server.serve('svc.echo', (req) => `echo ${req.string()} ${req.headers.h ?? ''}`);
    await server.flush();
    const nc = await natsClient();
    const direct = await nc.request(`${t}.b.svc.echo`, Buffer.from('x'), { timeout: 5_000 });
    expect(direct.string()).toBe('echo x ');
    const none = await nc.request(`${t}.b.svc.none`, Buffer.from('x'), { timeout: 5_000 });
    expect(none.headers?.get('Lars-Error')).toBe(ErrorCode.BUS_NO_RESPONDERS);
    // Host A has no server of the topic: the request crosses NATS to host B's server.
    const caller = await client(a, 'caller');
    const rep = await caller.request(`${t}.b.svc.echo`, 'y', { headers: { h: 'hdr' }, timeoutMs: 5_000 });
    expect(rep.string()).toBe('echo y hdr');
    expect(a.svc.engine.bridge!.counters.forwarded).toBe(1);
    // A native NATS responder answers forwarded requests too; nobody on NATS: no responders.
    nc.subscribe(`native.${t}`, { callback: (_e, m) => m.respond(Buffer.from('from nats')) });
    await nc.flush();
    expect((await caller.request(`native.${t}`, 'z')).string()).toBe('from nats');
    await expect(caller.request(`native.${t}.nobody`, 'z')).rejects.toMatchObject({
      code: ErrorCode.BUS_NO_RESPONDERS,
    });
    // Not a forward subject: the bus's own no-responders, at once.
    await expect(caller.request('elsewhere', 'z')).rejects.toMatchObject({
      code: ErrorCode.BUS_NO_RESPONDERS,
    });
  });

  it('shared-memory payloads are copied out up to max_payload, counted as too large above it', async () => {
    const t = randomPrefix();
    const shmd = await startDaemon('addon', { classes: parseClasses('4KiB:16,2MiB:8') });
    const a = await host(settings(`${t}.a`, { exports: ['frames'] }), shmd.socket);
    const nc = await natsClient();
    const { got, cb } = collect();
    nc.subscribe(`${t}.a.frames`, { callback: cb });
    await nc.flush();
    const shm = await ShmClient.connect({ socket: shmd.socket });
    const pub = await client(a, 'pub', { shm });
    const small = await shm.alloc(100_000);
    small.bytes().fill(7);
    pub.publish('frames', small);
    const big = await shm.alloc(nc.info!.max_payload + 1);
    pub.publish('frames', big);
    await waitFor(() => got.length === 1 && a.svc.engine.bridge!.counters.tooLarge === 1, 5_000, 'export');
    expect(got[0]!.data.length).toBe(100_000);
    expect(got[0]!.data.every((x) => x === 7)).toBe(true);
    // The bridge released both references: the pool is whole again.
    await waitForAsync(
      async () => (await shm.stat()).classes.every((k) => k.free === k.total),
      5_000,
      'pool free',
    );
    await shm.destroy();
  });

  it('NATS restarted during traffic: local traffic untouched, bridge shows disconnected, then reconnects', async () => {
    const t = randomPrefix();
    const nats = await PrivateNats.start();
    const a = await host({ ...settings(`${t}.a`, { exports: ['tick'] }), url: nats.url });
    const sub = await client(a, 'sub');
    const local: number[] = [];
    sub.subscribe('tick', { callback: (m) => local.push(Number(m.string())) });
    await sub.flush();
    const pub = await client(a, 'pub');
    let n = 0;
    const timer = setInterval(() => pub.publish('tick', String(n++)), 2);
    try {
      await waitFor(() => a.svc.engine.bridge!.counters.exported > 20, 5_000, 'exports before');
      await nats.stop();
      await waitFor(() => a.svc.engine.bridge!.state === 'disconnected', 10_000, 'bridge disconnected');
      const health = (await (await fetch(`http://127.0.0.1:${a.httpPort}/healthz`)).json()) as {
        bridge: { state: string };
      };
      expect(health.bridge.state).toBe('disconnected');
      const metrics = await (await fetch(`http://127.0.0.1:${a.httpPort}/metrics`)).text();
      expect(metrics).toMatch(/^lars_bus_bridge_connected 0$/m);
      const before = local.length;
      await waitFor(() => local.length > before + 50, 5_000, 'local traffic while NATS is down');
      await nats.restart();
      await waitFor(() => a.svc.engine.bridge!.state === 'connected', 20_000, 'bridge reconnected');
      const nc = await natsClient(nats.url);
      const { got, cb } = collect();
      nc.subscribe(`${t}.a.tick`, { callback: cb });
      await nc.flush();
      await waitFor(() => got.length > 10, 10_000, 'exports after the restart');
    } finally {
      clearInterval(timer);
    }
    await pub.flush();
    await waitFor(() => local.length === n, 5_000, 'every local message');
    expect(local).toEqual([...Array(n).keys()]); // none lost, in order
    expect(a.svc.engine.bridge!.counters.reconnects).toBeGreaterThanOrEqual(1);
  });
});
