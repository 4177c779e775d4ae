import type { Socket } from 'node:net';
import { loadNative } from './native-addon.js';

/**
 * The kernel's credentials of the process at the other end of a connected Unix-domain socket
 * (SO_PEERCRED: the peer's pid, uid and gid when it connected), never what the peer says about itself.
 * Undefined when the addon is unavailable, the socket has no file descriptor (not connected, already
 * closed, or not a Unix socket created by libuv) or the kernel reports no peer process (TCP).
 */
export function socketPeerCred(socket: Socket): { pid: number; uid: number; gid: number } | undefined {
  const addon = loadNative();
  if (!addon) return undefined;
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  try {
    const cred = addon.peerCred(fd);
    return cred.pid > 0 ? cred : undefined;
  } catch {
    return undefined;
  }
}
