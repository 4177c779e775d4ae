import { describe, expect, it, onTestFinished } from 'vitest';
import { ipToNumber } from '../src/protocol/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';
import { waitFor } from './helpers/latch.js';
import { startTestDns } from './helpers/dns.js';
import { RawRouteClient } from './helpers/raw-route-client.js';

const T0 = 1_700_000_000;

const startDns = startTestDns;

async function client(port: number): Promise<RawRouteClient> {
  const c = await RawRouteClient.connect(port);
  onTestFinished(() => c.close());
  return c;
}

const hostsOf = (r: { hosts: Array<{ ip: number; port: number }> }) =>
  r.hosts.map((h) => `${h.ip >>> 0}:${h.port}`).sort();

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'dns service'), () => {
    it('answers a raw-bytes client, including IPs from 128.0.0.0 up and unknown routes', async () => {
      const { store } = await freshStore(b);
      await store.addHost(1, 1, ipToNumber('192.168.1.177'), 9000);
      await store.addHost(1, 1, ipToNumber('255.255.255.254'), 65535);
      await store.addHost(1, 1, ipToNumber('10.0.0.1'), 1);
      const { port } = await startDns(store);
      const c = await client(port);
      c.ask(1, 1);
      const r = await c.waitForCount(1);
      expect(r.msgid).toBe(2);
      expect([r.modid, r.cmdid]).toEqual([1, 1]);
      // 192.168.1.177 travels as the int32 -1062731343.
      expect(r.hosts.map((h) => h.ip)).toContain(-1062731343);
      expect(hostsOf(r)).toEqual(['167772161:1', '3232235953:9000', '4294967294:65535']);
      c.ask(7, 7);
      const unknown = await c.waitForCount(2);
      expect(unknown).toMatchObject({ msgid: 2, modid: 7, cmdid: 7, hosts: [] });
    });

    it('pushes a change to subscribed connections and not to others', async () => {
      const { store } = await freshStore(b);
      await store.addHost(1, 1, ipToNumber('10.0.0.1'), 80);
      await store.addHost(2, 2, ipToNumber('10.0.0.9'), 80);
      const { dns, port } = await startDns(store);
      const a = await client(port);
      const other = await client(port);
      a.ask(1, 1);
      other.ask(2, 2);
      await a.waitForCount(1);
      await other.waitForCount(1);

      await store.addHost(1, 1, ipToNumber('10.0.0.2'), 81);
      await dns.pollNow();
      const pushed = await a.waitForCount(2);
      expect(pushed.modid).toBe(1);
      expect(hostsOf(pushed)).toEqual([`${ipToNumber('10.0.0.1')}:80`, `${ipToNumber('10.0.0.2')}:81`]);

      // The other connection got nothing for route 1/1: its next frame is the answer to a new ask.
      other.ask(2, 2);
      const next = await other.waitForCount(2);
      expect([next.modid, next.cmdid]).toEqual([2, 2]);
      expect(other.routes.every((r) => r.modid === 2)).toBe(true);
      expect(dns.stats.pushes).toBe(1);
    });

    it('pushes both of two edits made in the same second', async () => {
      const { store } = await freshStore(b, { nowSeconds: () => T0 });
      await store.addHost(3, 3, ipToNumber('10.0.0.1'), 80);
      const { dns, port } = await startDns(store);
      const a = await client(port);
      a.ask(3, 3);
      await a.waitForCount(1);
      const v1 = await store.addHost(3, 3, ipToNumber('10.0.0.2'), 80);
      await dns.pollNow();
      const first = await a.waitForCount(2);
      const v2 = await store.addHost(3, 3, ipToNumber('10.0.0.3'), 80);
      expect(v2.version).toBe(v1.version + 1);
      await dns.pollNow();
      const second = await a.waitForCount(3);
      expect(first.hosts).toHaveLength(2);
      expect(second.hosts).toHaveLength(3);
      expect(dns.snapshot.version).toBe(v2.version);
    });

    it('pushes a route removal as an empty host list and drops subscriptions on close', async () => {
      const { store } = await freshStore(b);
      await store.addHost(4, 1, ipToNumber('10.0.0.1'), 80);
      const { dns, port } = await startDns(store);
      const a = await client(port);
      a.ask(4, 1);
      await a.waitForCount(1);
      expect(dns.health().subscriptions).toBe(1);
      await store.removeHost(4, 1, ipToNumber('10.0.0.1'), 80);
      await dns.pollNow();
      expect((await a.waitForCount(2)).hosts).toEqual([]);
      a.close();
      await waitFor(() => dns.health().subscriptions === 0, 5_000, 'subscription dropped');
    });

    it('a bad frame closes only that connection; others keep being answered', async () => {
      const { store } = await freshStore(b);
      await store.addHost(5, 5, ipToNumber('10.0.0.1'), 80);
      const { dns, port } = await startDns(store);
      const good = await client(port);
      const bad = await client(port);
      const header = Buffer.alloc(8);
      header.writeInt32LE(1, 0);
      header.writeInt32LE(-4, 4);
      good.ask(5, 5);
      await good.waitForCount(1);
      bad.write(header);
      await bad.waitClosed();
      // An undecodable body on a third connection is a violation too.
      const garbage = await client(port);
      const g = Buffer.alloc(8 + 3);
      g.writeInt32LE(1, 0);
      g.writeInt32LE(3, 4);
      g.set([0x0a, 0xff, 0xff], 8);
      garbage.write(g);
      await garbage.waitClosed();
      // So is a known field with the wrong wire type (modid sent length-delimited), not a query for 0/0.
      const wrongType = await client(port);
      const w = Buffer.alloc(8 + 3);
      w.writeInt32LE(1, 0);
      w.writeInt32LE(3, 4);
      w.set([0x0a, 0x01, 0x05], 8);
      wrongType.write(w);
      await wrongType.waitClosed();
      good.ask(5, 5);
      expect((await good.waitForCount(2)).hosts).toHaveLength(1);
      expect(good.closed).toBe(false);
      const health = dns.health();
      expect(health.connections).toBe(1);
    });

    it('registers itself and polls immediately on POST /admin/poll', async () => {
      const { store } = await freshStore(b);
      const { dns, port, httpPort } = await startDns(store);
      const instances = await store.listDnsInstances();
      expect(instances.map((i) => i.adminPort)).toContain(httpPort);
      const a = await client(port);
      a.ask(6, 6);
      await a.waitForCount(1);
      await store.addHost(6, 6, ipToNumber('10.0.0.6'), 66);
      const res = await fetch(`http://127.0.0.1:${httpPort}/admin/poll`, { method: 'POST' });
      expect(res.status).toBe(200);
      expect((await a.waitForCount(2)).hosts).toHaveLength(1);
      const health = (await (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).json()) as Record<
        string,
        unknown
      >;
      expect(health).toMatchObject({ status: 'ok', routes: 1, subscriptions: 1 });
      const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      expect(metrics).toMatch(/lars_dns_pushes_total 1/);
      await dns.close();
      expect(await store.listDnsInstances()).toEqual([]);
    });

    it('a full reload pushes routes edited without RouteChange rows (as the original console did)', async () => {
      const { store } = await freshStore(b);
      await store.addHost(8, 8, ipToNumber('10.0.0.1'), 80);
      const { dns, port } = await startDns(store);
      const a = await client(port);
      a.ask(8, 8);
      await a.waitForCount(1);
      // The original console deleted rows without bumping the version or logging a change.
      await store.db.deleteFrom('RouteData').where('modid', '=', 8).execute();
      await dns.pollNow({ full: true });
      expect((await a.waitForCount(2)).hosts).toEqual([]);
    });
  });
});
