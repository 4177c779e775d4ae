import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../src/errors.js';
import { ipToNumber } from '../src/protocol/ip.js';
import { openStore, type LeaseSpec, type LeaseWrite, type Store } from '../src/store/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';

// Leases and weights in the store (issue 15), on every backend.

const IP = ipToNumber('10.1.0.1');
const T = 1_700_000_000_000;

const lease = (port: number, extra: Partial<LeaseSpec> = {}): LeaseSpec => ({
  modid: 7,
  cmdid: 1,
  ip: IP,
  port,
  weight: 1,
  ttlMs: 10_000,
  ...extra,
});

const batch = (renew: LeaseSpec[], extra: Partial<LeaseWrite> = {}): LeaseWrite => ({
  agent: 'agent-a',
  renew,
  remove: [],
  nowMs: T,
  dnsId: 'dns-1',
  ...extra,
});

const hostsOf = async (store: Store, modid = 7, cmdid = 1) =>
  (await store.getRoute(modid, cmdid)).map((r) => r.port);

describe.each(backends())('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'store leases'), () => {
    it('a new lease inserts its RouteData row and records the change; renewals touch timestamps only', async () => {
      const { store } = await freshStore(b);
      const first = await store.renewLeases(batch([lease(9001), lease(9002, { weight: 3 })]));
      expect(first).toMatchObject({ added: 2, renewed: 0, removed: 0, routes: [{ modid: 7, cmdid: 1 }] });
      expect(first.version).toBe(await store.getVersion());
      expect(await hostsOf(store)).toEqual([9001, 9002]);
      const changes = await store.changesAfter(0);
      expect(changes.map((c) => [c.modid, c.cmdid, c.version])).toEqual([[7, 1, first.version]]);
      expect(await store.loadWeights()).toEqual([{ modid: 7, cmdid: 1, ip: IP, port: 9002, weight: 3 }]);
      const listed = await store.listLeases();
      expect(listed.map((l) => [l.port, l.agent, l.createdRow, l.expiresAt, l.renewedBy])).toEqual([
        [9001, 'agent-a', true, T + 10_000, 'dns-1'],
        [9002, 'agent-a', true, T + 10_000, 'dns-1'],
      ]);

      const again = await store.renewLeases(
        batch([lease(9001), lease(9002, { weight: 3 })], { nowMs: T + 3000 }),
      );
      expect(again).toMatchObject({ renewed: 2, added: 0, routes: [], version: undefined });
      expect(await store.getVersion()).toBe(first.version);
      expect(await store.changesAfter(0)).toHaveLength(1);
      expect((await store.listLeases()).map((l) => l.expiresAt)).toEqual([T + 13_000, T + 13_000]);
    });

    // (An in-memory database is private to its store: a second store could not see it.)
    it.skipIf(b.name === 'sqlite-memory')(
      'renewing 1,000 leases costs a constant number of queries, not one per lease',
      async () => {
        const { url } = await freshStore(b);
        const queries: string[] = [];
        const store = await openStore(url, { onQuery: (q) => queries.push(q) });
        try {
          const all = Array.from({ length: 1000 }, (_, i) => lease(10_000 + i));
          await store.renewLeases(batch(all));
          expect(await store.listLeases()).toHaveLength(1000);
          queries.length = 0;
          const r = await store.renewLeases(batch(all, { nowMs: T + 3000 }));
          expect(r.renewed).toBe(1000);
          // One SELECT and one UPDATE per 500 leases.
          expect(queries.length).toBeLessThanOrEqual(4);
        } finally {
          await store.close();
        }
      },
    );

    it('weight and ttl changes, removals by the owner only, and a lease on a manual row', async () => {
      const { store } = await freshStore(b);
      const manual = await store.addHost(7, 1, IP, 8000);
      const v0 = await store.getVersion();
      const r1 = await store.renewLeases(batch([lease(8000), lease(9001)]));
      expect(r1.added).toBe(2);
      const described = await store.describeHosts(await store.getRoute(7, 1));
      expect(described.get(manual.id)).toMatchObject({ origin: 'manual', weight: 1 });
      expect(described.get(manual.id)?.lease).toMatchObject({ agent: 'agent-a', expiresAt: T + 10_000 });
      const registeredId = (await store.getRoute(7, 1)).find((r) => r.port === 9001)!.id;
      expect(described.get(registeredId)).toMatchObject({ origin: 'registered', weight: 1 });

      const w = await store.renewLeases(batch([lease(8000, { weight: 4 }), lease(9001, { ttlMs: 5000 })]));
      expect(w).toMatchObject({ updated: 2, routes: [{ modid: 7, cmdid: 1 }] });
      expect(w.version).toBeGreaterThan(v0);
      expect(await store.getRouteWeights(7, 1)).toEqual([
        { modid: 7, cmdid: 1, ip: IP, port: 8000, weight: 4 },
      ]);

      // Another agent cannot remove agent-a's leases.
      const foreign = await store.renewLeases(batch([], { agent: 'agent-b', remove: [lease(9001)] }));
      expect(foreign.removed).toBe(0);
      // The owner's removal deletes the lease and the row it created, never the manual row.
      const rm = await store.renewLeases(batch([], { remove: [lease(9001), lease(8000)] }));
      expect(rm).toMatchObject({ removed: 2, routes: [{ modid: 7, cmdid: 1 }] });
      expect(await hostsOf(store)).toEqual([8000]);
      expect(await store.listLeases()).toEqual([]);
      expect(await store.loadWeights()).toEqual([]);
    });

    it('expiry deletes only leases not renewed since they were read, and never a manual row', async () => {
      const { store } = await freshStore(b);
      await store.addHost(7, 1, IP, 8000);
      await store.renewLeases(batch([lease(8000), lease(9001), lease(9002, { ttlMs: 60_000 })]));
      const v = await store.getVersion();
      expect(await store.expiringLeases(T + 5000, 60_000)).toEqual([]);
      const due = await store.expiringLeases(T + 10_001, 60_000);
      expect(due.map((l) => l.port).sort()).toEqual([8000, 9001]);
      // A ttl filter: an instance that could not have seen 60 s of renewals expires none of those.
      expect((await store.expiringLeases(T + 70_000, 10_000)).map((l) => l.port).sort()).toEqual([
        8000, 9001,
      ]);

      // 9001 is renewed between the read and the delete (by another dns): it survives.
      await store.renewLeases(batch([lease(9001)], { nowMs: T + 10_002 }));
      const res = await store.expireLeases(due);
      expect(res.expired.map((l) => l.port)).toEqual([8000]);
      // The manual row stays; the lease on it is gone, and so nothing route-visible changed.
      expect(await hostsOf(store)).toEqual([8000, 9001, 9002]);
      expect(res.routes).toEqual([]);

      const later = await store.expiringLeases(T + 20_003, 60_000);
      expect(later.map((l) => l.port)).toEqual([9001]);
      const gone = await store.expireLeases(later);
      expect(gone).toMatchObject({ routes: [{ modid: 7, cmdid: 1 }] });
      expect(gone.version).toBeGreaterThan(v);
      expect(await hostsOf(store)).toEqual([8000, 9002]);
      // Nothing left to expire: no version bump.
      const none = await store.expireLeases(later);
      expect(none).toEqual({ expired: [], routes: [], version: undefined });
      expect(await store.getVersion()).toBe(gone.version);

      // A lease that expired meanwhile is created again by its next renewal.
      const back = await store.renewLeases(batch([lease(9001)], { nowMs: T + 30_000 }));
      expect(back.added).toBe(1);
      expect(await hostsOf(store)).toEqual([8000, 9001, 9002]);
      expect((await store.leaseAgents()).map((a) => [a.agent, a.leases, a.lastRenewedAt])).toEqual([
        ['agent-a', 2, T + 30_000],
      ]);
    });

    it('manual weights: add --weight, set, clear; they win over the instance weight', async () => {
      const { store } = await freshStore(b);
      const a = await store.addHost(7, 1, IP, 8000, { weight: 5 });
      expect(await store.loadWeights()).toEqual([{ modid: 7, cmdid: 1, ip: IP, port: 8000, weight: 5 }]);
      await store.renewLeases(batch([lease(8000, { weight: 2 })]));
      expect((await store.describeHosts(await store.getRoute(7, 1))).get(a.id)).toMatchObject({
        origin: 'manual',
        weight: 5,
        manualWeight: 5,
        lease: { weight: 2 },
      });
      const v = await store.getVersion();
      const set = await store.setHostWeight(a.id, 1);
      expect(set.version).toBeGreaterThan(v);
      expect(await store.loadWeights()).toEqual([]);
      await store.setHostWeight(a.id, null);
      expect(await store.getRouteWeights(7, 1)).toEqual([
        { modid: 7, cmdid: 1, ip: IP, port: 8000, weight: 2 },
      ]);
      await expect(store.setHostWeight(999_999, 2)).rejects.toMatchObject({ code: 'LARS_ERR_NOT_FOUND' });
      await expect(store.addHost(7, 1, IP, 8001, { weight: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(store.setHostWeight(a.id, 10_001)).rejects.toBeInstanceOf(InvalidArgumentError);
    });

    it('an operator removing or moving a registered row removes its lease and weight with it', async () => {
      const { store } = await freshStore(b);
      await store.renewLeases(batch([lease(9001, { weight: 3 }), lease(9002)]));
      const [r1, r2] = await store.getRoute(7, 1);
      await store.setHostWeight(r1!.id, 6);
      await store.removeHostById(r1!.id);
      await store.updateHost(r2!.id, { modid: 7, cmdid: 2, ip: IP, port: 9002 });
      expect(await store.listLeases()).toEqual([]);
      expect(await store.loadWeights()).toEqual([]);
      // The instance is still registered: its next batch puts it back as a registered host.
      await store.renewLeases(batch([lease(9001, { weight: 3 })], { nowMs: T + 1000 }));
      expect(await hostsOf(store)).toEqual([9001]);
    });

    it('rejects bad input naming the field', async () => {
      const { store } = await freshStore(b);
      await expect(store.renewLeases(batch([lease(0)]))).rejects.toThrow(/port/);
      await expect(store.renewLeases(batch([lease(1, { weight: 0 })]))).rejects.toThrow(/weight/);
      await expect(store.renewLeases(batch([lease(1, { ttlMs: 10 })]))).rejects.toThrow(/ttl/);
      await expect(store.renewLeases(batch([], { agent: '' }))).rejects.toThrow(/agent/);
    });
  });
});
