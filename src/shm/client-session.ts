import { closeSync, openSync } from 'node:fs';
import { createConnection } from 'node:net';
import { ConnectionError, ErrorCode, ShmError } from '../errors.js';
import { ShmLink } from './client-link.js';
import { checkHeader, HEADER_BYTES, type PoolLayout } from './pool-layout.js';
import { openSegment, type PoolSegment } from './pool-segment.js';
import type { HelloInfo, ShmMode } from './reports.js';
import { decodeI32Payload, decodeJsonPayload, type ShmNotice } from './wire-codec.js';
import { SHM_PROTOCOL_VERSION, ShmMsg } from './wire-ids.js';

/** One established connection with the pool of its daemon generation mapped. */
export interface ShmSession {
  link: ShmLink;
  segment: PoolSegment;
  info: HelloInfo;
  layout: PoolLayout;
  /** This process's pid as the daemon knows it. */
  pid: number;
}

export interface SessionHooks {
  onNotice(n: ShmNotice): void;
  onClose(link: ShmLink): void;
}

/**
 * Connects to the daemon, says HELLO, proves its identity when the daemon cannot read it from the
 * kernel (file mode: open the file the daemon names, send PROVE, close it), maps the pool and checks
 * its header against the HELLO. Any failure closes what was opened and rejects.
 */
export async function dialSession(
  path: string,
  mode: ShmMode,
  timeoutMs: number,
  hooks: SessionHooks,
): Promise<ShmSession> {
  const socket = createConnection(path);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new ConnectionError(
          ErrorCode.NOT_CONNECTED,
          `no answer from lars shm at ${path} within ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    timer.unref();
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(
        new ConnectionError(
          ErrorCode.NOT_CONNECTED,
          `cannot connect to lars shm at ${path}: ${err.message}`,
          { cause: err },
        ),
      );
    });
  });
  const link: ShmLink = new ShmLink(
    socket,
    (n) => hooks.onNotice(n),
    () => hooks.onClose(link),
  );
  let segment: PoolSegment | undefined;
  try {
    const info = decodeJsonPayload<HelloInfo>(
      await link.request({ cmd: ShmMsg.HELLO, version: SHM_PROTOCOL_VERSION, pid: process.pid }),
    );
    const pid = info.verified ? info.pid : await prove(link, info);
    const layout: PoolLayout = {
      classes: info.pool.classes.map((c, index) => ({ ...c, index })),
      size: info.pool.size,
      blocks: info.pool.classes.reduce((n, c) => n + c.count, 0),
    };
    segment = openSegment(info.pool.name, info.pool.size, mode);
    checkHeader(segment.read(0, HEADER_BYTES), layout, info.pool.generation, info.pool.name);
    return { link, segment, info, layout, pid };
  } catch (err) {
    segment?.close();
    await link.destroy(err as Error);
    throw err;
  }
}

async function prove(link: ShmLink, info: HelloInfo): Promise<number> {
  if (!info.proofPath)
    throw new ShmError(
      ErrorCode.SHM_NOT_VERIFIED,
      'the daemon neither knows this process nor asks for a proof',
    );
  const fd = openSync(info.proofPath, 'r');
  try {
    return decodeI32Payload(await link.request({ cmd: ShmMsg.PROVE }));
  } finally {
    closeSync(fd);
  }
}
