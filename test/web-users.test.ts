import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  ConflictError,
  ErrorCode,
  InvalidArgumentError,
  NotFoundError,
  RateLimitError,
} from '../src/errors.js';
import {
  register as registerUser,
  runUserAdd,
  runUserLs,
  runUserPasswd,
  runUserRm,
} from '../src/cli/commands/user.js';
import { register as registerWeb, webFlags } from '../src/cli/commands/web.js';
import type { CliIo } from '../src/cli/options.js';
import { LoginRateLimiter } from '../src/web/login-rate-limit.js';
import { hashPassword, needsRehash, verifyPassword } from '../src/web/passwords.js';
import { createSession, findSession } from '../src/web/sessions.js';
import { createUser, ensureAdminUser, listUsers } from '../src/web/users.js';
import { backends, freshDatabase, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';

/** Console accounts: scrypt hashes, users and sessions on every backend, the limiter, `lars user`. */

function captureIo(): CliIo & { stdout: string[] } {
  const stdout: string[] = [];
  return { stdout, out: (l) => void stdout.push(l), err: () => undefined };
}

describe('passwords', () => {
  it('hashes with scrypt and a random salt; verifies only the right password', async () => {
    const a = await hashPassword('correct horse battery');
    const b = await hashPassword('correct horse battery');
    // N = 2^17 for new hashes (issue 11).
    expect(a).toMatch(/^scrypt\$131072\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(needsRehash(a)).toBe(false);
    expect(a).not.toBe(b);
    expect(await verifyPassword('correct horse battery', a)).toBe(true);
    expect(await verifyPassword('correct horse batterz', a)).toBe(false);
    // Parameters travel with the hash.
    const cheap = await hashPassword('pw-for-low-cost', { N: 1024, r: 8, p: 1 });
    expect(await verifyPassword('pw-for-low-cost', cheap)).toBe(true);
    expect(needsRehash(cheap)).toBe(true);
    expect(needsRehash('plain')).toBe(true);
    for (const bad of [
      '',
      'plain',
      'scrypt$x$8$1$aa$bb',
      'scrypt$1000$8$1$aa$bb',
      `scrypt$${2 ** 30}$8$1$aa$bb`,
      'bcrypt$1$2$3$4$5',
    ]) {
      expect(await verifyPassword('x', bad)).toBe(false);
    }
  });
});

describe('LoginRateLimiter', () => {
  it('blocks a name for the address that failed on it, an address after its failures, until the window ends', () => {
    let now = 0;
    const l = new LoginRateLimiter({ maxFailuresPerUser: 2, maxFailuresPerIp: 3, windowMs: 1000 }, () => now);
    l.recordFailure('1.1.1.1', 'Alice');
    l.check('1.1.1.1', 'alice');
    l.recordFailure('1.1.1.1', 'alice');
    // Case-folded: "Alice" and "alice" share a budget, for that address.
    const err = (() => {
      try {
        l.check('1.1.1.1', 'ALICE');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(RateLimitError);
    expect((err as RateLimitError).code).toBe(ErrorCode.RATE_LIMITED);
    expect((err as RateLimitError).retryAfterS).toBe(1);
    // An outsider's failures do not lock the name out for anyone else (issue 11).
    expect(() => l.check('9.9.9.9', 'alice')).not.toThrow();
    l.recordFailure('1.1.1.1', 'bob');
    expect(() => l.check('1.1.1.1', 'dave')).toThrow(RateLimitError);
    expect(() => l.check('1.1.1.3', 'dave')).not.toThrow();
    now = 1000;
    expect(() => l.check('1.1.1.1', 'alice')).not.toThrow();
  });

  it('a success clears the (address, name) budget but not the address', () => {
    const l = new LoginRateLimiter({ maxFailuresPerUser: 1, maxFailuresPerIp: 2 }, () => 0);
    l.recordFailure('ip', 'alice');
    expect(() => l.check('ip', 'alice')).toThrow(RateLimitError);
    l.recordSuccess('ip', 'alice');
    expect(() => l.check('ip', 'alice')).not.toThrow();
    l.recordFailure('ip', 'bob');
    expect(() => l.check('ip', 'carol')).toThrow(RateLimitError);
  });

  it('slows every login down when failures come from everywhere, never locks out, recovers after a minute', () => {
    let now = 0;
    const l = new LoginRateLimiter(
      { slowdownFreeFailures: 10, slowdownStepMs: 100, slowdownMaxMs: 2_000, maxFailuresPerUser: 3 },
      () => now,
    );
    // 40 addresses guess the admin's password twice each: none reaches its own limit.
    for (let i = 0; i < 40; i++) {
      for (let k = 0; k < 2; k++) {
        l.recordFailure(`10.0.0.${i}`, 'admin');
        now += 100;
      }
    }
    expect(() => l.check('192.0.2.1', 'admin')).not.toThrow();
    expect(l.slowDownMs()).toBe(2_000); // 80 failures in the last minute: capped
    now += 30_000;
    expect(l.slowDownMs()).toBe(2_000);
    now += 40_000; // the minute of failures has passed
    expect(l.slowDownMs()).toBe(0);
    for (let i = 0; i < 12; i++) l.recordFailure('10.1.1.1', `u${i}`);
    expect(l.slowDownMs()).toBe(200);
  });

  it('stays bounded under a flood of distinct names', () => {
    let now = 0;
    const l = new LoginRateLimiter({ maxFailuresPerUser: 1, maxKeys: 100, windowMs: 10_000 }, () => now);
    for (let i = 0; i < 10_000; i++) {
      now = i;
      l.recordFailure(`10.0.${i >> 8}.${i & 255}`, `user${i}`);
    }
    const inner = l as unknown as { byIp: { size: number }; bySourceUser: { size: number } };
    expect(inner.byIp.size).toBeLessThanOrEqual(100);
    expect(inner.bySourceUser.size).toBeLessThanOrEqual(100);
    // The newest entries are the ones kept.
    expect(() => l.check('10.0.39.15', 'user9999')).toThrow(RateLimitError);
  });
});

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'console users and sessions'), () => {
    it('creates users with unique names, checks names and passwords, stores only hashes', async () => {
      const { store } = await freshStore(b);
      const alice = await createUser(store, 'alice', 'correct horse battery', () => 1234);
      expect(alice).toEqual({ id: expect.any(Number), name: 'alice', createdAt: 1234 });
      await expect(createUser(store, 'alice', 'another password')).rejects.toBeInstanceOf(ConflictError);
      await expect(createUser(store, 'bob', 'short')).rejects.toThrow(/at least 8 characters/);
      await expect(
        createUser(store, "x'; DROP TABLE lars_user; --", 'long enough pw'),
      ).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(createUser(store, '', 'long enough pw')).rejects.toBeInstanceOf(InvalidArgumentError);
      const row = await store.db.selectFrom('lars_user').selectAll().executeTakeFirstOrThrow();
      expect(row.password_hash).toMatch(/^scrypt\$/);
      expect(row.password_hash).not.toContain('correct horse');
      expect((await listUsers(store)).map((u) => u.name)).toEqual(['alice']);
      expect(await ensureAdminUser(store)).toBeUndefined();

      const s = await createSession(store, alice.id, 60, 1000);
      expect(await findSession(store, s.token, 1059)).toMatchObject({
        userId: alice.id,
        userName: 'alice',
        csrf: s.csrf,
      });
      expect(await findSession(store, s.token, 1060)).toBeUndefined();
      expect(await findSession(store, `${s.token}x`, 1000)).toBeUndefined();
      expect(await findSession(store, "' OR 1=1 --", 1000)).toBeUndefined();
    });
  });
});

describe('lars user', () => {
  it('adds, lists, changes the password of (ending sessions) and removes users', async () => {
    // An initialised database (`lars db init`); the commands do not create one on a typo'd path.
    const { store, url } = await freshStore(backends()[0]!);
    const db = { url };
    const io = captureIo();
    await runUserAdd('alice', { db: db.url, password: 'correct horse battery' }, { io });
    expect(io.stdout.at(-1)).toMatch(/^added user alice \(id \d+\)$/);
    await expect(
      runUserAdd('alice', { db: db.url, password: 'correct horse battery' }, { io }),
    ).rejects.toBeInstanceOf(ConflictError);
    await expect(runUserAdd('bob', { db: db.url, password: 'short' }, { io })).rejects.toThrow(
      /at least 8 characters/,
    );
    await expect(runUserAdd('bob', { db: db.url }, { io })).rejects.toThrow(
      /--password P or --password-stdin/,
    );
    await runUserAdd(
      'bob',
      { db: db.url, passwordStdin: true },
      { io, readStdin: async () => 'from stdin pw\n' },
    );

    const bob = (await listUsers(store)).find((u) => u.name === 'bob')!;
    const before = await store.db
      .selectFrom('lars_user')
      .select('password_hash')
      .where('name', '=', 'bob')
      .executeTakeFirstOrThrow();
    expect(await verifyPassword('from stdin pw', before.password_hash)).toBe(true);
    const session = await createSession(store, bob.id, 3600, Math.floor(Date.now() / 1000));

    await runUserPasswd('bob', { db: db.url, password: 'a brand new one' }, { io });
    const after = await store.db
      .selectFrom('lars_user')
      .select('password_hash')
      .where('name', '=', 'bob')
      .executeTakeFirstOrThrow();
    expect(await verifyPassword('a brand new one', after.password_hash)).toBe(true);
    expect(await findSession(store, session.token, Math.floor(Date.now() / 1000))).toBeUndefined();
    await expect(
      runUserPasswd('nobody', { db: db.url, password: 'a brand new one' }, { io }),
    ).rejects.toBeInstanceOf(NotFoundError);

    io.stdout.length = 0;
    await runUserLs({ db: db.url }, { io });
    expect(io.stdout[0]).toMatch(/^alice\tid \d+\tcreated /);
    expect(io.stdout.at(-1)).toBe('2 users');
    await runUserRm('bob', { db: db.url }, { io });
    await expect(runUserRm('bob', { db: db.url }, { io })).rejects.toBeInstanceOf(NotFoundError);
    expect((await listUsers(store)).map((u) => u.name)).toEqual(['alice']);
  });

  it('documents its commands and options; `lars web` maps --host/--port to [web]', () => {
    const program = new Command('lars');
    registerUser(program);
    registerWeb(program);
    const user = program.commands.find((c) => c.name() === 'user')!;
    expect(user.commands.map((c) => c.name())).toEqual(['add', 'passwd', 'rm', 'ls']);
    const add = user.commands[0]!;
    expect(add.options.map((o) => o.long)).toEqual(['--db', '--config', '--password', '--password-stdin']);
    const web = program.commands.find((c) => c.name() === 'web')!;
    expect(web.options.map((o) => o.long)).toEqual(['--config', '--db', '--host', '--port']);
    expect(webFlags({ host: '0.0.0.0', port: '9090' })).toEqual([
      { section: 'web', key: 'ip', value: '0.0.0.0', flag: '--host' },
      { section: 'web', key: 'port', value: 9090, flag: '--port' },
    ]);
    expect(() => webFlags({ port: '70000' })).toThrow(InvalidArgumentError);
  });

  it('refuses a database file that does not exist instead of creating it', async () => {
    const db = await freshDatabase(backends()[0]!);
    await expect(
      runUserAdd('alice', { db: db.url, password: 'correct horse battery' }, { io: captureIo() }),
    ).rejects.toThrow(/does not exist/);
  });
});
