import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { ipToNumber } from '../src/protocol/ip.js';
import type { NotifyResult } from '../src/store/index.js';
import { createUser, WebService } from '../src/web/index.js';
import { backends, freshStore, IN_CI } from './helpers/databases.js';

/**
 * The console in a real browser (issue 6, tests): Debian's Chromium driven by playwright-core, never a
 * downloaded browser. Screenshots go to test-artifacts/ (gitignored). Without /usr/bin/chromium the
 * suite is skipped with the reason in its title, except under CI=true where it must run.
 */

const CHROMIUM = process.env.LARS_TEST_CHROMIUM ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const ARTIFACTS = join(fileURLToPath(new URL('..', import.meta.url)), 'test-artifacts');
const PASSWORD = 'correct horse battery';
const SQLITE = backends().find((b) => b.name === 'sqlite-file')!;

const title =
  HAVE_CHROMIUM || IN_CI
    ? 'web console in Chromium'
    : `web console in Chromium (skipped: ${CHROMIUM} not found)`;
if (!HAVE_CHROMIUM && !IN_CI) console.warn(`[lars tests] skipping browser tests: ${CHROMIUM} not found`);

describe.skipIf(!HAVE_CHROMIUM && !IN_CI)(title, () => {
  let browser: Browser;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** A page that fails the test on any script error or CSP violation. */
  async function newPage(
    viewport = { width: 1280, height: 900 },
  ): Promise<{ page: Page; problems: string[] }> {
    const context = await browser.newContext({ viewport });
    onTestFinished(() => context.close());
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/status of 40[0-9]/.test(msg.text()))
        problems.push(`console: ${msg.text()}`);
    });
    return { page, problems };
  }

  it('logs in, adds a route, sees it listed with a new version, and opens its health chart', async () => {
    const { store } = await freshStore(SQLITE);
    // A cheap scrypt cost for this account and the console under test (the production cost takes
    // seconds per login on a busy machine; it is tested in web-api.test.ts).
    const fastHash = { N: 1024, r: 8, p: 1 };
    await createUser(store, 'alice', PASSWORD, undefined, fastHash);
    let notifies = 0;
    // The console's clock is pinned: the seeded hour of history must not lose a minute to a minute
    // boundary passing during the test.
    const pinnedMs = Date.now();
    const web = new WebService({
      store,
      host: '127.0.0.1',
      port: 0,
      now: () => pinnedMs,
      passwordHashing: fastHash,
      notifier: async (): Promise<NotifyResult> => {
        notifies++;
        return { attempted: 0, acknowledged: 0, failures: [] };
      },
    });
    onTestFinished(() => web.close());
    const { url } = await web.start();

    // An hour of history for route 1/2 with an overloaded stretch, and a current overloaded host.
    const nowS = Math.floor(pinnedMs / 1000);
    const minute = nowS - (nowS % 60);
    const ip = ipToNumber('10.0.0.1');
    const ip2 = ipToNumber('10.0.0.2');
    const caller = ipToNumber('192.168.0.10');
    const rows = [];
    for (let i = 0; i < 60; i++) {
      const overloaded = i >= 20 && i < 28;
      rows.push({
        modid: 1,
        cmdid: 2,
        ip,
        port: 8080,
        caller,
        minute: minute - i * 60,
        succ_cnt: 400 + ((i * 37) % 90),
        err_cnt: 5 + (i % 7),
        overload: 0,
      });
      rows.push({
        modid: 1,
        cmdid: 2,
        ip: ip2,
        port: 8080,
        caller,
        minute: minute - i * 60,
        succ_cnt: overloaded ? 20 : 300,
        err_cnt: overloaded ? 180 : 4,
        overload: overloaded ? 1 : 0,
      });
    }
    await store.db.insertInto('lars_call_history').values(rows).execute();
    await store.db
      .insertInto('ServerCallStatus')
      .values([
        {
          modid: 1,
          cmdid: 2,
          ip,
          port: 8080,
          caller,
          succ_cnt: 431,
          err_cnt: 6,
          ts: nowS - 3,
          overload: '0',
        },
        {
          modid: 1,
          cmdid: 2,
          ip: ip2,
          port: 8080,
          caller,
          succ_cnt: 12,
          err_cnt: 150,
          ts: nowS - 3,
          overload: '1',
        },
      ])
      .execute();
    await store.upsertModId(1, 'payments');
    await store.upsertCmdId(2, 'charge card');

    const { page, problems } = await newPage();

    // Any page sends us to the login page first.
    await page.goto(`${url}/routes`);
    await page.waitForURL(/\/login\?next=%2Froutes$/);
    await page.fill('#username', 'alice');
    await page.fill('#password', 'wrong password');
    await page.click('#login');
    await expect.poll(() => page.textContent('#message')).toContain('Wrong user name or password');
    await page.screenshot({ path: join(ARTIFACTS, 'web-login.png') });
    await page.fill('#password', PASSWORD);
    await page.click('#login');
    await page.waitForURL(`${url}/routes`);
    await page.screenshot({ path: join(ARTIFACTS, 'web-routes-empty.png'), fullPage: true });

    await expect.poll(() => page.textContent('#version')).toBe('0');
    await expect.poll(() => page.textContent('#hosts')).toContain('No routes yet');

    // Invalid input is refused with a clear message.
    await page.fill('#add-modid', '1');
    await page.fill('#add-cmdid', '2');
    await page.fill('#add-ip', '10.0.0.300');
    await page.fill('#add-port', '8080');
    await page.click('#add');
    await expect.poll(() => page.textContent('#add-message')).toMatch(/is not an IPv4 address/);

    await page.fill('#add-ip', '10.0.0.1');
    await page.click('#add');
    await expect.poll(() => page.textContent('#add-message')).toMatch(/Added 10\.0\.0\.1:8080 to route 1\/2/);
    const version = await store.getVersion();
    expect(version).toBeGreaterThan(0);
    await expect.poll(() => page.textContent('#version')).toBe(String(version));
    const row = page.locator('#hosts tr', { hasText: '10.0.0.1' });
    await expect.poll(() => row.count()).toBe(1);
    expect(await row.textContent()).toContain('payments');
    expect(notifies).toBe(1);

    await page.fill('#add-ip', '10.0.0.2');
    await page.fill('#add-port', '8080');
    await page.click('#add');
    await expect.poll(() => page.locator('#hosts tr').count()).toBe(2);
    const version2 = await store.getVersion();
    expect(version2).toBeGreaterThan(version);
    await expect.poll(() => page.textContent('#version')).toBe(String(version2));
    await page.screenshot({ path: join(ARTIFACTS, 'web-routes.png'), fullPage: true });

    // The dashboard counts them and shows the overloaded host.
    await page.click('a[data-nav="dashboard"]');
    await page.waitForURL(`${url}/`);
    await expect.poll(() => page.textContent('#c-hosts')).toBe('2');
    await expect.poll(() => page.textContent('#c-overloaded')).toBe('1');
    // No dns instance runs in this test, so no agent is connected to one.
    expect(await page.textContent('#c-agents')).toBe('0');
    expect(await page.textContent('#overloaded')).toContain('10.0.0.2:8080');
    await page.screenshot({ path: join(ARTIFACTS, 'web-dashboard.png'), fullPage: true });

    // The route's health: status table and both charts, with the overload band.
    await page.goto(`${url}/routes?modid=1&cmdid=2`);
    await page.locator('#hosts tr', { hasText: '10.0.0.1' }).getByRole('link', { name: 'Health' }).click();
    await page.waitForURL(/\/health\?modid=1&cmdid=2/);
    const chart = page.locator('#chart-hour[data-rendered="true"]');
    await chart.waitFor();
    await page.locator('#chart-day[data-rendered="true"]').waitFor();
    expect(await page.textContent('#title')).toBe('Call health of route 1/2');
    expect(await page.textContent('#status')).toContain('overloaded');
    expect(await chart.getAttribute('data-points')).toBe('60');
    expect(await chart.getAttribute('data-overload-minutes')).toBe('8');
    const pixels = await page.evaluate(() => {
      // Runs in the page; typed structurally since the test's tsconfig has no DOM library.
      interface Canvas {
        width: number;
        height: number;
        getContext(kind: '2d'): {
          getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
        };
      }
      const doc = (globalThis as unknown as { document: { querySelector(sel: string): Canvas | null } })
        .document;
      const canvas = doc.querySelector('#chart-hour canvas');
      if (!canvas) return { width: 0, height: 0, painted: 0, orange: 0 };
      const ctx = canvas.getContext('2d');
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let painted = 0;
      let orange = 0;
      for (let i = 0; i < data.length; i += 4) {
        const [r, g, b, a] = [data[i]!, data[i + 1]!, data[i + 2]!, data[i + 3]!];
        if (a > 0) painted++;
        // The overload band: translucent amber (217, 119, 6).
        if (a > 0 && r > g && g > b && r - b > 100) orange++;
      }
      return { width: canvas.width, height: canvas.height, painted, orange };
    });
    expect(pixels.width).toBeGreaterThan(300);
    expect(pixels.height).toBeGreaterThan(100);
    expect(pixels.painted).toBeGreaterThan(1000);
    expect(pixels.orange).toBeGreaterThan(100);
    await page.screenshot({ path: join(ARTIFACTS, 'web-health.png'), fullPage: true });

    // Delete from the list: the row goes and the version moves again.
    await page.goto(`${url}/routes?modid=1&cmdid=2`);
    page.once('dialog', (d) => void d.accept());
    await page.locator('#hosts tr', { hasText: '10.0.0.2' }).getByRole('button', { name: 'Delete' }).click();
    await expect.poll(() => page.locator('#hosts tr').count()).toBe(1);
    const version3 = await store.getVersion();
    expect(version3).toBeGreaterThan(version2);
    await expect.poll(() => page.textContent('#version')).toBe(String(version3));
    expect((await store.changesAfter(0)).at(-1)).toMatchObject({ modid: 1, cmdid: 2, version: version3 });

    // Edit in place.
    const editRow = page.locator('#hosts tr', { hasText: '10.0.0.1' });
    await editRow.getByRole('button', { name: 'Edit' }).click();
    await page.locator('#hosts tr.editing input[name="port"]').fill('70000');
    await page.locator('#hosts tr.editing').getByRole('button', { name: 'Save' }).click();
    await expect.poll(() => page.textContent('#list-message')).toMatch(/port: "70000" is not a port/);
    await page.locator('#hosts tr.editing input[name="port"]').fill('8081');
    await page.locator('#hosts tr.editing').getByRole('button', { name: 'Save' }).click();
    await expect.poll(() => page.textContent('#hosts')).toContain('8081');
    const version4 = await store.getVersion();
    expect(version4).toBeGreaterThan(version3);
    await expect.poll(() => page.textContent('#version')).toBe(String(version4));
    expect(notifies).toBe(4);

    // Module ids: add one through the form; the text is shown as text, not markup.
    await page.click('a[data-nav="ids"]');
    await page.waitForURL(`${url}/ids`);
    const mods = page.locator('section[data-kind="modid"]');
    await expect.poll(() => mods.locator('tbody').textContent()).toContain('payments');
    await mods.locator('input[name="value"]').fill('3');
    await mods.locator('input[name="content"]').fill('<b>search</b> & "ranking"');
    await mods.getByRole('button', { name: 'Add' }).click();
    await expect.poll(() => mods.locator('tbody').textContent()).toContain('<b>search</b> & "ranking"');
    expect(await mods.locator('tbody b').count()).toBe(0);
    expect((await store.listModIds()).map((m) => m.content)).toEqual([
      'payments',
      '<b>search</b> & "ranking"',
    ]);
    await page.screenshot({ path: join(ARTIFACTS, 'web-ids.png'), fullPage: true });

    // The change log lists every write, newest first.
    await page.click('a[data-nav="changes"]');
    await page.waitForURL(`${url}/changes`);
    await expect.poll(() => page.locator('#changes tr').count()).toBe(4);
    expect(await page.locator('#changes tr').first().textContent()).toContain(String(version4));
    await page.screenshot({ path: join(ARTIFACTS, 'web-changes.png'), fullPage: true });

    // Issue 15: a registered host shows its origin, owner agent and lease expiry; weights are edited.
    await store.renewLeases({
      agent: '10.0.0.9:8888',
      renew: [{ modid: 1, cmdid: 2, ip: ipToNumber('10.0.0.7'), port: 9000, weight: 2, ttlMs: 10_000 }],
      remove: [],
      nowMs: Date.now(),
      dnsId: 'dns-test',
    });
    await page.goto(`${url}/routes?modid=1&cmdid=2`);
    const registered = page.locator('#hosts tr', { hasText: '10.0.0.7' });
    await expect.poll(() => registered.textContent()).toContain('registered');
    expect(await registered.textContent()).toMatch(
      /9000\s*2\s*registered\s*10\.0\.0\.9:8888\s*expires in (9|10) s/,
    );
    await page.locator('#hosts tr', { hasText: '10.0.0.1' }).getByRole('button', { name: 'Edit' }).click();
    await page.locator('#hosts tr.editing input[name="weight"]').fill('3');
    await page.locator('#hosts tr.editing').getByRole('button', { name: 'Save' }).click();
    await expect
      .poll(async () => (await store.getRouteWeights(1, 2)).map((w) => w.weight).sort())
      .toEqual([2, 3]);
    await expect
      .poll(() => page.locator('#hosts tr', { hasText: '10.0.0.1' }).textContent())
      .toMatch(/8081\s*3\s*manual/);
    await page.screenshot({ path: join(ARTIFACTS, 'web-routes-registered.png'), fullPage: true });

    // Logging out ends the session.
    await page.click('#logout');
    await page.waitForURL(/\/login$/);
    await page.goto(`${url}/changes`);
    await page.waitForURL(/\/login\?next=%2Fchanges$/);

    expect(problems).toEqual([]);
  });

  it('fits a phone (390 px) and a desktop: no page scrolls sideways, the header stays reachable, long text wraps', async () => {
    const { store } = await freshStore(SQLITE);
    const fastHash = { N: 1024, r: 8, p: 1 };
    await createUser(store, 'alice', PASSWORD, undefined, fastHash);
    const web = new WebService({
      store,
      host: '127.0.0.1',
      port: 0,
      passwordHashing: fastHash,
      notifier: async (): Promise<NotifyResult> => ({ attempted: 0, acknowledged: 0, failures: [] }),
    });
    onTestFinished(() => web.close());
    const { url } = await web.start();
    // The worst case: a 255-character description without a space (the ids page was 2,805 px).
    const longWord = 'x'.repeat(255);
    await store.upsertModId(1, longWord);
    await store.upsertCmdId(2, `charge-${'y'.repeat(200)}`);
    for (let i = 1; i <= 5; i++) await store.addHost(1, 2, ipToNumber(`10.0.0.${i}`), 8000 + i);
    const nowS = Math.floor(Date.now() / 1000);
    await store.db
      .insertInto('lars_call_history')
      .values(
        Array.from({ length: 30 }, (_, i) => ({
          modid: 1,
          cmdid: 2,
          ip: ipToNumber('10.0.0.1'),
          port: 8001,
          caller: ipToNumber('192.168.0.10'),
          minute: nowS - (nowS % 60) - i * 60,
          succ_cnt: 100 + i,
          err_cnt: i % 3,
          overload: 0,
        })),
      )
      .execute();

    const pages: Array<[string, string, string]> = [
      ['dashboard', '/', '#c-hosts'],
      ['routes', '/routes?modid=1&cmdid=2', '#hosts tr'],
      ['ids', '/ids', 'section[data-kind="modid"] tbody tr'],
      ['changes', '/changes', '#changes tr'],
      ['health', '/health?modid=1&cmdid=2', '#chart-hour[data-rendered="true"]'],
    ];
    for (const viewport of [
      { width: 390, height: 844 },
      { width: 1280, height: 900 },
    ]) {
      const { page, problems } = await newPage(viewport);
      await page.goto(`${url}/login`);
      await page.fill('#username', 'alice');
      await page.fill('#password', PASSWORD);
      await page.click('#login');
      await page.waitForURL(`${url}/`);
      for (const [name, path, ready] of pages) {
        await page.goto(`${url}${path}`);
        await page.locator(ready).first().waitFor();
        await expect.poll(() => page.textContent('#user')).toContain('alice');
        const where = `${name} at ${viewport.width} px`;
        const widths = await page.evaluate(() => {
          const d = (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } })
            .document;
          return {
            scroll: d.documentElement.scrollWidth,
            inner: (globalThis as unknown as { innerWidth: number }).innerWidth,
          };
        });
        expect(widths.scroll, `${where}: page is ${widths.scroll} px wide`).toBeLessThanOrEqual(widths.inner);
        // Every header control is on screen: the nav links (Change log included), the user, Log out.
        for (const sel of [
          'a[data-nav="dashboard"]',
          'a[data-nav="changes"]',
          '#user',
          '#logout',
          '#version',
        ]) {
          const box = await page.locator(sel).boundingBox();
          expect(box, `${where}: ${sel} rendered`).not.toBeNull();
          expect(box!.x, `${where}: ${sel} left edge`).toBeGreaterThanOrEqual(0);
          expect(box!.x + box!.width, `${where}: ${sel} right edge`).toBeLessThanOrEqual(viewport.width);
        }
        await page.screenshot({ path: join(ARTIFACTS, `web-${viewport.width}-${name}.png`), fullPage: true });
      }
      // The long description wraps inside its card.
      await page.goto(`${url}/ids`);
      const cell = page.locator('section[data-kind="modid"] tbody td', { hasText: longWord.slice(0, 50) });
      const section = await page.locator('section[data-kind="modid"]').boundingBox();
      const cellBox = await cell.boundingBox();
      expect(cellBox!.x + cellBox!.width).toBeLessThanOrEqual(section!.x + section!.width);
      // Log out is reachable and works at this width.
      await page.click('#logout');
      await page.waitForURL(/\/login$/);
      expect(problems).toEqual([]);
    }
  });
});
