import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

/**
 * Ports for tests that must name a port before anything listens on it (a server that appears later,
 * a child process given its ports in a config file, a port that must refuse connections).
 *
 * Binding port 0, closing and reusing the number races with every other process: the kernel hands
 * the same ephemeral range (32768-60999 here) to other listeners and to outgoing connections. These
 * ports come from below that range, which the kernel never hands out by itself, each vitest worker
 * from its own slice (VITEST_POOL_ID), in sequence from a random start, checked free for TCP and
 * UDP on 127.0.0.1 before they are returned, and never twice in one process.
 */
const LOW = 20_000;
const SLICE = 2_000;
const SLICES = 6;

const pool = Number(process.env.VITEST_POOL_ID ?? process.pid) % SLICES;
const sliceStart = LOW + pool * SLICE;
let next = Math.floor(Math.random() * SLICE);
const handedOut = new Set<number>();

async function isFree(port: number): Promise<boolean> {
  const tcp = await new Promise<boolean>((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
  if (!tcp) return false;
  return new Promise<boolean>((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind({ port, address: '127.0.0.1', exclusive: true }, () => socket.close(() => resolve(true)));
  });
}

/** A port that nothing listens on now (TCP and UDP), for this test process alone. */
export async function unusedPort(): Promise<number> {
  for (let tries = 0; tries < SLICE; tries++) {
    const port = sliceStart + (next++ % SLICE);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await isFree(port)) return port;
  }
  throw new Error('no unused test port left in this worker slice');
}

/** `n` distinct unused ports. */
export async function unusedPorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await unusedPort());
  return out;
}
