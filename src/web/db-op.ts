import { ErrorCode, isLarsError, StoreError } from '../errors.js';

/**
 * Queries the console runs itself through `store.db` (users, sessions, statistics) get the store's
 * own error contract: LarsErrors pass through, driver failures become StoreError naming the operation.
 */
export async function dbOp<T>(op: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isLarsError(err)) throw err;
    const message = err instanceof Error && err.message ? err.message : String(err);
    throw new StoreError(ErrorCode.STORE, `${op} failed: ${message}`, { cause: err });
  }
}

export const systemNowSeconds = (): number => Math.floor(Date.now() / 1000);
