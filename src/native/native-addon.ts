/**
 * The native addon (native/binding.gyp): named POSIX shared-memory mappings and Unix-socket peer
 * credentials (issue 12), and the listening sockets `lars up` holds across worker restarts plus the
 * agent's datagram filter (issue 11, native/src/listen_sockets.cc). Built from source by `npm install`/`npm run build`
 * (scripts/build-native.mjs); when it did not build or does not load, `loadNative()` returns
 * undefined and `nativeStatus()` says why, so callers fall back (shm: /dev/shm file mode) and can
 * warn once and export the mode as a metric.
 *
 * `LARS_NATIVE=off` makes loadNative() act as if the addon were missing (to exercise fallbacks).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export interface NativeAddon {
  /**
   * Maps the POSIX shared-memory segment `name` ('/' + up to 254 bytes without '/') read-write and
   * MAP_SHARED, and returns an ArrayBuffer over the whole mapping (zero copy: Buffer/TypedArray views
   * see what other processes write). `create` = shm_open(O_CREAT|O_EXCL, 0600) + ftruncate(size);
   * it throws `code: 'EEXIST'` if the segment exists. Otherwise the segment must exist; `size` 0 maps
   * its current size. The mapping is released by unmap() or, failing that, by the garbage collector
   * once no view of it is left. It is an ArrayBuffer, not a SharedArrayBuffer: Atomics read-modify-write
   * operations work on it (test/native-addon.test.ts pins that they are exact across processes), but
   * Atomics.wait throws a TypeError and Atomics.notify wakes nobody.
   */
  map(name: string, size: number, create: boolean): ArrayBuffer;
  /**
   * munmap now and detach the ArrayBuffer (every view of it becomes empty, so JavaScript cannot
   * touch unmapped memory). False when it is not a live mapping of this addon (e.g. already unmapped).
   */
  unmap(mapping: ArrayBuffer): boolean;
  /** shm_unlink: true when removed, false when no such segment existed. Existing mappings stay valid. */
  unlink(name: string): boolean;
  /** SO_PEERCRED of a connected Unix socket's file descriptor; throws (code 'EBADF', 'ENOTSOCK', ...). */
  peerCred(fd: number): PeerCredentials;
  readonly version: number;
}

/**
 * Sockets held without being served (issue 11). Every call throws an Error with `code` (errno name)
 * and `syscall` on failure. Hosts are numeric IPv4/IPv6 addresses.
 */
export interface NativeSockets {
  /** socket + SO_REUSEADDR + bind + listen; close-on-exec, non-blocking. Returns the fd. */
  listenTcp(host: string, port: number, backlog?: number): number;
  /** socket + bind of a UDP socket; close-on-exec, non-blocking. Returns the fd. */
  bindUdp(host: string, port: number): number;
  /** SO_RCVBUFFORCE when permitted, else SO_RCVBUF; returns what the kernel set (twice the request). */
  setRecvBuffer(fd: number, bytes: number): number;
  /**
   * A classic BPF socket filter on a UDP socket: the kernel drops every datagram that is not exactly
   * one Lars frame (8 + msglen bytes) or is longer than `maxLen` bytes, before it takes buffer space.
   */
  attachDatagramFilter(fd: number, maxLen: number): void;
  /** Datagrams the kernel dropped for this socket (filter and full receive buffer; SO_MEMINFO). */
  socketDrops(fd: number): number;
  closeFd(fd: number): void;
}

/**
 * Batched UDP receive (issue 17, native/src/udp_batch.cc): a readiness watcher on a non-blocking
 * IPv4 UDP socket, recvmmsg into one caller-owned buffer, sendto from a buffer range. No objects per
 * datagram.
 */
export interface NativeUdp {
  /** Calls `callback` on each readable wake-up until udpUnwatch. */
  udpWatch(fd: number, callback: () => void): unknown;
  udpUnwatch(watcher: unknown): boolean;
  /**
   * Reads up to buf.length / slot datagrams (at most 64) without blocking; datagram i is at
   * i * slot, its length in meta[4i] (-1: truncated or not IPv4), source IPv4 (host order) in
   * meta[4i + 1], source port in meta[4i + 2]. Returns how many (0: none waiting).
   */
  udpRecvBatch(fd: number, buf: Uint8Array, slot: number, meta: Int32Array): number;
  /** sendto without blocking: bytes sent, or -errno (-EAGAIN: the send buffer is full). */
  udpSendTo(fd: number, buf: Uint8Array, offset: number, len: number, ip: number, port: number): number;
  udpLocalPort(fd: number): number;
}

export interface NativeStatus {
  loaded: boolean;
  /** Why it is not loaded: disabled, not built (with the build's reason) or the load error. */
  reason?: string;
  path: string;
}

const ADDON_FILE = join('native', 'build', 'Release', 'lars_native.node');
let cached: { addon: NativeAddon | undefined; status: NativeStatus } | undefined;

/** The package root: the nearest ancestor holding native/binding.gyp (src/native or dist/src/native). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i += 1) {
    if (existsSync(join(dir, 'native', 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

function load(): { addon: NativeAddon | undefined; status: NativeStatus } {
  const root = packageRoot();
  const path = join(root, ADDON_FILE);
  if (process.env.LARS_NATIVE === 'off') {
    return { addon: undefined, status: { loaded: false, reason: 'disabled by LARS_NATIVE=off', path } };
  }
  if (!existsSync(path)) {
    const marker = join(root, 'native', 'build', 'BUILD-FAILED.txt');
    const why = existsSync(marker) ? readFileSync(marker, 'utf8').split('\n')[0] : 'run npm run build';
    return { addon: undefined, status: { loaded: false, reason: `addon not built: ${why}`, path } };
  }
  try {
    const addon = createRequire(import.meta.url)(path) as NativeAddon;
    if (typeof addon.map !== 'function' || typeof addon.peerCred !== 'function') {
      return { addon: undefined, status: { loaded: false, reason: 'addon has an unexpected shape', path } };
    }
    return { addon, status: { loaded: true, path } };
  } catch (err) {
    return {
      addon: undefined,
      status: { loaded: false, reason: `addon failed to load: ${(err as Error).message}`, path },
    };
  }
}

/** The addon, or undefined when it is unavailable (see nativeStatus().reason). Loaded once. */
export function loadNative(): NativeAddon | undefined {
  cached ??= load();
  return cached.addon;
}

/** The socket functions, or undefined when the addon is unavailable or predates them. */
export function nativeSockets(): NativeSockets | undefined {
  const addon = loadNative() as (NativeAddon & Partial<NativeSockets>) | undefined;
  return addon && typeof addon.listenTcp === 'function' && typeof addon.attachDatagramFilter === 'function'
    ? (addon as NativeAddon & NativeSockets)
    : undefined;
}

/** The batched UDP functions, or undefined when the addon is unavailable or predates them. */
export function nativeUdp(): NativeUdp | undefined {
  const addon = loadNative() as (NativeAddon & Partial<NativeUdp>) | undefined;
  return addon && typeof addon.udpWatch === 'function' && typeof addon.udpRecvBatch === 'function'
    ? (addon as NativeAddon & NativeUdp)
    : undefined;
}

/** Whether the addon loaded and, if not, why. */
export function nativeStatus(): NativeStatus {
  cached ??= load();
  return { ...cached.status };
}
