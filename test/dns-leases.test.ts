import { describe, expect, it, onTestFinished } from 'vitest';
import { Dispatcher } from '../src/net/dispatcher.js';
import { TcpClient } from '../src/net/tcp-client.js';
import {
  ipToNumber,
  ipToWire,
  MsgId,
  type GetRouteResponse,
  type Lease,
  type LeaseBatch,
} from '../src/protocol/index.js';
import type { Store } from '../src/store/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';
import { startTestDns } from './helpers/dns.js';
import { waitFor, waitForAsync } from './helpers/latch.js';
import { unusedPort } from './helpers/ports.js';
import { RawRouteClient, type RawRoute } from './helpers/raw-route-client.js';
import { TcpProxy } from './helpers/tcp-proxy.js';
import { openStore } from '../src/store/index.js';
import { freshDatabase } from './helpers/databases.js';

// The route service's side of self-registration (issue 15): LeaseBatch frames from agents become
// RouteData rows that original agents see appear and disappear, weights, expiry, protection.

const IP = '10.2.0.1';
const lease = (port: number, extra: Partial<Lease> = {}, host: Partial<Lease['host']> = {}): Lease => ({
  modid: 5,
  cmdid: 1,
  host: { ip: ipToWire(IP), port, ...host },
  ttl_s: 10,
  ...extra,
});

/** What an agent does on its dns link: lease batches out, route answers and pushes in. */
class AgentLink {
  readonly routes: GetRouteResponse[] = [];
  private readonly client: TcpClient;
  /** Sent again in full on every (re)connect, as the agent does. */
  current: LeaseBatch | undefined;

  constructor(port: number, backoff = { initialMs: 50, maxMs: 200, jitter: 0 }) {
    this.client = new TcpClient({
      host: '127.0.0.1',
      port,
      backoff,
      dispatcher: new Dispatcher<TcpClient>().on(MsgId.GetRouteResponse, (m) => void this.routes.push(m)),
      onConnect: (c) => {
        if (this.current) c.send(MsgId.LeaseBatch, this.current);
      },
    });
    this.client.start();
    onTestFinished(() => this.client.destroy());
  }

  get connected(): boolean {
    return this.client.connected;
  }

  send(batch: LeaseBatch): void {
    this.current = { ...batch, remove: [] };
    this.client.send(MsgId.LeaseBatch, batch);
  }

  sendRaw(msgid: number, body: Uint8Array): void {
    this.client.sendRaw(msgid, body);
  }
}

async function rawClient(port: number): Promise<RawRouteClient> {
  const c = await RawRouteClient.connect(port);
  onTestFinished(() => c.close());
  return c;
}

