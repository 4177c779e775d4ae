import { BusClient } from '../../bus/index.js';
import type { CliIo } from '../options.js';

export interface BusBenchOptions {
  socket: string;
  durationMs: number;
  size: number;
  connectTimeoutMs: number;
}

/**
 * `lars bus bench`: a quick health-and-speed check of a running bus from one process (two clients):
 * pub/sub throughput (a publisher flushing every 1000 messages, a subscriber counting) and
 * request/reply lockstep (rate, p50, p99). For comparisons with NATS use `npm run bench:bus`, which
 * runs every party in its own process.
 */
export async function runBusBench(o: BusBenchOptions, io: CliIo): Promise<void> {
  const opts = { socket: o.socket, connectTimeoutMs: o.connectTimeoutMs, reconnect: false as const };
  const pub = await BusClient.connect({ name: `lars-bench-pub-${process.pid}`, ...opts });
  const sub = await BusClient.connect({ name: `lars-bench-sub-${process.pid}`, ...opts });
  try {
    const subject = `lars.bench.${process.pid}`;
    let received = 0;
    sub.subscribe(subject, { exact: true, callback: () => received++ });
    sub.serve(`${subject}.echo`, (req) => req.data);
    await sub.flush();
    const payload = Buffer.alloc(o.size, 0x61);
    let sent = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < o.durationMs) {
      for (let i = 0; i < 1000; i++) pub.publish(subject, payload);
      sent += 1000;
      await pub.flush();
    }
    await sub.flush();
    const pubMs = performance.now() - t0;
    io.out(
      `pub/sub ${o.size} B: ${Math.round((received / pubMs) * 1000).toLocaleString('en-US')} msg/s delivered (${received.toLocaleString('en-US')} of ${sent.toLocaleString('en-US')})`,
    );
    const lat: number[] = [];
    const t1 = performance.now();
    while (performance.now() - t1 < o.durationMs) {
      const s = performance.now();
      await pub.request(`${subject}.echo`, payload);
      lat.push(performance.now() - s);
    }
    const reqMs = performance.now() - t1;
    lat.sort((a, b) => a - b);
    const pct = (p: number): string =>
      ((lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? 0) * 1000).toFixed(0);
    io.out(
      `request/reply lockstep: ${Math.round((lat.length / reqMs) * 1000).toLocaleString('en-US')} req/s, p50 ${pct(50)} us, p99 ${pct(99)} us`,
    );
  } finally {
    await pub.close();
    await sub.close();
  }
}
