import type { Command } from 'commander';
import { InvalidArgumentError } from '../../errors.js';
import type { OpenStoreOptions, Store } from '../../store/index.js';
import { processIo, resolveDbUrl, withDbOption, type CliIo } from '../options.js';

/**
 * `lars user add|passwd|rm|ls`: console accounts (issue 6, item 2). Passwords are stored as scrypt
 * hashes; changing a password or removing a user ends that user's sessions. `--password-stdin` keeps
 * the password out of the process list and shell history.
 */

export interface UserCommandDeps {
  io?: CliIo;
  openStore?: (url: string, options?: OpenStoreOptions) => Promise<Store>;
  /** Reads the whole of stdin (injected by tests). */
  readStdin?: () => Promise<string>;
}

interface PasswordFlags {
  db?: string;
  password?: string;
  passwordStdin?: boolean;
}

async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The console's user code (scrypt, the store), loaded only by the user commands. */
const usersLib = () => import('../../web/users.js');

async function passwordFrom(o: PasswordFlags, deps: UserCommandDeps): Promise<string> {
  const { assertPasswordPolicy } = await import('../../web/passwords.js');
  if (o.password !== undefined && o.passwordStdin)
    throw new InvalidArgumentError('give --password or --password-stdin, not both');
  // Checked before the database is opened, so a too-short password fails fast.
  if (o.passwordStdin)
    return assertPasswordPolicy((await (deps.readStdin ?? readAllStdin)()).replace(/\r?\n$/, ''));
  if (o.password === undefined)
    throw new InvalidArgumentError('a password is required: --password P or --password-stdin');
  return assertPasswordPolicy(o.password);
}

async function withStore<T>(
  db: string | undefined,
  deps: UserCommandDeps,
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  // The store (and its database drivers) is loaded only by the commands that use it.
  const open = deps.openStore ?? (await import('../../store/index.js')).openStore;
  const store = await open(resolveDbUrl(db), { createIfMissing: false });
  try {
    // Idempotent; gives a database created by the original Lars (or an older lars) the user tables.
    await store.migrate();
    return await fn(store);
  } finally {
    await store.close();
  }
}

export async function runUserAdd(name: string, o: PasswordFlags, deps: UserCommandDeps = {}): Promise<void> {
  const io = deps.io ?? processIo;
  const password = await passwordFrom(o, deps);
  await withStore(o.db, deps, async (store) => {
    const user = await (await usersLib()).createUser(store, name, password);
    io.out(`added user ${user.name} (id ${user.id})`);
  });
}

export async function runUserPasswd(
  name: string,
  o: PasswordFlags,
  deps: UserCommandDeps = {},
): Promise<void> {
  const io = deps.io ?? processIo;
  const password = await passwordFrom(o, deps);
  await withStore(o.db, deps, async (store) => {
    await (await usersLib()).setUserPassword(store, name, password);
    io.out(`changed the password of ${name}; their sessions were ended`);
  });
}

export async function runUserRm(name: string, o: { db?: string }, deps: UserCommandDeps = {}): Promise<void> {
  const io = deps.io ?? processIo;
  await withStore(o.db, deps, async (store) => {
    await (await usersLib()).removeUser(store, name);
    io.out(`removed user ${name}`);
  });
}

export async function runUserLs(o: { db?: string }, deps: UserCommandDeps = {}): Promise<void> {
  const io = deps.io ?? processIo;
  await withStore(o.db, deps, async (store) => {
    const users = await (await usersLib()).listUsers(store);
    for (const u of users)
      io.out(`${u.name}\tid ${u.id}\tcreated ${new Date(u.createdAt * 1000).toISOString()}`);
    io.out(`${users.length} user${users.length === 1 ? '' : 's'}`);
  });
}

export function register(program: Command, deps: UserCommandDeps = {}): void {
  const user = program
    .command('user')
    .description('web console accounts (scrypt-hashed passwords in the database)');
  const passwordOptions = (cmd: Command): Command =>
    withDbOption(cmd)
      .option('--password <password>', 'the password (at least 8 characters)')
      .option('--password-stdin', 'read the password from stdin (keeps it out of ps and shell history)');

  passwordOptions(user.command('add').description('add a console user').argument('<name>', 'user name'))
    .addHelpText(
      'after',
      '\nExample:\n  lars user add alice --password "correct horse battery" --db sqlite:./lars-data/lars.db',
    )
    .action((name: string, o: PasswordFlags) => runUserAdd(name, o, deps));
  passwordOptions(
    user
      .command('passwd')
      .description("set a user's password (ends their sessions)")
      .argument('<name>', 'user name'),
  ).action((name: string, o: PasswordFlags) => runUserPasswd(name, o, deps));
  withDbOption(
    user.command('rm').description('remove a user and their sessions').argument('<name>', 'user name'),
  ).action((name: string, o: { db?: string }) => runUserRm(name, o, deps));
  withDbOption(user.command('ls').description('list users')).action((o: { db?: string }) =>
    runUserLs(o, deps),
  );
}
