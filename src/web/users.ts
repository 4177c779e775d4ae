import { ConflictError, InvalidArgumentError, NotFoundError } from '../errors.js';
import type { Store } from '../store/index.js';
import { dbOp, systemNowSeconds } from './db-op.js';
import {
  assertPasswordPolicy,
  DEFAULT_PARAMS,
  hashPassword,
  randomPassword,
  type ScryptParams,
} from './passwords.js';

/**
 * Console users (table lars_user). Names are case-sensitive as stored; passwords are scrypt hashes
 * (passwords.ts). Changing a password or removing a user ends that user's sessions.
 */

export const ADMIN_USER_NAME = 'admin';
const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

export interface User {
  id: number;
  name: string;
  createdAt: number;
}

export interface UserWithHash extends User {
  passwordHash: string;
}

export function assertUserName(name: unknown): string {
  if (typeof name !== 'string' || !USER_NAME.test(name)) {
    throw new InvalidArgumentError(
      'user name: 1-64 characters, letters, digits and _ . @ - (starting with a letter or digit)',
    );
  }
  return name;
}

function toUser(r: { id: unknown; name: unknown; created_at: unknown }): User {
  return { id: Number(r.id), name: String(r.name), createdAt: Number(r.created_at) };
}

export function findUserByName(store: Store, name: string): Promise<UserWithHash | undefined> {
  return dbOp('findUserByName', async () => {
    const r = await store.db
      .selectFrom('lars_user')
      .select(['id', 'name', 'password_hash', 'created_at'])
      .where('name', '=', name)
      .executeTakeFirst();
    return r ? { ...toUser(r), passwordHash: String(r.password_hash) } : undefined;
  });
}

export function getUserById(store: Store, id: number): Promise<User | undefined> {
  return dbOp('getUserById', async () => {
    const r = await store.db
      .selectFrom('lars_user')
      .select(['id', 'name', 'created_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    return r ? toUser(r) : undefined;
  });
}

export function listUsers(store: Store): Promise<User[]> {
  return dbOp('listUsers', async () => {
    const rows = await store.db
      .selectFrom('lars_user')
      .select(['id', 'name', 'created_at'])
      .orderBy('name')
      .execute();
    return rows.map(toUser);
  });
}

export function countUsers(store: Store): Promise<number> {
  return dbOp('countUsers', async () => {
    const r = await store.db
      .selectFrom('lars_user')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  });
}

/** ConflictError when the name is taken (also when another process wins a race for it). */
export async function createUser(
  store: Store,
  name: string,
  password: string,
  nowSeconds: () => number = systemNowSeconds,
  params: ScryptParams = DEFAULT_PARAMS,
): Promise<User> {
  assertUserName(name);
  assertPasswordPolicy(password);
  const passwordHash = await hashPassword(password, params);
  const taken = () => new ConflictError(`user ${JSON.stringify(name)} already exists`);
  if (await findUserByName(store, name)) throw taken();
  try {
    await dbOp('createUser', () =>
      store.db
        .insertInto('lars_user')
        .values({ name, password_hash: passwordHash, created_at: nowSeconds() })
        .execute(),
    );
  } catch (err) {
    // The unique index on name refused a concurrent insert of the same name.
    if (await findUserByName(store, name)) throw taken();
    throw err;
  }
  const created = await findUserByName(store, name);
  if (!created) throw new NotFoundError(`user ${JSON.stringify(name)} vanished right after being created`);
  return { id: created.id, name: created.name, createdAt: created.createdAt };
}

/** Sets a new password and ends the user's sessions. NotFoundError for an unknown user. */
export async function setUserPassword(
  store: Store,
  name: string,
  password: string,
  params: ScryptParams = DEFAULT_PARAMS,
): Promise<void> {
  assertPasswordPolicy(password);
  const passwordHash = await hashPassword(password, params);
  await dbOp('setUserPassword', () =>
    store.db.transaction().execute(async (trx) => {
      const user = await trx.selectFrom('lars_user').select('id').where('name', '=', name).executeTakeFirst();
      if (!user) throw new NotFoundError(`no user ${JSON.stringify(name)}`);
      await trx
        .updateTable('lars_user')
        .set({ password_hash: passwordHash })
        .where('id', '=', user.id)
        .execute();
      await trx.deleteFrom('lars_session').where('user_id', '=', Number(user.id)).execute();
    }),
  );
}

/**
 * Replaces a user's hash with one of today's parameters after a successful login (issue 11); the
 * password and the sessions stay. Only when the stored hash is still the one that was verified, so
 * a password change made meanwhile is never undone.
 */
export async function upgradePasswordHash(
  store: Store,
  id: number,
  verifiedHash: string,
  password: string,
  params: ScryptParams = DEFAULT_PARAMS,
): Promise<boolean> {
  const passwordHash = await hashPassword(password, params);
  const r = await dbOp('upgradePasswordHash', () =>
    store.db
      .updateTable('lars_user')
      .set({ password_hash: passwordHash })
      .where('id', '=', id)
      .where('password_hash', '=', verifiedHash)
      .executeTakeFirst(),
  );
  return Number(r.numUpdatedRows) === 1;
}

/** Removes a user and their sessions. NotFoundError for an unknown user. */
export async function removeUser(store: Store, name: string): Promise<void> {
  await dbOp('removeUser', () =>
    store.db.transaction().execute(async (trx) => {
      const user = await trx.selectFrom('lars_user').select('id').where('name', '=', name).executeTakeFirst();
      if (!user) throw new NotFoundError(`no user ${JSON.stringify(name)}`);
      await trx.deleteFrom('lars_session').where('user_id', '=', Number(user.id)).execute();
      await trx.deleteFrom('lars_user').where('id', '=', user.id).execute();
    }),
  );
}

export interface EnsureAdminOptions {
  /** Use this password instead of a random one (e.g. from LARS_ADMIN_PASSWORD). */
  password?: string | undefined;
  nowSeconds?: () => number;
}

/**
 * First start: when the console has no user at all, creates `admin` and returns its password (random
 * unless given) so `lars up` can print it once. Returns undefined when any user already exists,
 * including when a concurrent start created `admin` first. The password is never stored in clear.
 */
export async function ensureAdminUser(
  store: Store,
  options: EnsureAdminOptions = {},
): Promise<string | undefined> {
  if ((await countUsers(store)) > 0) return undefined;
  const password = options.password ?? randomPassword();
  try {
    await createUser(store, ADMIN_USER_NAME, password, options.nowSeconds);
  } catch (err) {
    if (err instanceof ConflictError) return undefined;
    throw err;
  }
  return password;
}
