import { connect as natsConnect, type NatsConnection } from 'nats';
import { BusClient } from '../../src/bus/index.js';
import { ShmClient, type ShmBuffer } from '../../src/shm/index.js';

/**
 * The three ways of the large-payload bus benchmark (issue 14) behind one interface: the bus with
 * shared-memory payloads (`shm`: the payload is written once into a lars shm block and handed over
 * by reference), the bus with inline payloads (`inline`), and NATS. Every way writes the whole
 * payload once per message on the sending side (the writer's copy) and reads its first 8 bytes (a
 * timestamp) on the receiving side.
 */
export interface LargeTransport {
  /** Writes a payload of `size` bytes (timestamp first) and publishes it. */
  publish(subject: string, size: number): Promise<void>;
  flush(): Promise<void>;
  /** `onMessage(sentAtMs)` for each message; the receiver lets go of the payload after it. */
  subscribe(subject: string, onMessage: (sentAtMs: number) => void): Promise<void>;
  /** Answers each request with its own payload (shm: the same block back, by reference). */
  serve(subject: string): Promise<void>;
  /** Writes a payload of `size` bytes, asks, reads the reply's first bytes, lets go of it. */
  request(subject: string, size: number): Promise<void>;
  close(): Promise<void>;
}

export type LargeSystem = 'shm' | 'inline' | 'nats';

function now(): number {
  return performance.timeOrigin + performance.now();
}

function write(b: Buffer): void {
  b.fill(0x5a);
  b.writeDoubleLE(now(), 0);
}

function sentAt(d: Uint8Array): number {
  return new DataView(d.buffer, d.byteOffset, 8).getFloat64(0, true);
}

export async function openLarge(
  system: LargeSystem,
  name: string,
  o: { busSocket: string; shmSocket: string; natsUrl: string },
): Promise<LargeTransport> {
  if (system === 'nats') return openNats(name, o.natsUrl);
  const shm = system === 'shm' ? await ShmClient.connect({ socket: o.shmSocket }) : undefined;
  const bus = await BusClient.connect({
    name,
    socket: o.busSocket,
    maxOutboundBytes: 256 << 20,
    ...(shm ? { shm } : {}),
  });
  /** A block of `size` bytes; waits while the pool is full (receivers still hold earlier ones). */
  const block = async (size: number): Promise<ShmBuffer> => {
    for (;;) {
      try {
        return await shm!.alloc(size);
      } catch (err) {
        if ((err as { code?: string }).code !== 'LARS_ERR_SHM_NO_MEMORY') throw err;
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  };
  const payload = async (size: number): Promise<Buffer | ShmBuffer> => {
    if (!shm) {
      const b = Buffer.allocUnsafe(size);
      write(b);
      return b;
    }
    const buf = await block(size);
    write(buf.bytes());
    return buf;
  };
  return {
    async publish(subject, size) {
      bus.publish(subject, await payload(size));
    },
    flush: () => bus.flush(),
    async subscribe(subject, onMessage) {
      bus.subscribe(subject, {
        exact: true,
        callback: (m) => {
          onMessage(sentAt(m.data));
          void m.shm?.release();
        },
      });
      await bus.flush();
    },
    async serve(subject) {
      bus.serve(subject, (req) => req.shm ?? req.data, { concurrency: 64 });
      await bus.flush();
    },
    async request(subject, size) {
      const rep = await bus.request(subject, await payload(size), { timeoutMs: 30_000 });
      if (rep.data[0] !== 0x5a && rep.data.length > 8 && rep.data[8] !== 0x5a) throw new Error('bad reply');
      await rep.shm?.release();
    },
    async close() {
      await bus.close();
      await shm?.close();
    },
  };
}

async function openNats(name: string, url: string): Promise<LargeTransport> {
  const nc: NatsConnection = await natsConnect({ servers: url, name });
  return {
    async publish(subject, size) {
      const b = Buffer.allocUnsafe(size);
      write(b);
      nc.publish(subject, b);
    },
    flush: () => nc.flush(),
    async subscribe(subject, onMessage) {
      nc.subscribe(subject, { callback: (err, m) => !err && onMessage(sentAt(m.data)) });
      await nc.flush();
    },
    async serve(subject) {
      nc.subscribe(subject, { callback: (err, m) => !err && m.respond(m.data) });
      await nc.flush();
    },
    async request(subject, size) {
      const b = Buffer.allocUnsafe(size);
      write(b);
      const rep = await nc.request(subject, b, { timeout: 30_000 });
      if (rep.data.length !== size) throw new Error('bad reply');
    },
    close: () => nc.close(),
  };
}
