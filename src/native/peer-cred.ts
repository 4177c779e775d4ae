import type { Socket } from 'node:net';

/**
 * PLACEHOLDER written on branch `bus` so the bus can be built before the native addon exists.
 * The real module (native addon reading SO_PEERCRED, node-addon-api) comes from branch `shm`; it
 * replaces this file by cherry-pick. Until then peer credentials are unknown: this returns
 * undefined and the bus reports pid/uid as unknown. Never derive them from what a client says.
 */
export function socketPeerCred(_socket: Socket): { pid: number; uid: number; gid: number } | undefined {
  return undefined;
}
