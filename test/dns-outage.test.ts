import { existsSync, renameSync } from 'node:fs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DNS_SQLITE_BUSY_TIMEOUT_MS } from '../src/dns/dns-service.js';
import { ipToNumber } from '../src/protocol/index.js';
import { openStore, type Store } from '../src/store/index.js';
import { backends, freshDatabase, skipBackend, suiteTitle } from './helpers/databases.js';
import { startTestDns } from './helpers/dns.js';
import { RawRouteClient } from './helpers/raw-route-client.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

/**
 * The database going away under a running route service (issue 3): queries are still answered from
 * the last snapshot, health says degraded, nothing empty is pushed, and it recovers when the
 * database returns. MariaDB/PostgreSQL: every connection cut and new ones refused by a proxy between
 * the service and the server. SQLite: the file moved away. (A lock by another connection cannot
 * stop WAL readers; the short busy timeout the service uses keeps a lock in rollback-journal mode
 * from stalling queries.)
 */

const startDns = (store: Store) =>
  startTestDns(store, { register: false, retry: { initialMs: 10, maxMs: 50 } });

async function checkOutage(
  store: Store,
  writer: Store,
  takeDown: () => Promise<void> | void,
  bringBack: () => Promise<void> | void,
  whileDown: 'degraded' | 'ok' = 'degraded',
): Promise<void> {
  await writer.addHost(1, 1, ipToNumber('10.0.0.1'), 80);
  const { dns, port } = await startDns(store);
  const c = await RawRouteClient.connect(port);
  onTestFinished(() => c.close());
  c.ask(1, 1);
  expect((await c.waitForCount(1)).hosts).toHaveLength(1);

  await takeDown();
  await dns.pollNow({ full: true });
  expect(dns.health()).toMatchObject({ status: whileDown, database: whileDown, routes: 1 });
  // Still answered from the last snapshot, and nothing (empty or otherwise) was pushed.
  c.ask(1, 1);
  expect((await c.waitForCount(2)).hosts).toHaveLength(1);
  expect(c.routes).toHaveLength(2);

  await bringBack();
  await writer.addHost(1, 1, ipToNumber('10.0.0.2'), 81);
  await dns.pollNow();
  expect(dns.health()).toMatchObject({ status: 'ok', database: 'ok' });
  expect((await c.waitForCount(3)).hosts).toHaveLength(2);
}

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'dns with the database going away'), () => {
    it('keeps answering from the last snapshot and recovers when the database returns', async () => {
      const database = await freshDatabase(b);
      if (b.kind === 'sqlite') {
        // The file moved away (with its -wal and -shm): the open handle keeps reading the moved
        // file, so the service stays correct and healthy; edits reach it again once it is back.
        const store = await openStore(database.url, { busyTimeoutMs: DNS_SQLITE_BUSY_TIMEOUT_MS });
        onTestFinished(() => store.close());
        await store.migrate();
        const path = database.url.slice('sqlite:'.length);
        const files = [path, `${path}-wal`, `${path}-shm`].filter((f) => existsSync(f));
        await checkOutage(
          store,
          store,
          () => {
            for (const f of files) renameSync(f, `${f}.moved`);
            expect(existsSync(path)).toBe(false);
          },
          () => {
            for (const f of files) renameSync(`${f}.moved`, f);
          },
          'ok',
        );
        return;
      }
      const target = new URL(database.url);
      const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port) });
      onTestFinished(() => proxy.close());
      const viaProxy = new URL(database.url);
      viaProxy.port = String(proxy.port);
      const store = await openStore(viaProxy.toString());
      onTestFinished(() => store.close());
      await store.migrate();
      const writer = await openStore(database.url);
      onTestFinished(() => writer.close());
      await checkOutage(
        store,
        writer,
        () => proxy.pause(),
        () => proxy.resume(),
      );
    });
  });
});
