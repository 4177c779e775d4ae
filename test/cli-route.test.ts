import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ConflictError, ErrorCode, InvalidArgumentError, NotFoundError, StoreError } from '../src/errors.js';
import { registerDbCommands, runDbInit } from '../src/cli/commands/db.js';
import {
  registerRouteCommands,
  runRouteAdd,
  runRouteLs,
  runRouteRm,
  type RouteCommandDeps,
} from '../src/cli/commands/route.js';
import { resolveDbUrl, type CliIo } from '../src/cli/options.js';
import { MIGRATIONS, openStore, type NotifyResult } from '../src/store/index.js';
import { backends, freshDatabase, skipBackend, suiteTitle } from './helpers/databases.js';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const CLI = join(ROOT, 'dist/src/cli/main.js');
const CLI_BUILT = existsSync(join(ROOT, 'dist/src/cli/commands/route.js'));

function captureIo(): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => void stdout.push(l), err: (l) => void stderr.push(l) };
}

const noDns = async (): Promise<NotifyResult> => ({ attempted: 0, acknowledged: 0, failures: [] });

async function fakeDnsAdmin(): Promise<{ port: number; polls: () => number }> {
  let polls = 0;
  const server: Server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/admin/poll') polls++;
    res.end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as AddressInfo).port, polls: () => polls };
}

describe('resolveDbUrl', () => {
  it('prefers --db, then LARS_DB, then the default', () => {
    expect(resolveDbUrl('sqlite:a.db', { LARS_DB: 'sqlite:b.db' })).toBe('sqlite:a.db');
    expect(resolveDbUrl(undefined, { LARS_DB: 'sqlite:b.db' })).toBe('sqlite:b.db');
    expect(resolveDbUrl(undefined, { LARS_DB: ' ' })).toBe('sqlite:./lars-data/lars.db');
    expect(resolveDbUrl(undefined, {})).toBe('sqlite:./lars-data/lars.db');
  });
});