const ports = (r: RawRoute | undefined) => (r?.hosts ?? []).map((h) => h.port).sort();
const last = (c: RawRouteClient) => c.routes.at(-1);
const leaseCount = async (store: Store) => (await store.listLeases()).length;

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'dns leases'), () => {
    it('an original agent sees a registered host appear at once and disappear on deregistration', async () => {
      const { store } = await freshStore(b);
      await store.addHost(5, 1, ipToNumber(IP), 8000);
      // Polls every 60 s: only the immediate poll that a lease change triggers can be this fast.
      const { dns, port } = await startTestDns(store, { register: false });
      const original = await rawClient(port);
      original.ask(5, 1);
      expect(ports(await original.waitForCount(1))).toEqual([8000]);

      const agent = new AgentLink(port);
      agent.send({ agent: 'host-a:8888', renew: [lease(9001)], remove: [] });
      const appeared = await original.waitForCount(2, 1_000);
      expect(ports(appeared)).toEqual([8000, 9001]);
      expect(appeared.unknownFields).toBe(0);

      // A renewal changes nothing visible: no push, no version bump.
      const v = dns.snapshot.version;
      agent.send({ agent: 'host-a:8888', renew: [lease(9001)], remove: [] });
      await waitFor(() => dns.leaseStats.renewed === 1);
      expect(await store.getVersion()).toBe(v);

      // A weight: pushed; the original agent skips the unknown field and keeps the host.
      agent.send({ agent: 'host-a:8888', renew: [lease(9001, {}, { weight: 3 })], remove: [] });
      const weighted = await original.waitForCount(3, 1_000);
      expect(ports(weighted)).toEqual([8000, 9001]);
      expect(weighted.unknownFields).toBe(1);

      agent.send({ agent: 'host-a:8888', renew: [], remove: [lease(9001)] });
      const gone = await original.waitForCount(4, 1_000);
      expect(ports(gone)).toEqual([8000]);
      expect(dns.leaseStats).toMatchObject({ added: 1, removed: 1 });
      expect(await leaseCount(store)).toBe(0);
    });

    it('our agents get the weight in HostInfo.weight; bad leases are counted and skipped', async () => {
      const { store } = await freshStore(b);
      const { dns, port } = await startTestDns(store, { register: false });
      const agent = new AgentLink(port);
      await waitFor(() => agent.connected);
      agent.sendRaw(MsgId.GetRouteRequest, new Uint8Array([0x08, 5, 0x10, 1]));
      await waitFor(() => agent.routes.length === 1);
      agent.send({
        agent: 'a',
        renew: [
          lease(9001, {}, { weight: 4 }),
          lease(0),
          lease(9002, { ttl_s: 999_999 }),
          lease(9003, {}, { weight: 10_001 }),
          { modid: 5, cmdid: 1, ttl_s: 10 },
        ],
        remove: [],
      });
      await waitFor(() => agent.routes.length === 2);
      expect(agent.routes[1]!.host).toEqual([{ ip: ipToWire(IP), port: 9001, weight: 4 }]);
      expect(dns.leaseStats.badLeases).toBe(4);
      expect(dns.snapshot.hosts(5, 1)).toEqual([{ ip: ipToWire(IP), port: 9001, weight: 4 }]);
    });

    it('a lease not renewed within its ttl expires and is pushed away', async () => {
      const { store } = await freshStore(b);
      const { dns, port } = await startTestDns(store, { register: false, leaseGraceMs: 0, leaseSweepMs: 50 });
      const original = await rawClient(port);
      original.ask(5, 1);
      await original.waitForCount(1);
      const agent = new AgentLink(port);
      agent.send({ agent: 'a', renew: [lease(9001, { ttl_s: 1 })], remove: [] });
      await original.waitForCount(2, 1_000);
      const [l] = await store.listLeases();
      expect(l!.expiresAt - l!.renewedAt).toBe(1_000);
      const gone = await original.waitForCount(3, 3_000);
      expect(ports(gone)).toEqual([]);
      expect(dns.leaseStats.expired).toBe(1);
      expect(Date.now()).toBeGreaterThanOrEqual(l!.expiresAt);
    });

    it('a freshly started instance expires nothing its agents could not have renewed yet', async () => {
      const { store } = await freshStore(b);
      // Left by a previous run: expired by the stored clock, but this instance has just started.
      await store.renewLeases({
        agent: 'a',
        renew: [{ modid: 5, cmdid: 1, ip: ipToNumber(IP), port: 9001, weight: 1, ttlMs: 1000 }],
        remove: [],
        nowMs: Date.now() - 60_000,
        dnsId: 'old',
      });
      const started = Date.now();
      const { dns } = await startTestDns(store, { register: false, leaseGraceMs: 500, leaseSweepMs: 60_000 });
      await dns.sweepLeases();
      expect(await leaseCount(store)).toBe(1);
      expect(dns.snapshot.hosts(5, 1)).toHaveLength(1);
      // Once ttl + grace have passed with nobody renewing it, it goes.
      await waitForAsync(async () => {
        await dns.sweepLeases();
        return (await leaseCount(store)) === 0;
      }, 5_000);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_500);
    });

    it('two dns instances share one database: a registration at one reaches the other at once; expiry happens once', async () => {
      const { store } = await freshStore(b);
      const opts = { leaseGraceMs: 0, leaseSweepMs: 50 };
      const a = await startTestDns(store, opts);
      const bb = await startTestDns(store, opts);
      const atB = await rawClient(bb.port);
      atB.ask(5, 1);
      await atB.waitForCount(1);
      const agent = new AgentLink(a.port);
      agent.send({ agent: 'a', renew: [lease(9001, { ttl_s: 1 })], remove: [] });
      // B polls every 60 s on its own: it is A's request for an immediate poll that brings this.
      expect(ports(await atB.waitForCount(2, 1_000))).toEqual([9001]);
      expect(ports(await atB.waitForCount(3, 3_000))).toEqual([]);
      await waitFor(() => a.dns.leaseStats.expired + bb.dns.leaseStats.expired === 1);
      expect(a.dns.leaseStats.expired + bb.dns.leaseStats.expired).toBe(1);
      const removals = (await store.changesAfter(0)).filter((c) => c.modid === 5);
      expect(removals).toHaveLength(2);
    });

    it('a dns restart during renewals: nothing that was being renewed expires, the rest does', async () => {
      const { store } = await freshStore(b);
      const port = await unusedPort();
      const opts = { port, register: false, leaseGraceMs: 1_000, leaseSweepMs: 50 };
      const first = await startTestDns(store, opts);
      const agent = new AgentLink(port);
      const live = lease(9001, { ttl_s: 1 });
      agent.send({ agent: 'a', renew: [live, lease(9002, { ttl_s: 1 })], remove: [] });
      await waitForAsync(async () => (await leaseCount(store)) === 2);
      // From now on the agent renews 9001 only (9002's process died) every ttl/3.
      agent.current = { agent: 'a', renew: [live], remove: [] };
      const renew = setInterval(() => {
        if (agent.connected && agent.current) agent.send(agent.current);
      }, 333);
      onTestFinished(() => clearInterval(renew));

      await first.dns.destroy();
      // Down for longer than the ttl: by the stored clock both leases are past their expiry.
      const [l] = await store.listLeases({ agent: 'a' });
      await waitFor(() => Date.now() > l!.expiresAt + 200, 3_000);
      const second = await startTestDns(store, opts);
      const seen: RawRoute[] = [];
      const watcher = await rawClient(port);
      watcher.ask(5, 1);
      await waitFor(() => watcher.routes.length > 0);
      // 9002 goes; 9001 is in every answer and push the new instance ever sent.
      await waitFor(() => ports(last(watcher)).join() === '9001', 5_000);
      seen.push(...watcher.routes);
      expect(seen.every((r) => r.hosts.some((h) => h.port === 9001))).toBe(true);
      expect(second.dns.leaseStats.expired).toBe(1);
      expect((await store.listLeases()).map((x) => x.port)).toEqual([9001]);
    });

    // (A SQLite file cannot be taken away from an open handle the same way.)
    it.skipIf(b.kind === 'sqlite')(
      'after its database comes back, an instance expires nothing for a ttl: renewals lost meanwhile are not held against leases',
      async () => {
        const database = await freshDatabase(b);
        const target = new URL(database.url);
        const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port) });
        onTestFinished(() => proxy.close());
        const viaProxy = new URL(database.url);
        viaProxy.port = String(proxy.port);
        const store = await openStore(viaProxy.toString());
        onTestFinished(() => store.close());
        await store.migrate();
        const direct = await openStore(database.url);
        onTestFinished(() => direct.close());
        const { dns, port } = await startTestDns(store, {
          register: false,
          leaseGraceMs: 500,
          leaseSweepMs: 50,
        });
        const agent = new AgentLink(port);
        agent.send({ agent: 'a', renew: [lease(9001, { ttl_s: 1 })], remove: [] });
        await waitForAsync(async () => (await direct.listLeases()).length === 1);

        proxy.pause();
        // Renewals sent while the database is away are lost; the sweeps fail too.
        agent.send({ agent: 'a', renew: [lease(9001, { ttl_s: 1 })], remove: [] });
        const [l] = await direct.listLeases();
        await waitFor(() => Date.now() > l!.expiresAt + 300 && dns.leaseStats.sweepFailures >= 2, 5_000);
        proxy.resume();
        await waitFor(() => dns.health().leaseBrake === false && dns.leaseStats.sweepFailures >= 2);
        const back = Date.now();
        // The lease is past its expiry by the stored clock, yet for ttl + grace after the database
        // came back this instance keeps it: its agent had no way to renew it.
        await waitFor(() => Date.now() > back + 800, 3_000);
        expect((await direct.listLeases()).map((x) => x.port)).toEqual([9001]);
        expect(dns.leaseStats.expired).toBe(0);
        // Not renewed after all: it goes once the guard's window has passed.
        await waitForAsync(async () => (await direct.listLeases()).length === 0, 5_000);
        expect(Date.now() - back).toBeGreaterThanOrEqual(1_000);
      },
    );
  });
});
