import { describe, expect, it } from 'vitest';
import { ClosedError, ConflictError, ErrorCode, InvalidArgumentError, NotFoundError } from '../src/errors.js';
import { ipToNumber } from '../src/protocol/ip.js';
import { openStore, type Store } from '../src/store/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';

const T0 = 1_700_000_000;

async function changes(store: Store) {
  return store.changesAfter(0);
}

describe.each(backends())('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'store routes'), () => {
    it('adds, lists, gets and removes hosts; each change bumps the version and logs the route', async () => {
      const { store } = await freshStore(b);
      expect(await store.getVersion()).toBe(0);
      expect(await store.listRoutes()).toEqual([]);

      const a = await store.addHost(1, 1, ipToNumber('10.0.0.1'), 7777);
      const c = await store.addHost(2, 5, ipToNumber('10.0.0.3'), 9000);
      const bb = await store.addHost(1, 1, ipToNumber('10.0.0.2'), 7777);
      expect(a.version).toBeGreaterThan(0);
      expect(c.version).toBeGreaterThan(a.version);
      expect(bb.version).toBeGreaterThan(c.version);
      expect(await store.getVersion()).toBe(bb.version);

      const all = await store.listRoutes();
      expect(all.map((r) => [r.modid, r.cmdid, r.ip, r.port])).toEqual([
        [1, 1, ipToNumber('10.0.0.1'), 7777],
        [1, 1, ipToNumber('10.0.0.2'), 7777],
        [2, 5, ipToNumber('10.0.0.3'), 9000],
      ]);
      expect(all.every((r) => typeof r.id === 'number' && typeof r.ip === 'number')).toBe(true);
      expect(await store.listRoutes({ modid: 1 })).toHaveLength(2);
      expect(await store.listRoutes({ modid: 2, cmdid: 5 })).toHaveLength(1);
      expect(await store.listRoutes({ limit: 1, offset: 1 })).toEqual([all[1]]);
      expect(await store.listRoutes({ offset: 2 })).toEqual([all[2]]);
      expect((await store.getRoute(1, 1)).map((r) => r.id)).toEqual([a.id, bb.id]);
      expect(await store.getRoute(9, 9)).toEqual([]);
      expect(await store.getHostById(c.id)).toEqual({
        id: c.id,
        modid: 2,
        cmdid: 5,
        ip: ipToNumber('10.0.0.3'),
        port: 9000,
      });
      expect(await store.getHostById(999_999)).toBeUndefined();

      const rm = await store.removeHost(1, 1, ipToNumber('10.0.0.1'), 7777);
      expect(rm.version).toBeGreaterThan(bb.version);
      expect((await store.getRoute(1, 1)).map((r) => r.id)).toEqual([bb.id]);

      const log = await changes(store);
      expect(log.map((ch) => [ch.modid, ch.cmdid, ch.version])).toEqual([
        [1, 1, a.version],
        [2, 5, c.version],
        [1, 1, bb.version],
        [1, 1, rm.version],
      ]);
      expect(await store.lastChangeId()).toBe(log[3]?.id);
    });

    it('rejects a duplicate host with ConflictError and leaves version and log untouched', async () => {
      const { store } = await freshStore(b);
      await store.addHost(1, 2, 1, 80);
      const version = await store.getVersion();
      const err = await store.addHost(1, 2, 1, 80).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as ConflictError).code).toBe(ErrorCode.CONFLICT);
      expect((err as Error).message).toContain('0.0.0.1:80 in route 1/2');
      expect(await store.getVersion()).toBe(version);
      expect(await changes(store)).toHaveLength(1);
      // The same ip:port in another route is fine.
      await store.addHost(1, 3, 1, 80);
    });

    it('removing an absent host is NotFoundError and bumps nothing', async () => {
      const { store } = await freshStore(b);
      const err = await store.removeHost(1, 1, 1, 1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect(await store.removeHostById(42).catch((e: unknown) => e)).toBeInstanceOf(NotFoundError);
      expect(await store.getVersion()).toBe(0);
      expect(await changes(store)).toEqual([]);
    });

    it('removeHostById and updateHost log both routes when a host moves', async () => {
      const { store } = await freshStore(b);
      const h1 = await store.addHost(1, 1, 100, 1000);
      const h2 = await store.addHost(1, 1, 200, 2000);
      const before = await store.lastChangeId();

      const up = await store.updateHost(h1.id, { modid: 3, cmdid: 4, ip: 101, port: 1001 });
      expect(await store.getHostById(h1.id)).toEqual({ id: h1.id, modid: 3, cmdid: 4, ip: 101, port: 1001 });
      expect((await store.changesAfter(before)).map((c) => [c.modid, c.cmdid, c.version])).toEqual([
        [1, 1, up.version],
        [3, 4, up.version],
      ]);

      // Same route, new port: one change row.
      const mark = await store.lastChangeId();
      const up2 = await store.updateHost(h1.id, { modid: 3, cmdid: 4, ip: 101, port: 1002 });
      expect((await store.changesAfter(mark)).map((c) => [c.modid, c.cmdid, c.version])).toEqual([
        [3, 4, up2.version],
      ]);

      // No-op: nothing written.
      const noop = await store.updateHost(h1.id, { modid: 3, cmdid: 4, ip: 101, port: 1002 });
      expect(noop.version).toBe(up2.version);
      expect(await store.lastChangeId()).toBe(mark + 1);

      // Moving onto an existing host conflicts.
      await expect(
        store.updateHost(h1.id, { modid: 1, cmdid: 1, ip: 200, port: 2000 }),
      ).rejects.toBeInstanceOf(ConflictError);
      await expect(store.updateHost(777_777, { modid: 1, cmdid: 1, ip: 1, port: 1 })).rejects.toBeInstanceOf(
        NotFoundError,
      );

      const rm = await store.removeHostById(h2.id);
      expect(rm.removed).toEqual({ id: h2.id, modid: 1, cmdid: 1, ip: 200, port: 2000 });
      expect(await store.getRoute(1, 1)).toEqual([]);
    });

    it('two edits in the same second get strictly increasing versions and two change rows', async () => {
      const { store } = await freshStore(b, { nowSeconds: () => T0 });
      const v1 = (await store.addHost(5, 5, 1, 1)).version;
      const v2 = (await store.removeHost(5, 5, 1, 1)).version;
      expect(v1).toBe(T0);
      expect(v2).toBe(T0 + 1);
      expect((await changes(store)).map((c) => c.version)).toEqual([T0, T0 + 1]);
    });

    it('the version never goes back when the clock does', async () => {
      let now = T0 + 100;
      const { store } = await freshStore(b, { nowSeconds: () => now });
      const v1 = (await store.addHost(1, 1, 1, 1)).version;
      now = T0; // clock stepped back (NTP, another machine's clock)
      const v2 = (await store.addHost(1, 1, 2, 2)).version;
      expect(v1).toBe(T0 + 100);
      expect(v2).toBe(T0 + 101);
    });

    it('concurrent adds get distinct, strictly increasing versions in change-log order', async () => {
      const { store, url } = await freshStore(b, { nowSeconds: () => T0 });
      // A second store on the same database (another process, in effect) where the backend allows it.
      const other = b.name === 'sqlite-memory' ? store : await openStore(url, { nowSeconds: () => T0 });
      try {
        const results = await Promise.all(
          Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? store : other).addHost(7, 7, 1000 + i, 80)),
        );
        const versions = results.map((r) => r.version);
        expect(new Set(versions).size).toBe(16);
        const log = await changes(store);
        expect(log).toHaveLength(16);
        for (let i = 1; i < log.length; i++) expect(log[i]!.version).toBeGreaterThan(log[i - 1]!.version);
        expect(Math.min(...versions)).toBe(T0);
        expect(Math.max(...versions)).toBe(T0 + 15);
        expect(await store.getRoute(7, 7)).toHaveLength(16);
      } finally {
        if (other !== store) await other.close();
      }
    });

    it('concurrent adds of the same host: exactly one wins', async () => {
      const { store } = await freshStore(b);
      const settled = await Promise.allSettled(
        Array.from({ length: 6 }, () => store.addHost(8, 8, 42, 4242)),
      );
      expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
      const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      expect(rejected.every((s) => s.reason instanceof ConflictError)).toBe(true);
      expect(await store.getRoute(8, 8)).toHaveLength(1);
      expect(await changes(store)).toHaveLength(1);
    });

    it('round-trips IPs at and above 128.0.0.0 as unsigned numbers', async () => {
      const { store } = await freshStore(b);
      const ips = ['192.168.1.177', '255.255.255.255', '128.0.0.0', '0.0.0.0', '127.255.255.255'].map(
        ipToNumber,
      );
      expect(ips[0]).toBe(3232235953);
      for (const ip of ips) await store.addHost(1, 1, ip, 65535);
      const got = (await store.getRoute(1, 1)).map((r) => r.ip);
      expect(got).toEqual([...ips].sort((x, y) => x - y));
      const loaded: number[] = [];
      for await (const chunk of store.loadRoutes()) loaded.push(...chunk.map((r) => r.ip));
      expect(loaded.sort((x, y) => x - y)).toEqual([...ips].sort((x, y) => x - y));
      await store.removeHost(1, 1, 4294967295, 65535);
    });

    it('accepts modid/cmdid 0..2147483647 (unsigned columns, int32 wire) and validates every field by name', async () => {
      const { store } = await freshStore(b);
      await store.addHost(2147483647, 0, 1, 1);
      expect(await store.getRoute(2147483647, 0)).toHaveLength(1);

      const cases: Array<[() => Promise<unknown>, RegExp]> = [
        [() => store.addHost('1 OR 1=1' as unknown as number, 1, 1, 1), /invalid modid "1 OR 1=1"/],
        [() => store.addHost(1, 1.5, 1, 1), /invalid cmdid 1.5/],
        [() => store.addHost(1, 2147483648, 1, 1), /invalid cmdid 2147483648/],
        [() => store.addHost(-1, 1, 1, 1), /invalid modid -1: expected an integer from 0 to 2147483647/],
        [() => store.addHost(1, -2147483648, 1, 1), /invalid cmdid -2147483648/],
        [() => store.getRoute(-3, 1), /invalid modid -3/],
        [() => store.addHost(1, 1, -1, 1), /invalid ip -1/],
        [() => store.addHost(1, 1, 4294967296, 1), /invalid ip 4294967296/],
        [() => store.addHost(1, 1, 1, 0), /invalid port 0/],
        [() => store.addHost(1, 1, 1, 65536), /invalid port 65536/],
        [() => store.getRoute("1'; DROP TABLE RouteData; --" as unknown as number, 1), /invalid modid/],
        [() => store.listRoutes({ limit: -1 }), /invalid limit/],
        [() => store.removeHostById('1 OR 1=1' as unknown as number), /invalid id/],
      ];
      for (const [call, message] of cases) {
        const err = await call().catch((e: unknown) => e);
        expect(err, String(message)).toBeInstanceOf(InvalidArgumentError);
        expect((err as Error).message).toMatch(message);
      }
      expect(await store.listRoutes()).toHaveLength(1);
    });

    it('stores module and command descriptions verbatim, quotes included', async () => {
      const { store } = await freshStore(b);
      const tricky = `it's "quoted" \\ back\\slash; DROP TABLE RouteData; -- ünïcødé  `;
      const first = await store.upsertModId(1, tricky);
      expect(first.created).toBe(true);
      expect(await store.upsertModId(1, 'orders')).toEqual({ id: first.id, created: false });
      await store.upsertModId(2, tricky);
      expect(await store.listModIds()).toEqual([
        { id: first.id, modid: 1, content: 'orders' },
        { id: expect.any(Number), modid: 2, content: tricky },
      ]);
      expect(await store.deleteModId(1)).toBe(1);
      expect(await store.deleteModId(1)).toBe(0);

      await store.upsertCmdId(10, tricky);
      expect(await store.listCmdIds()).toEqual([{ id: expect.any(Number), cmdid: 10, content: tricky }]);
      expect(await store.deleteCmdId(10)).toBe(1);
      await expect(store.upsertCmdId(1, 'x'.repeat(256))).rejects.toBeInstanceOf(InvalidArgumentError);
      // The route tables survived the "injection".
      expect(await store.listRoutes()).toEqual([]);
    });

    it('wraps driver errors in StoreError naming the operation, and refuses calls after close', async () => {
      const { store } = await freshStore(b, { migrate: false });
      const err = await store.getVersion().catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe(ErrorCode.STORE);
      expect((err as Error).message).toMatch(/^getVersion on .* failed: .*run `lars db init`/);
      expect((err as Error).cause).toBeDefined();
      await store.close();
      await store.close();
      await expect(store.ping()).rejects.toBeInstanceOf(ClosedError);
      await expect(store.addHost(1, 1, 1, 1)).rejects.toBeInstanceOf(ClosedError);
    });
  });
});
