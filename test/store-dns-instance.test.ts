import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { InvalidArgumentError, NotFoundError } from '../src/errors.js';
import { adminPollUrl, DNS_ADMIN_POLL_PATH, notifyDnsInstances } from '../src/store/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';
import { unusedPort } from './helpers/ports.js';

const T0 = 1_700_000_000;

/** A stand-in for the dns admin endpoint, on port 0. */
async function fakeDnsAdmin(
  status = 200,
): Promise<{ port: number; requests: Array<{ method?: string; url?: string }> }> {
  const requests: Array<{ method?: string; url?: string }> = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    requests.push({ method: req.method, url: req.url });
    res.statusCode = status;
    res.end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as AddressInfo).port, requests };
}

/** A port nothing listens on (see helpers/ports.ts). */
const deadPort = unusedPort;

describe('adminPollUrl', () => {
  it('reaches wildcard binds through loopback and brackets IPv6', () => {
    expect(adminPollUrl({ host: '10.0.0.5', adminPort: 7780 })).toBe(
      `http://10.0.0.5:7780${DNS_ADMIN_POLL_PATH}`,
    );
    expect(adminPollUrl({ host: '0.0.0.0', adminPort: 1 })).toBe('http://127.0.0.1:1/admin/poll');
    expect(adminPollUrl({ host: '::', adminPort: 1 })).toBe('http://[::1]:1/admin/poll');
    expect(adminPollUrl({ host: 'fe80::1', adminPort: 1 })).toBe('http://[fe80::1]:1/admin/poll');
  });
});

describe.each(backends())('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'dns instances'), () => {
    it('registers, heartbeats, lists by age and removes instances', async () => {
      let now = T0;
      const { store } = await freshStore(b, { nowSeconds: () => now });
      await store.registerDnsInstance({ id: 'a', host: '10.0.0.1', port: 7778, adminPort: 7780 });
      now = T0 + 5;
      await store.registerDnsInstance({ id: 'b', host: '10.0.0.2', port: 7778 });
      expect(await store.listDnsInstances(30)).toEqual([
        { id: 'a', host: '10.0.0.1', port: 7778, adminPort: 7780, startedAt: T0, heartbeatAt: T0 },
        { id: 'b', host: '10.0.0.2', port: 7778, adminPort: null, startedAt: T0 + 5, heartbeatAt: T0 + 5 },
      ]);
      now = T0 + 40;
      await store.heartbeatDnsInstance('b');
      await store.heartbeatDnsInstance('b'); // same second: still "known" (no NotFoundError)
      expect((await store.listDnsInstances(30)).map((i) => i.id)).toEqual(['b']);
      // Re-register replaces (restart with a new admin port).
      await store.registerDnsInstance({ id: 'b', host: '10.0.0.2', port: 7778, adminPort: 9999 });
      expect((await store.listDnsInstances(30))[0]).toMatchObject({
        id: 'b',
        adminPort: 9999,
        startedAt: T0 + 40,
      });
      await store.removeDnsInstance('b');
      await store.removeDnsInstance('b'); // idempotent
      expect(await store.listDnsInstances(30)).toEqual([]);
      await expect(store.heartbeatDnsInstance('b')).rejects.toBeInstanceOf(NotFoundError);
      await expect(store.registerDnsInstance({ id: '', host: 'h', port: 1 })).rejects.toBeInstanceOf(
        InvalidArgumentError,
      );
      await expect(
        store.registerDnsInstance({ id: 'x', host: 'h', port: 1, adminPort: 70000 }),
      ).rejects.toThrow(/invalid dns admin port 70000/);
    });

    it('notifyDnsInstances posts /admin/poll to live instances and reports failures without throwing', async () => {
      const { store } = await freshStore(b);
      const ok = await fakeDnsAdmin();
      const broken = await fakeDnsAdmin(503);
      const dead = await deadPort();
      await store.registerDnsInstance({ id: 'ok', host: '127.0.0.1', port: 7778, adminPort: ok.port });
      await store.registerDnsInstance({
        id: 'broken',
        host: '127.0.0.1',
        port: 7778,
        adminPort: broken.port,
      });
      await store.registerDnsInstance({ id: 'dead', host: '127.0.0.1', port: 7778, adminPort: dead });
      await store.registerDnsInstance({ id: 'no-admin', host: '127.0.0.1', port: 7778 });

      const result = await notifyDnsInstances(store, { timeoutMs: 10_000 });
      expect(result.attempted).toBe(3);
      expect(result.acknowledged).toBe(1);
      expect(ok.requests).toEqual([{ method: 'POST', url: '/admin/poll' }]);
      expect(
        result.failures.map((f) => [f.id, f.reason.includes('503') || f.reason.length > 0]).sort(),
      ).toEqual([
        ['broken', true],
        ['dead', true],
      ]);
      expect(result.failures.find((f) => f.id === 'broken')?.reason).toBe('HTTP 503');
    });

    it('notifyDnsInstances gives up on a silent instance after the timeout', async () => {
      const { store } = await freshStore(b);
      const hang = createServer(() => undefined); // accepts, never answers
      await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve));
      onTestFinished(() => {
        hang.closeAllConnections();
        return new Promise<void>((resolve) => hang.close(() => resolve()));
      });
      await store.registerDnsInstance({
        id: 'hang',
        host: '127.0.0.1',
        port: 7778,
        adminPort: (hang.address() as AddressInfo).port,
      });
      // The reason proves the per-request timeout fired (no wall-clock assertion).
      const result = await notifyDnsInstances(store, { timeoutMs: 200 });
      expect(result).toMatchObject({ attempted: 1, acknowledged: 0 });
      expect(result.failures[0]?.reason).toBe('no answer within 200 ms');
    });
  });
});
