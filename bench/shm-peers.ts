/**
 * Child roles of `npm run bench:shm` (bench/shm.ts forks this file):
 *
 *   --role daemon    lars shm (ShmDaemon, default classes) plus a plain Unix "notice" server; reports
 *                    when a killed client's blocks were released and when its notice socket closed
 *                    (process.hrtime: CLOCK_MONOTONIC, comparable across processes), and its RSS.
 *   --role receiver  listens on the side channel; per message recv + view + check (shm) or read the
 *                    payload + check (socket), then acknowledges.
 *   --role sender    times hand-offs: alloc + mark + send + batch id over the side channel until the
 *                    ack (shm), or the payload over the side channel until the ack (socket).
 *   --role victim    allocates blocks, connects to the notice server, waits to be SIGKILLed.
 */
import { createConnection, createServer, type Socket } from 'node:net';
import { ShmDaemon } from '../src/shm/daemon/index.js';
import { ShmClient, type ShmBuffer } from '../src/shm/index.js';
import { loadNative } from '../src/native/index.js';
import { parseClasses, DEFAULT_CLASSES_SPEC } from '../src/shm/size-classes.js';
import { parseArgs } from './lib/args.js';
import { batchMessage, ChannelDecoder, MODE_ADDON, MODE_FILE, payloadHead } from './lib/shm-channel.js';
import { Histogram } from './lib/histogram.js';
import { fromParent, tellParent, type BenchMessage } from './lib/proc.js';

const args = parseArgs(process.argv.slice(2));
const now = (): bigint => process.hrtime.bigint();

async function clients(socket: string): Promise<(ShmClient | undefined)[]> {
  const addon = loadNative() ? await ShmClient.connect({ socket, mode: 'addon' }) : undefined;
  const file = await ShmClient.connect({ socket, mode: 'file' });
  return [addon, file];
}

/** Sequence number at both ends of the block: the receiver checks both. */
function mark(b: Buffer, seq: number): void {
  b.writeUInt32LE(seq, 0);
  b.writeUInt32LE(seq, b.length - 4);
}

function check(b: Buffer, seq: number): void {
  if (b.readUInt32LE(0) !== seq || b.readUInt32LE(b.length - 4) !== seq) {
    throw new Error(`hand-off ${seq}: wrong bytes (${b.readUInt32LE(0)}/${b.readUInt32LE(b.length - 4)})`);
  }
}

async function runDaemon(): Promise<void> {
  const socket = args.get('socket')!;
  const daemon = new ShmDaemon({
    socketPath: socket,
    classes: parseClasses(args.get('classes') ?? DEFAULT_CLASSES_SPEC),
  });
  const info = await daemon.start();
  daemon.on('release', (e: { pid: number; reason: string }) =>
    tellParent({ type: 'released', pid: e.pid, reason: e.reason, at: String(now()) }),
  );
  const notice = createServer((s) => {
    let pid = 0;
    s.on('data', (d: Buffer) => (pid = d.readUInt32LE(0)));
    s.on('error', () => {});
    s.on('close', () => tellParent({ type: 'closed', pid, at: String(now()) }));
  });
  await new Promise<void>((r) => notice.listen(args.get('notice')!, r));
  process.on('message', (m: BenchMessage) => {
    if (m.type === 'rss') {
      (globalThis as { gc?: () => void }).gc?.();
      const core = daemon.state!;
      const free = core.layout.classes.reduce((n, c) => n + core.blocks.freeCount(c.index), 0);
      const inBatches = core.holders().inBatches.blocks;
      tellParent({
        type: 'rss',
        rss: process.memoryUsage().rss,
        heap: process.memoryUsage().heapUsed,
        mem: process.memoryUsage(),
        free,
        inBatches,
        total: core.layout.blocks,
        connections: core.connections,
      });
    }
  });
  tellParent({ type: 'ready', mode: info.mode, generation: info.generation, pid: process.pid });
  await fromParent('stop');
  notice.close();
  await daemon.close();
}

async function runReceiver(): Promise<void> {
  const shm = await clients(args.get('socket')!);
  const server = createServer((s: Socket) => {
    const decoder = new ChannelDecoder();
    s.on('data', (chunk: Buffer) => {
      for (const m of decoder.push(chunk)) {
        if (m.kind === 'P') {
          check(m.payload, m.seq);
          ack(s, m.seq);
          continue;
        }
        const client = shm[m.mode]!;
        void client.recv(m.batchId).then(([buf]) => {
          check(buf!.bytes(), m.seq);
          void buf!.release();
          ack(s, m.seq);
        });
      }
    });
  });
  await new Promise<void>((r) => server.listen(args.get('channel')!, r));
  tellParent({ type: 'ready', pid: process.pid });
  await fromParent('stop');
  server.close();
  for (const c of shm) await c?.close();
  process.exit(0);
}

