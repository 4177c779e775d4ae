import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, resolve } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import { MAX_SOCKET_PATH_BYTES } from '../socket-path.js';

/** Mode of the bus socket: only its owner may connect (DESIGN §9). */
export const SOCKET_MODE = 0o600;
/** Mode of the directory the daemon creates for it. */
export const SOCKET_DIR_MODE = 0o700;

/**
 * Gets `path` ready for listening: checks its length, creates its directory 0700 when missing and
 * removes a stale socket left by a killed bus. A live bus answering there is refused, unless
 * `replace` (the rolling restart of `lars up`): then the path is taken over, the old bus keeps its
 * connections until it is told to stop, and new connections reach the new one. Returns the
 * absolute path.
 */
export async function prepareSocketPath(path: string, log: Logger, replace = false): Promise<string> {
  const abs = resolve(path);
  if (Buffer.byteLength(abs) > MAX_SOCKET_PATH_BYTES)
    throw new InvalidArgumentError(
      `bus socket path ${abs} is ${Buffer.byteLength(abs)} bytes; Unix sockets allow ${MAX_SOCKET_PATH_BYTES}: use --socket with a shorter path`,
    );
  const dir = dirname(abs);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: SOCKET_DIR_MODE });
    chmodSync(dir, SOCKET_DIR_MODE);
  } else {
    const st = lstatSync(dir);
    if (!st.isDirectory()) throw new InvalidArgumentError(`bus socket directory ${dir} is not a directory`);
    if ((st.mode & 0o077) !== 0 && (st.mode & 0o1000) === 0)
      log.warn(
        { dir, mode: (st.mode & 0o777).toString(8) },
        'bus socket directory is accessible to others (the socket itself is 0600)',
      );
  }
  if (existsSync(abs)) {
    const st = lstatSync(abs);
    if (!st.isSocket())
      throw new InvalidArgumentError(`${abs} exists and is not a socket; refusing to replace it`);
    const live = await answers(abs);
    if (live && !replace) throw new InvalidArgumentError(`a bus is already running on ${abs}`);
    log.info(
      { socket: abs },
      live ? 'taking the socket over from the running bus' : 'removing a stale bus socket',
    );
    unlinkSync(abs);
  }
  return abs;
}

/** Identity (inode) of the socket file this bus created, so it never removes a successor's. */
export function socketInode(path: string): number {
  return lstatSync(path).ino;
}

/** Removes the socket file at shutdown if it is still the one this bus created (`ino`). */
export function removeSocketFile(path: string, ino: number): void {
  try {
    const st = lstatSync(path);
    if (st.isSocket() && st.ino === ino) unlinkSync(path);
  } catch {
    // already gone
  }
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolveAnswer) => {
    const s = connect(path);
    const done = (alive: boolean): void => {
      s.destroy();
      resolveAnswer(alive);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1_000, () => done(false));
  });
}
