import type { Command } from 'commander';
import type { OpenStoreOptions, Store } from '../../store/index.js';
import { processIo, resolveDbUrl, withDbOption, type CliIo } from '../options.js';

/**
 * `lars db ...`: database administration. `init` creates the schema or upgrades it; it is idempotent
 * and works on a database created by the original Lars (its tables and rows are kept).
 */

export interface DbCommandDeps {
  io?: CliIo;
  openStore?: (url: string, options?: OpenStoreOptions) => Promise<Store>;
}

export async function runDbInit(
  options: { db?: string | undefined; create?: boolean | undefined },
  deps: DbCommandDeps = {},
): Promise<void> {
  const io = deps.io ?? processIo;
  const lib = await import('../../store/index.js');
  const open = deps.openStore ?? lib.openStore;
  const url = resolveDbUrl(options.db);
  let store: Store;
  try {
    store = await open(url);
  } catch (err) {
    // --create: a MySQL/PostgreSQL database that does not exist yet is created, then initialised.
    const parsed = lib.parseStoreUrl(url);
    if (!options.create || parsed.kind === 'sqlite' || !lib.isMissingDatabase(err)) throw err;
    await lib.createDatabase(parsed);
    io.out(`created database ${parsed.database} on ${parsed.display}`);
    store = await open(url);
  }
  try {
    const result = await store.migrate();
    io.out(`database ${store.url}`);
    for (const name of result.applied) io.out(`applied ${name}`);
    if (result.applied.length === 0) {
      io.out(`up to date (${result.alreadyApplied.length} migrations already applied)`);
    }
    if (result.unknown.length > 0) {
      io.err(
        `warning: the database has migrations this lars does not know (${result.unknown.join(', ')}); is it newer?`,
      );
    }
    io.out(`route version ${await store.getVersion()}`);
  } finally {
    await store.close();
  }
}

export function registerDbCommands(program: Command, deps: DbCommandDeps = {}): void {
  const db = program.command('db').description('database administration (schema, migrations)');
  withDbOption(
    db
      .command('init')
      .description(
        'create the Lars tables or apply pending migrations; safe to run again. On an existing (original) Lars database ' +
          'it keeps every table and row, and adds our own tables (lars_*) and two indexes (RouteData modid,cmdid; RouteChange version)',
      ),
  )
    .option(
      '--create',
      'create the MySQL/PostgreSQL database first when it does not exist (SQLite files are always created)',
    )
    .action(async (opts: { db?: string; create?: boolean }) => runDbInit(opts, deps));
}
