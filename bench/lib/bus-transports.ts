import { connect as natsConnect, type NatsConnection } from 'nats';
import { BusClient } from '../../src/bus/index.js';
import { QueueFullError } from '../../src/errors.js';

/**
 * The two systems of the bus benchmark behind one small interface, so every scenario runs the same
 * code against the Lars bus and against NATS (the anchor): same callbacks, same flow control
 * (a PING/PONG flush after each batch of publishes), same payloads.
 */
export interface BenchTransport {
  publish(subject: string, data: Uint8Array): void;
  /** Round trip to the server: everything published before has been processed. */
  flush(): Promise<void>;
  subscribe(subject: string, onMessage: (data: Uint8Array) => void): Promise<void>;
  serve(subject: string, handler: (data: Uint8Array) => Uint8Array): Promise<void>;
  request(subject: string, data: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

export type SystemName = 'nats' | 'bus';

export const NATS_URL = process.env.LARS_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';

export async function openTransport(
  system: SystemName,
  name: string,
  socket: string,
): Promise<BenchTransport> {
  return system === 'nats' ? openNats(name) : openBus(name, socket);
}

async function openNats(name: string): Promise<BenchTransport> {
  const servers = NATS_URL.replace(/^nats:\/\//, '');
  const nc: NatsConnection = await natsConnect({ servers, name, noEcho: false });
  return {
    publish: (subject, data) => nc.publish(subject, data),
    flush: () => nc.flush(),
    async subscribe(subject, onMessage) {
      nc.subscribe(subject, { callback: (err, m) => !err && onMessage(m.data) });
      await nc.flush();
    },
    async serve(subject, handler) {
      nc.subscribe(subject, { callback: (err, m) => !err && m.respond(handler(m.data)) });
      await nc.flush();
    },
    request: async (subject, data) => (await nc.request(subject, data, { timeout: 10_000 })).data,
    close: () => nc.close(),
  };
}

async function openBus(name: string, socket: string): Promise<BenchTransport> {
  const bus = await BusClient.connect({ name, socket, maxOutboundBytes: 64 << 20 });
  return {
    publish(subject, data) {
      try {
        bus.publish(subject, data);
      } catch (err) {
        // Never reached with the bench's batch sizes; a bench must not silently lose messages.
        if (err instanceof QueueFullError)
          throw new Error(`bench publisher outran its buffer: ${err.message}`);
        throw err;
      }
    },
    flush: () => bus.flush(),
    async subscribe(subject, onMessage) {
      bus.subscribe(subject, { exact: true, callback: (m) => onMessage(m.data) });
      await bus.flush();
    },
    async serve(subject, handler) {
      bus.serve(subject, (req) => handler(req.data), { concurrency: 4096 });
      await bus.flush();
    },
    request: async (subject, data) => (await bus.request(subject, data, { timeoutMs: 10_000 })).data,
    close: () => bus.close(),
  };
}