function ack(s: Socket, seq: number): void {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(seq, 0);
  s.write(b);
}

interface RunMessage extends BenchMessage {
  type: 'run';
  mode: 'addon' | 'file' | 'socket';
  size: number;
  budgetMs: number;
  minIters: number;
  to: number;
}

async function runSender(): Promise<void> {
  const shm = await clients(args.get('socket')!);
  const channel = createConnection(args.get('channel')!);
  await new Promise<void>((r) => channel.once('connect', r));
  channel.setNoDelay?.(true);
  let waiting: ((seq: number) => void) | undefined;
  let acks = Buffer.alloc(0);
  channel.on('data', (d: Buffer) => {
    acks = Buffer.concat([acks, d]);
    while (acks.length >= 4) {
      const seq = acks.readUInt32LE(0);
      acks = acks.subarray(4);
      waiting?.(seq);
    }
  });
  const acked = (): Promise<number> => new Promise((r) => (waiting = r));
  let seq = 0;
  tellParent({ type: 'ready', pid: process.pid, addon: shm[MODE_ADDON] !== undefined });
  for (;;) {
    const m = await fromParent<RunMessage | BenchMessage>(['run', 'stop']);
    if (m.type !== 'run') break;
    const r = m as RunMessage;
    const hist = new Histogram();
    const allocHist = new Histogram();
    const payload = r.mode === 'socket' ? Buffer.alloc(r.size, 0x5a) : undefined;
    const client = r.mode === 'addon' ? shm[MODE_ADDON] : shm[MODE_FILE];
    const start = performance.now();
    let count = 0;
    while (count < r.minIters || performance.now() - start < r.budgetMs) {
      seq += 1;
      // The hand-off starts when the payload is ready in the sender's memory: a Buffer for the
      // socket (made once, outside the timing), a block of the pool for shm. The block's
      // allocation is timed on its own (allocHist): like producing the payload, it comes before.
      let buf: ShmBuffer | undefined;
      if (!payload) {
        const a0 = now();
        buf = await client!.alloc(r.size);
        allocHist.record(Number(now() - a0));
      }
      const t0 = now();
      const got = acked();
      if (payload) {
        mark(payload, seq);
        channel.write(payloadHead(seq, r.size));
        channel.write(payload);
      } else {
        mark(buf!.bytes(), seq);
        const batchId = await client!.send([buf!], { to: r.to });
        channel.write(batchMessage(r.mode === 'addon' ? MODE_ADDON : MODE_FILE, seq, batchId));
      }
      if ((await got) !== seq) throw new Error(`ack out of order at ${seq}`);
      hist.record(Number(now() - t0));
      count += 1;
    }
    tellParent({
      type: 'result',
      count,
      elapsedMs: performance.now() - start,
      counts: hist.counts,
      max: hist.max,
      allocCounts: allocHist.counts,
    });
  }
  channel.destroy();
  for (const c of shm) await c?.close();
  process.exit(0);
}

async function runVictim(): Promise<void> {
  const client = await ShmClient.connect({
    socket: args.get('socket')!,
    mode: (args.get('mode') as 'addon' | 'file') ?? 'auto',
  });
  await client.allocMany(4096, 64);
  await client.allocMany(65536, 16);
  await client.allocMany(1 << 20, 4);
  const notice = createConnection(args.get('notice')!);
  await new Promise<void>((r) => notice.once('connect', r));
  const pid = Buffer.alloc(4);
  pid.writeUInt32LE(process.pid, 0);
  notice.write(pid);
  tellParent({ type: 'ready', pid: process.pid });
  setInterval(() => {}, 60_000); // until SIGKILL
}

switch (args.get('role')) {
  case 'daemon':
    await runDaemon();
    break;
  case 'receiver':
    await runReceiver();
    break;
  case 'sender':
    await runSender();
    break;
  case 'victim':
    await runVictim();
    break;
  default:
    process.stderr.write(`bench/shm-peers: unknown --role ${args.get('role')}\n`);
    process.exit(2);
}
