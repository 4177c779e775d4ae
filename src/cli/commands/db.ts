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
  options: { db?: string | undefined },
  deps: DbCommandDeps = {},
): Promise<void> {
  const io = deps.io ?? processIo;
  const open = deps.openStore ?? (await import('../../store/index.js')).openStore;
  const store = await open(resolveDbUrl(options.db));
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
        'create the Lars tables or apply pending migrations; safe to run again, and keeps the tables and rows of an existing (original) Lars database',
      ),
  ).action(async (opts: { db?: string }) => runDbInit(opts, deps));
}
