import { describe, expect, it, onTestFinished } from 'vitest';
import { runDbInit } from '../src/cli/commands/db.js';
import { backends, missingDatabase, skipBackend, suiteTitle } from './helpers/databases.js';

/**
 * Issue 16: `lars db init` on a MySQL/PostgreSQL URL whose database does not exist says how to
 * create it; `--create` creates it (then initialises it), and is harmless when it exists.
 */
const servers = backends({ memory: false }).filter((b) => b.kind !== 'sqlite');

describe.each(servers)('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'lars db init --create'), () => {
    it('without --create: LARS_ERR_STORE naming --create; with it: created and initialised', async () => {
      const db = missingDatabase(b);
      onTestFinished(() => db.drop());
      const lines: string[] = [];
      const io = { out: (l: string) => void lines.push(l), err: (l: string) => void lines.push(l) };

      const err = await runDbInit({ db: db.url }, { io }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'LARS_ERR_STORE' });
      expect((err as Error).message).toMatch(/does not exist|Unknown database/);
      expect((err as Error).message).toContain(`lars db init --create --db ${db.url}`);

      await runDbInit({ db: db.url, create: true }, { io });
      expect(lines[0]).toMatch(/^created database lars_t_\w+ on /);
      expect(lines).toContain('applied 0001_original_tables');
      expect(lines.at(-1)).toBe('route version 0');

      lines.length = 0;
      await runDbInit({ db: db.url, create: true }, { io });
      expect(lines.some((l) => l.startsWith('created database'))).toBe(false);
      expect(lines.some((l) => l.startsWith('up to date'))).toBe(true);
    });
  });
});
