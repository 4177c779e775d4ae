import { describe, expect, it } from 'vitest';
import { localIpv4 } from '../src/cli/options.js';
import { notifyDnsInstances } from '../src/store/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';
import { startTestDns } from './helpers/dns.js';

/**
 * Issue 11: dns `POST /admin/poll` only from loopback or with a credential (the instance's id,
 * which the CLI and the console read from lars_dns_instance and send as a bearer token).
 */
const external = localIpv4();
const hasExternal = external !== '127.0.0.1';

describe.each(backends({ memory: false }).filter((b) => b.kind === 'sqlite'))('$name', (b) => {
  describe.skipIf(skipBackend(b) || !hasExternal)(suiteTitle(b, 'dns POST /admin/poll'), () => {
    it('refuses a request from another address without the credential; accepts loopback and the bearer id', async () => {
      const { store } = await freshStore(b);
      const { dns, httpPort } = await startTestDns(store, { httpHost: '0.0.0.0' });
      const remote = `http://${external}:${httpPort}/admin/poll`;
      const refused = await fetch(remote, { method: 'POST' });
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { error: string }).error).toMatch(/loopback/);
      const wrong = await fetch(remote, { method: 'POST', headers: { authorization: 'Bearer nope' } });
      expect(wrong.status).toBe(403);
      const withId = await fetch(remote, { method: 'POST', headers: { authorization: `Bearer ${dns.id}` } });
      expect(withId.status).toBe(200);
      const local = await fetch(`http://127.0.0.1:${httpPort}/admin/poll`, { method: 'POST' });
      expect(local.status).toBe(200);
      expect(dns.stats).toMatchObject({ pollRequests: 2, pollRefused: 2 });
      expect(await dns.registry.metrics()).toMatch(/lars_dns_poll_requests_refused_total 2/);

      // The notifier (CLI, console) reaches an instance registered under a non-loopback address.
      await store.registerDnsInstance({ id: dns.id, host: external, port: 1, adminPort: httpPort });
      const notified = await notifyDnsInstances(store);
      expect(notified).toMatchObject({ attempted: 1, acknowledged: 1, failures: [] });
    });
  });
});
