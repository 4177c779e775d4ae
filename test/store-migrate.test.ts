import { describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { InvalidArgumentError } from '../src/errors.js';
import { ipToNumber } from '../src/protocol/ip.js';
import { MIGRATIONS, openStore, type Store } from '../src/store/index.js';
import { checkMigrationList } from '../src/store/migrator.js';
import type { StoreKind } from '../src/store/url.js';
import { backends, freshDatabase, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';

/**
 * The original Lars schema (aceld/Lars base/sql/lars_dns.sql) as each backend would hold it. MySQL is
 * the original's own DDL; SQLite and PostgreSQL get the same tables spelled for them.
 */
const ORIGINAL_DDL: Record<StoreKind, string[]> = {
  mysql: [
    `CREATE TABLE \`RouteData\` (
      \`id\` int(10) unsigned NOT NULL AUTO_INCREMENT,
      \`modid\` int(10) unsigned NOT NULL,
      \`cmdid\` int(10) unsigned NOT NULL,
      \`serverip\` int(10) unsigned NOT NULL,
      \`serverport\` int(10) unsigned NOT NULL,
      PRIMARY KEY (\`id\`)
    ) ENGINE=InnoDB AUTO_INCREMENT=116064 DEFAULT CHARSET=utf8`,
    `CREATE TABLE RouteVersion (
      \`id\` int(10) unsigned NOT NULL AUTO_INCREMENT,
      \`version\` int(10) unsigned NOT NULL,
      PRIMARY KEY (\`id\`)
    )`,
    `INSERT INTO RouteVersion(version) VALUES(0)`,
    `CREATE TABLE RouteChange (
      \`id\` int(10) unsigned NOT NULL AUTO_INCREMENT,
      \`modid\` int(10) unsigned NOT NULL,
      \`cmdid\` int(10) unsigned NOT NULL,
      \`version\` bigint(20) unsigned NOT NULL,
      PRIMARY KEY (\`id\`)
    )`,
    `CREATE TABLE \`ServerCallStatus\` (
      \`modid\` int(11) NOT NULL,
      \`cmdid\` int(11) NOT NULL,
      \`ip\` int(11) unsigned NOT NULL,
      \`port\` int(11) unsigned NOT NULL,
      \`caller\` int(11) unsigned NOT NULL,
      \`succ_cnt\` int(11) NOT NULL,
      \`err_cnt\` int(11) NOT NULL,
      \`ts\` bigint(20) NOT NULL,
      \`overload\` char(1) NOT NULL,
      PRIMARY KEY (\`modid\`,\`cmdid\`,\`ip\`,\`port\`,\`caller\`),
      KEY \`mlb_index\` (\`modid\`,\`cmdid\`,\`ip\`,\`port\`,\`caller\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8`,
    `CREATE TABLE ModIDConfig (
      \`id\` int(10) unsigned NOT NULL AUTO_INCREMENT,
      \`modid\` int(10) unsigned NOT NULL,
      \`content\` char(255) NOT NULL,
      PRIMARY KEY (\`id\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8`,
    `CREATE TABLE CmdIDConfig (
      \`id\` int(10) unsigned NOT NULL AUTO_INCREMENT,
      \`cmdid\` int(10) unsigned NOT NULL,
      \`content\` char(255) NOT NULL,
      PRIMARY KEY (\`id\`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8`,
  ],
  postgres: [
    `CREATE TABLE "RouteData" (id serial PRIMARY KEY, modid integer NOT NULL, cmdid integer NOT NULL,
      serverip bigint NOT NULL, serverport integer NOT NULL)`,
    `CREATE TABLE "RouteVersion" (id serial PRIMARY KEY, version bigint NOT NULL)`,
    `INSERT INTO "RouteVersion"(version) VALUES(0)`,
    `CREATE TABLE "RouteChange" (id serial PRIMARY KEY, modid integer NOT NULL, cmdid integer NOT NULL, version bigint NOT NULL)`,
    `CREATE TABLE "ServerCallStatus" (modid integer NOT NULL, cmdid integer NOT NULL, ip bigint NOT NULL, port integer NOT NULL,
      caller bigint NOT NULL, succ_cnt integer NOT NULL, err_cnt integer NOT NULL, ts bigint NOT NULL, overload char(1) NOT NULL,
      PRIMARY KEY (modid, cmdid, ip, port, caller))`,
    `CREATE TABLE "ModIDConfig" (id serial PRIMARY KEY, modid integer NOT NULL, content char(255) NOT NULL)`,
    `CREATE TABLE "CmdIDConfig" (id serial PRIMARY KEY, cmdid integer NOT NULL, content char(255) NOT NULL)`,
  ],
  sqlite: [
    `CREATE TABLE RouteData (id integer PRIMARY KEY AUTOINCREMENT, modid integer NOT NULL, cmdid integer NOT NULL,
      serverip integer NOT NULL, serverport integer NOT NULL)`,
    `CREATE TABLE RouteVersion (id integer PRIMARY KEY AUTOINCREMENT, version integer NOT NULL)`,
    `INSERT INTO RouteVersion(version) VALUES(0)`,
    `CREATE TABLE RouteChange (id integer PRIMARY KEY AUTOINCREMENT, modid integer NOT NULL, cmdid integer NOT NULL, version integer NOT NULL)`,
    `CREATE TABLE ServerCallStatus (modid integer NOT NULL, cmdid integer NOT NULL, ip integer NOT NULL, port integer NOT NULL,
      caller integer NOT NULL, succ_cnt integer NOT NULL, err_cnt integer NOT NULL, ts integer NOT NULL, overload char(1) NOT NULL,
      PRIMARY KEY (modid, cmdid, ip, port, caller))`,
    `CREATE TABLE ModIDConfig (id integer PRIMARY KEY AUTOINCREMENT, modid integer NOT NULL, content char(255) NOT NULL)`,
    `CREATE TABLE CmdIDConfig (id integer PRIMARY KEY AUTOINCREMENT, cmdid integer NOT NULL, content char(255) NOT NULL)`,
  ],
};

/** Rows as the original's base/sql/dns_route_insert.sql and test scripts write them. */
function originalRows(kind: StoreKind): string[] {
  const q = (name: string) => (kind === 'mysql' ? name : `"${name}"`);
  return [
    `INSERT INTO ${q('RouteData')}(modid, cmdid, serverip, serverport) VALUES(1, 1, 3232235953, 7777)`,
    `INSERT INTO ${q('RouteData')}(modid, cmdid, serverip, serverport) VALUES(1, 2, 3232235954, 7776)`,
    `INSERT INTO ${q('RouteData')}(modid, cmdid, serverip, serverport) VALUES(1, 2, 3232235955, 7778)`,
    `UPDATE ${q('RouteVersion')} SET version = 1600000000 WHERE id = 1`,
    `INSERT INTO ${q('RouteChange')}(modid, cmdid, version) VALUES(1, 1, 1600000000)`,
    `INSERT INTO ${q('ModIDConfig')}(modid, content) VALUES(1, 'orders')`,
    `INSERT INTO ${q('ServerCallStatus')} VALUES(1, 1, 3232235953, 7777, 167772161, 10, 2, 1600000000, '0')`,
  ];
}

async function exec(store: Store, statements: string[]): Promise<void> {
  for (const s of statements) await sql.raw(s).execute(store.db);
}

describe('migration list', () => {
  it('is append-only material: unique names in order', () => {
    expect(() => checkMigrationList(MIGRATIONS)).not.toThrow();
    const [a, b] = MIGRATIONS as [(typeof MIGRATIONS)[number], (typeof MIGRATIONS)[number]];
    expect(() => checkMigrationList([b, a])).toThrow(InvalidArgumentError);
    expect(() => checkMigrationList([a, a])).toThrow(/listed twice/);
  });
});

describe.each(backends())('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'store migrations'), () => {
    it('creates every table on an empty database; a second migrate applies nothing', async () => {
      const { store } = await freshStore(b, { migrate: false });
      const first = await store.migrate();
      expect(first.applied).toEqual(MIGRATIONS.map((m) => m.name));
      expect(first.alreadyApplied).toEqual([]);
      const second = await store.migrate();
      expect(second).toEqual({ applied: [], alreadyApplied: MIGRATIONS.map((m) => m.name), unknown: [] });
      expect(await store.getVersion()).toBe(0);
      const versionRows = await store.db.selectFrom('RouteVersion').selectAll().execute();
      expect(versionRows.map((r) => [Number(r.id), Number(r.version)])).toEqual([[1, 0]]);
      // Every table answers.
      for (const table of [
        'RouteData',
        'RouteChange',
        'ServerCallStatus',
        'ModIDConfig',
        'CmdIDConfig',
        'lars_dns_instance',
      ] as const) {
        expect(await store.db.selectFrom(table).selectAll().execute()).toEqual([]);
      }
    });

    it('two stores migrating the same database at once apply each migration once', async () => {
      if (b.name === 'sqlite-memory') return; // a private database per connection: nothing to share
      const database = await freshDatabase(b);
      const s1 = await openStore(database.url);
      const s2 = await openStore(database.url);
      try {
        const [r1, r2] = await Promise.all([s1.migrate(), s2.migrate()]);
        expect([...r1.applied, ...r2.applied].sort()).toEqual(MIGRATIONS.map((m) => m.name).sort());
        const recorded = await s1.db.selectFrom('lars_migrations').select('name').execute();
        expect(recorded).toHaveLength(MIGRATIONS.length);
      } finally {
        await s1.close();
        await s2.close();
      }
    });

    it('keeps the rows and version of an existing original-Lars database and works on it', async () => {
      const { store } = await freshStore(b, { migrate: false });
      await exec(store, ORIGINAL_DDL[b.kind]);
      await exec(store, originalRows(b.kind));

      const result = await store.migrate();
      expect(result.applied).toEqual(MIGRATIONS.map((m) => m.name));

      expect(await store.getVersion()).toBe(1600000000);
      const routes = await store.listRoutes();
      expect(routes.map((r) => [r.modid, r.cmdid, r.ip, r.port])).toEqual([
        [1, 1, ipToNumber('192.168.1.177'), 7777],
        [1, 2, 3232235954, 7776],
        [1, 2, 3232235955, 7778],
      ]);
      if (b.kind === 'mysql') expect(routes[0]?.id).toBe(116064); // the original's AUTO_INCREMENT start
      expect(await store.changesAfter(0)).toEqual([{ id: 1, modid: 1, cmdid: 1, version: 1600000000 }]);
      expect((await store.listModIds()).map((r) => [r.modid, r.content.trimEnd()])).toEqual([[1, 'orders']]);
      const status = await store.db.selectFrom('ServerCallStatus').selectAll().execute();
      expect(status).toHaveLength(1);
      const versionRows = await store.db.selectFrom('RouteVersion').selectAll().execute();
      expect(versionRows).toHaveLength(1);

      // Our writes work on the original tables and keep the version rule.
      const added = await store.addHost(1, 2, ipToNumber('10.0.0.9'), 9999);
      expect(added.version).toBeGreaterThan(1600000000);
      expect(await store.changesAfter(1)).toEqual([{ id: 2, modid: 1, cmdid: 2, version: added.version }]);
      await store.removeHost(1, 1, ipToNumber('192.168.1.177'), 7777);
      expect(await store.getRoute(1, 1)).toEqual([]);

      // And migrating again still changes nothing.
      expect((await store.migrate()).applied).toEqual([]);
      expect(await store.listRoutes()).toHaveLength(3);
    });

    it('tolerates original tables without the RouteVersion row', async () => {
      const { store } = await freshStore(b, { migrate: false });
      await exec(
        store,
        ORIGINAL_DDL[b.kind].filter((s) => !s.startsWith('INSERT')),
      );
      await store.migrate();
      expect(await store.getVersion()).toBe(0);
    });
  });
});
