import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../src/errors.js';
import { insertRouteRows } from '../src/store/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';

const T0 = 1_700_000_000;

describe.each(backends())('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'store load and change log'), () => {
    it('loadRoutes returns 50k rows in id order, in bounded chunks', async () => {
      const { store } = await freshStore(b);
      const N = 50_000;
      const rows = Array.from({ length: N }, (_, i) => ({
        modid: Math.floor(i / 10),
        cmdid: i % 7,
        ip: (0xc0a80000 + i) >>> 0, // 192.168.x.y: all above 2^31
        port: 1 + (i % 65535),
      }));
      expect(await insertRouteRows(store.db, store.kind, rows)).toBe(N);

      const chunkSize = 7000;
      const sizes: number[] = [];
      let count = 0;
      let lastId = 0;
      let ordered = true;
      let sample;
      for await (const chunk of store.loadRoutes({ chunkSize })) {
        sizes.push(chunk.length);
        for (const r of chunk) {
          if (r.id <= lastId) ordered = false;
          lastId = r.id;
          if (count === 12_345) sample = r;
          count++;
        }
      }
      expect(count).toBe(N);
      expect(ordered).toBe(true);
      expect(sizes.every((s) => s <= chunkSize)).toBe(true);
      expect(sizes).toHaveLength(Math.ceil(N / chunkSize));
      // Exactly the RouteRow fields, all numbers (drivers return BIGINT columns as strings).
      expect(sample).toEqual({
        id: expect.any(Number),
        modid: 1234,
        cmdid: 12_345 % 7,
        ip: 0xc0a80000 + 12_345,
        port: 12_346,
      });
    });

    it('loadRoutes on an empty table yields nothing; an exact multiple ends cleanly', async () => {
      const { store } = await freshStore(b);
      const chunks = [];
      for await (const c of store.loadRoutes()) chunks.push(c);
      expect(chunks).toEqual([]);
      for (let i = 0; i < 4; i++) await store.addHost(1, 1, i, 80);
      const sizes = [];
      for await (const c of store.loadRoutes({ chunkSize: 2 })) sizes.push(c.length);
      expect(sizes).toEqual([2, 2]);
      await expect(async () => {
        for await (const _ of store.loadRoutes({ chunkSize: 0 })) break;
      }).rejects.toBeInstanceOf(InvalidArgumentError);
    });

    it('changesAfter pages through the log in id order', async () => {
      const { store } = await freshStore(b, { nowSeconds: () => T0 });
      expect(await store.lastChangeId()).toBe(0);
      for (let i = 0; i < 5; i++) await store.addHost(i, i, 1, 80);
      const all = await store.changesAfter(0);
      expect(all.map((c) => c.modid)).toEqual([0, 1, 2, 3, 4]);
      expect(all.map((c) => c.version)).toEqual([T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]);
      const page = await store.changesAfter(all[1]!.id, 2);
      expect(page).toEqual([all[2], all[3]]);
      expect(await store.changesAfter(all[4]!.id)).toEqual([]);
      expect(await store.lastChangeId()).toBe(all[4]!.id);
    });

    it('pruneChanges deletes by age only and always keeps the newest row', async () => {
      let now = T0;
      const { store } = await freshStore(b, { nowSeconds: () => now });
      await store.addHost(1, 1, 1, 80); // version T0
      now = T0 + 100;
      await store.addHost(2, 2, 1, 80); // version T0 + 100
      now = T0 + 200;
      await store.addHost(3, 3, 1, 80); // version T0 + 200
      const last = await store.lastChangeId();

      now = T0 + 250;
      expect(await store.pruneChanges(250)).toBe(0); // cutoff T0: nothing is older
      expect(await store.pruneChanges(249)).toBe(1); // cutoff T0 + 1: the T0 row goes
      expect((await store.changesAfter(0)).map((c) => c.modid)).toEqual([2, 3]);

      now = T0 + 10_000;
      expect(await store.pruneChanges(0)).toBe(1); // everything is old, but the newest row stays
      expect((await store.changesAfter(0)).map((c) => c.id)).toEqual([last]);
      expect(await store.lastChangeId()).toBe(last);

      // Ids continue after pruning.
      const next = await store.addHost(4, 4, 1, 80);
      expect((await store.changesAfter(last)).map((c) => c.version)).toEqual([next.version]);
      expect(await store.lastChangeId()).toBeGreaterThan(last);
    });
  });
});