describe('route command help', () => {
  it('documents arguments, --db and its default', () => {
    const program = new Command('lars');
    registerDbCommands(program);
    registerRouteCommands(program);
    const route = program.commands.find((c) => c.name() === 'route')!;
    const add = route.commands.find((c) => c.name() === 'add')!;
    const help = add.helpInformation();
    expect(help).toContain('lars route add [options] <modid> <cmdid> <ip> <port>');
    expect(help).toMatch(/--db <url>[\s\S]*sqlite:\.\/lars-data\/lars\.db[\s\S]*LARS_DB/);
    const ls = route.commands.find((c) => c.name() === 'ls')!;
    expect(ls.helpInformation()).toContain('[modid] [cmdid]');
    expect(ls.helpInformation()).toContain('--json');
    const init = program.commands.find((c) => c.name() === 'db')!.commands.find((c) => c.name() === 'init')!;
    expect(init.helpInformation()).toContain('--db <url>');
  });
});

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'lars db/route commands (in process)'), () => {
    it('db init twice, then route add / ls / rm', async () => {
      const { url } = await freshDatabase(b);
      const io = captureIo();
      const deps: RouteCommandDeps = { io, notifier: noDns };
      await runDbInit({ db: url }, { io });
      await runDbInit({ db: url }, { io });
      expect(io.stdout.filter((l) => l.startsWith('applied '))).toHaveLength(MIGRATIONS.length);
      expect(io.stdout).toContain(`up to date (${MIGRATIONS.length} migrations already applied)`);

      io.stdout.length = 0;
      await runRouteAdd({ modid: '1', cmdid: '1', ip: '192.168.1.177', port: '7777' }, { db: url }, deps);
      await runRouteAdd({ modid: '1', cmdid: '2', ip: '255.255.255.255', port: '80' }, { db: url }, deps);
      expect(io.stdout[0]).toMatch(/^added 192\.168\.1\.177:7777 to route 1\/1 \(id \d+\); version \d+$/);

      io.stdout.length = 0;
      await runRouteLs(undefined, undefined, { db: url }, deps);
      expect(io.stdout[0]).toMatch(/^version \d+$/);
      expect(io.stdout[1]).toMatch(/^ID\s+MODID\s+CMDID\s+IP\s+PORT\s+WEIGHT\s+ORIGIN\s+OWNER\s+EXPIRES$/);
      expect(io.stdout[2]).toMatch(/^\d+\s+1\s+1\s+192\.168\.1\.177\s+7777\s+1\s+manual\s+-\s+-$/);
      expect(io.stdout[3]).toMatch(/^\d+\s+1\s+2\s+255\.255\.255\.255\s+80\s+1\s+manual\s+-\s+-$/);
      expect(io.stdout[4]).toBe('2 hosts');

      io.stdout.length = 0;
      await runRouteLs('1', '2', { db: url, json: true }, deps);
      const json = JSON.parse(io.stdout[0]!) as { version: number; routes: unknown[] };
      expect(json.routes).toEqual([
        {
          id: expect.any(Number),
          modid: 1,
          cmdid: 2,
          ip: '255.255.255.255',
          ipNumber: 4294967295,
          port: 80,
          weight: 1,
          origin: 'manual',
        },
      ]);

      await runRouteRm({ modid: '1', cmdid: '1', ip: '192.168.1.177', port: '7777' }, { db: url }, deps);
      await expect(
        runRouteRm({ modid: '1', cmdid: '1', ip: '192.168.1.177', port: '7777' }, { db: url }, deps),
      ).rejects.toBeInstanceOf(NotFoundError);
      await expect(
        runRouteAdd({ modid: '1', cmdid: '2', ip: '255.255.255.255', port: '80' }, { db: url }, deps),
      ).rejects.toBeInstanceOf(ConflictError);
      io.stdout.length = 0;
      await runRouteLs('1', undefined, { db: url }, deps);
      expect(io.stdout.at(-1)).toBe('1 host');
    });

    it('rejects bad arguments with messages naming them, before touching the database', async () => {
      const io = captureIo();
      const deps: RouteCommandDeps = {
        io,
        notifier: noDns,
        openStore: () => Promise.reject(new StoreError(ErrorCode.STORE, 'must not be opened')),
      };
      const cases: Array<[Record<string, string>, RegExp]> = [
        [{ ip: '10.0.0.300' }, /^invalid IPv4 address "10\.0\.0\.300": octet "300" must be 0-255/],
        [{ ip: 'example.com' }, /^invalid IPv4 address "example\.com"/],
        [{ port: '0' }, /^invalid port "0": expected an integer 1-65535/],
        [{ port: '70000' }, /^invalid port "70000"/],
        [{ modid: '1 OR 1=1' }, /^invalid modid "1 OR 1=1": expected an integer/],
        [{ cmdid: '2147483648' }, /^invalid cmdid "2147483648"/],
        [{ modid: '-1' }, /^invalid modid "-1": expected an integer from 0 to 2147483647/],
      ];
      for (const [override, message] of cases) {
        const args = { modid: '1', cmdid: '1', ip: '10.0.0.1', port: '80', ...override };
        const err = await runRouteAdd(args, { db: 'sqlite::memory:' }, deps).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(InvalidArgumentError);
        expect((err as Error).message).toMatch(message);
      }
      await expect(runRouteLs('x', undefined, {}, deps)).rejects.toThrow(/invalid modid "x"/);
    });

    it('asks live dns instances to poll after add and rm; an unreachable one only gets a note', async () => {
      const { url } = await freshDatabase(b);
      const io = captureIo();
      await runDbInit({ db: url }, { io });
      const dns = await fakeDnsAdmin();
      const store = await openStore(url);
      await store.registerDnsInstance({ id: 'live', host: '127.0.0.1', port: 7778, adminPort: dns.port });
      await store.close();

      io.stdout.length = 0;
      await runRouteAdd({ modid: '3', cmdid: '3', ip: '10.1.1.1', port: '8080' }, { db: url }, { io });
      expect(dns.polls()).toBe(1);
      expect(io.stdout).toContain('notified 1 dns instance');

      const store2 = await openStore(url);
      await store2.registerDnsInstance({ id: 'gone', host: '127.0.0.1', port: 7778, adminPort: 1 });
      await store2.close();
      await runRouteRm({ modid: '3', cmdid: '3', ip: '10.1.1.1', port: '8080' }, { db: url }, { io });
      expect(dns.polls()).toBe(2);
      expect(io.stderr).toHaveLength(1);
      expect(io.stderr[0]).toMatch(
        /^note: 1 of 2 dns instances did not acknowledge \(http:\/\/127\.0\.0\.1:1\/admin\/poll: .+\); they will see the change at their next poll$/,
      );
    });
  });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function lars(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, LARS_DB: '', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe.skipIf(!CLI_BUILT)(`compiled CLI${CLI_BUILT ? '' : ' (skipped: run `npm run build` first)'}`, () => {
  function tempDb(): string {
    const dir = mkdtempSync(join(tmpdir(), 'lars-cli-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    return `sqlite:${join(dir, 'sub', 'lars.db')}`;
  }

  it('db init twice; route add, ls, rm; LARS_DB is honoured', async () => {
    const db = tempDb();
    const init1 = await lars(['db', 'init', '--db', db]);
    expect(init1).toMatchObject({ code: 0, stderr: '' });
    expect(init1.stdout).toContain('applied 0001_original_tables');
    const init2 = await lars(['db', 'init', '--db', db]);
    expect(init2.code).toBe(0);
    expect(init2.stdout).toContain('up to date');

    const add = await lars(['route', 'add', '1', '1', '192.168.1.177', '7777', '--db', db]);
    expect(add).toMatchObject({ code: 0, stderr: '' });
    expect(add.stdout).toMatch(/^added 192\.168\.1\.177:7777 to route 1\/1 \(id 1\); version \d+\n$/);

    const ls = await lars(['route', 'ls', '--json'], { LARS_DB: db });
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.stdout).routes).toEqual([
      {
        id: 1,
        modid: 1,
        cmdid: 1,
        ip: '192.168.1.177',
        ipNumber: 3232235953,
        port: 7777,
        weight: 1,
        origin: 'manual',
      },
    ]);

    const rm = await lars(['route', 'rm', '1', '1', '192.168.1.177', '7777', '--db', db]);
    expect(rm.code).toBe(0);
    const rmAgain = await lars(['route', 'rm', '1', '1', '192.168.1.177', '7777', '--db', db]);
    expect(rmAgain.code).toBe(1);
    expect(rmAgain.stderr).toBe(
      'lars: LARS_ERR_NOT_FOUND: host 192.168.1.177:7777 in route 1/1 does not exist\n',
    );
  });

  it('bad IP, bad port and a missing database exit 1 with a clear message', async () => {
    const db = tempDb();
    const badIp = await lars(['route', 'add', '1', '1', '10.0.0.300', '80', '--db', db]);
    expect(badIp.code).toBe(1);
    expect(badIp.stderr).toMatch(/^lars: LARS_ERR_INVALID_ARGUMENT: invalid IPv4 address "10\.0\.0\.300": /);
    const badPort = await lars(['route', 'add', '1', '1', '10.0.0.3', '65536', '--db', db]);
    expect(badPort.code).toBe(1);
    expect(badPort.stderr).toBe(
      'lars: LARS_ERR_INVALID_ARGUMENT: invalid port "65536": expected an integer 1-65535\n',
    );
    const missing = await lars(['route', 'ls', '--db', db]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(
      /^lars: LARS_ERR_STORE: database file .* does not exist \(create it with `lars db init/,
    );
    const badUrl = await lars(['route', 'ls', '--db', 'oracle://x/y']);
    expect(badUrl.code).toBe(1);
    expect(badUrl.stderr).toMatch(
      /^lars: LARS_ERR_STORE_URL: invalid store URL "oracle:\/\/x\/y": unsupported scheme/,
    );
  });

  it('concurrent `lars route add` processes on one SQLite file get distinct versions', async () => {
    const db = tempDb();
    expect((await lars(['db', 'init', '--db', db])).code).toBe(0);
    const runs = await Promise.all(
      [1, 2, 3, 4].map((i) => lars(['route', 'add', '9', '9', `10.9.9.${i}`, '80', '--db', db])),
    );
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0, 0]);
    const versions = runs.map((r) => Number(/version (\d+)/.exec(r.stdout)?.[1]));
    expect(new Set(versions).size).toBe(4);
    const store = await openStore(db);
    try {
      const log = await store.changesAfter(0);
      expect(log.map((c) => c.version)).toEqual([...versions].sort((x, y) => x - y));
    } finally {
      await store.close();
    }
  });
});
