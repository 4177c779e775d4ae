import {
  closeSync,
  constants,
  ftruncateSync,
  fstatSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { ErrorCode, ShmError } from '../errors.js';
import { loadNative, nativeStatus } from '../native/index.js';
import type { ShmMode } from './reports.js';

/** Where POSIX shared-memory segments live on Linux: shm_open("/x") is the file /dev/shm/x. */
export const SHM_DIR = '/dev/shm';

/** `auto` = the addon when it loads, else file mode; `addon` = the addon or an error; `file` = file mode. */
export type ShmModeSetting = 'auto' | ShmMode;

/**
 * A mapped (addon) or opened (file mode) pool segment. Both modes address the same object: a
 * segment created by shm_open is the file /dev/shm/NAME, so an addon-mode process and a file-mode
 * process share one pool.
 *
 * - addon: `memory` is the whole segment mapped MAP_SHARED; views of it are zero-copy.
 * - file: no mapping (Node cannot mmap); read() and write() copy with pread/pwrite on the file in
 *   tmpfs, still without sending the payload through a socket.
 */
export interface PoolSegment {
  readonly name: string;
  readonly size: number;
  readonly mode: ShmMode;
  /** The mapping (addon mode); undefined in file mode. */
  readonly memory: ArrayBuffer | undefined;
  /** addon: a view of [offset, offset+len); file: a fresh Buffer read from the file. */
  read(offset: number, len: number): Buffer;
  /** Copies [offset, offset + out.length) into `out` (addon: memcpy; file: pread). */
  readInto(offset: number, out: Buffer): void;
  /** Copies `data` to `offset` (addon: into the mapping; file: pwrite). */
  write(offset: number, data: Uint8Array): void;
  /** Unmaps (every view becomes empty) or closes the file. Idempotent. */
  close(): void;
}

/** Which mode to run in, and why when it is not the addon. */
export function resolveMode(setting: ShmModeSetting): { mode: ShmMode; reason?: string } {
  if (setting === 'file') return { mode: 'file', reason: 'file mode asked for ([shm] mode / LARS_SHM_MODE)' };
  if (loadNative()) return { mode: 'addon' };
  const why = nativeStatus().reason ?? 'native addon unavailable';
  if (setting === 'addon') throw new ShmError(ErrorCode.SHM_POOL, `addon mode asked for, but ${why}`);
  return { mode: 'file', reason: why };
}

export function segmentPath(name: string): string {
  return `${SHM_DIR}${name}`;
}

function poolError(what: string, cause: unknown): ShmError {
  return new ShmError(ErrorCode.SHM_POOL, `${what}: ${(cause as Error).message}`, { cause });
}

/** Creates a new segment exclusively (mode 0600) of `size` bytes. */
export function createSegment(name: string, size: number, mode: ShmMode): PoolSegment {
  if (mode === 'addon') {
    try {
      return addonSegment(name, loadNative()!.map(name, size, true));
    } catch (err) {
      throw poolError(`cannot create shared-memory segment ${name}`, err);
    }
  }
  let fd: number;
  try {
    fd = openSync(segmentPath(name), constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (err) {
    throw poolError(`cannot create ${segmentPath(name)}`, err);
  }
  try {
    ftruncateSync(fd, size);
  } catch (err) {
    closeSync(fd);
    unlinkSegment(name);
    throw poolError(`cannot size ${segmentPath(name)} to ${size} bytes`, err);
  }
  return fileSegment(name, size, fd);
}

/** Opens an existing segment; `size` is what the daemon announced (the segment must be that large). */
export function openSegment(name: string, size: number, mode: ShmMode): PoolSegment {
  if (mode === 'addon') {
    try {
      return addonSegment(name, loadNative()!.map(name, size, false));
    } catch (err) {
      throw poolError(`cannot map shared-memory segment ${name}`, err);
    }
  }
  let fd: number;
  try {
    fd = openSync(segmentPath(name), constants.O_RDWR);
  } catch (err) {
    throw poolError(`cannot open ${segmentPath(name)}`, err);
  }
  if (fstatSync(fd).size < size) {
    closeSync(fd);
    throw new ShmError(
      ErrorCode.SHM_POOL,
      `${segmentPath(name)} is smaller than the ${size} bytes announced`,
    );
  }
  return fileSegment(name, size, fd);
}

/** Removes a segment's name (mappings stay valid). False when it did not exist. */
export function unlinkSegment(name: string): boolean {
  try {
    unlinkSync(segmentPath(name));
    return true;
  } catch {
    return false;
  }
}

function addonSegment(name: string, memory: ArrayBuffer): PoolSegment {
  let mapped: ArrayBuffer | undefined = memory;
  const mem = (): ArrayBuffer => {
    if (!mapped) throw new ShmError(ErrorCode.SHM_STALE, `segment ${name} is no longer mapped`);
    return mapped;
  };
  return {
    name,
    size: memory.byteLength,
    mode: 'addon',
    get memory() {
      return mapped;
    },
    read: (offset, len) => Buffer.from(mem(), offset, len),
    readInto: (offset, out) => void out.set(new Uint8Array(mem(), offset, out.length)),
    write: (offset, data) => new Uint8Array(mem(), offset, data.byteLength).set(data),
    close() {
      if (mapped) loadNative()!.unmap(mapped);
      mapped = undefined;
    },
  };
}

function fileSegment(name: string, size: number, fd: number): PoolSegment {
  let open = true;
  const check = (): void => {
    if (!open) throw new ShmError(ErrorCode.SHM_STALE, `segment ${name} is closed`);
  };
  return {
    name,
    size,
    mode: 'file',
    memory: undefined,
    read(offset, len) {
      const out = Buffer.allocUnsafe(len);
      this.readInto(offset, out);
      return out;
    },
    readInto(offset, out) {
      check();
      const len = out.length;
      let done = 0;
      while (done < len) {
        const n = readSync(fd, out, done, len - done, offset + done);
        if (n === 0) throw new ShmError(ErrorCode.SHM_POOL, `segment ${name} ends before ${offset + len}`);
        done += n;
      }
    },
    write(offset, data) {
      check();
      let done = 0;
      while (done < data.byteLength) done += writeSync(fd, data, done, data.byteLength - done, offset + done);
    },
    close() {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}
