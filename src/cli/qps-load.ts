/**
 * `lars test qps`: the load generator (issue 17). Each worker thread loops get_host -> report in
 * lockstep against one agent port, like the original `qps` tool, and costs as little per call as a
 * C client: a connected socket (no address lookup per send), requests encoded once and reused
 * (lockstep: a reply proves the request left), replies read in place, no promise or timer per
 * call. Workers warm up (route fetched, code compiled) before the clock starts, so the first second
 * runs at full rate. Rates and latencies go through shared memory; the main thread prints each
 * second's rate with its p50/p99, then the totals. With the native addon a worker reads replies the
 * way the agent reads requests (batched, src/net/udp-batch-receiver.ts).
 */
import { createSocket, type Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { Worker } from 'node:worker_threads';
import { nativeSockets, nativeUdp } from '../native/native-addon.js';
import { BatchReceiver } from '../net/udp-batch-receiver.js';
import { ipToNumber } from '../protocol/ip.js';
import { agentPortIndex } from '../protocol/agent-port.js';
import { HEADER_LEN } from '../protocol/frame.js';
import { MsgId } from '../protocol/msg-id.js';
import { RetCode } from '../protocol/retcode.js';

export interface QpsOptions {
  threads: number;
  durationS: number;
  agent: string;
  ports: readonly number[];
  timeoutMs: number;
  /** Thread i asks for route (modidBase + i, cmdid). */
  modidBase: number;
  cmdid: number;
  /** Called with each second's figures as they come. */
  onSecond?: (s: QpsSecond) => void;
}

export interface QpsSecond {
  second: number;
  calls: number;
  p50Us: number;
  p99Us: number;
}

export interface QpsSummary {
  threads: number;
  seconds: number;
  calls: number;
  rate: number;
  p50Us: number;
  p99Us: number;
  timeouts: number;
  /** Answers other than SUCC (the route unknown or every host overloaded). */
  noHost: number;
  perSecond: number[];
}

// ---- latency histogram in shared memory: exact below 128 µs, then 32 buckets per power of two ----
const SUB = 32;
const LINEAR = 128;
const BUCKETS = LINEAR + 26 * SUB;

export function bucketOf(us: number): number {
  if (us < LINEAR) return us < 0 ? 0 : Math.floor(us);
  const exp = Math.floor(Math.log2(us));
  const i = LINEAR + (exp - 7) * SUB + Math.floor((us / 2 ** exp - 1) * SUB);
  return i < BUCKETS ? i : BUCKETS - 1;
}

/** The lower bound (µs) of bucket i. */
export function bucketLow(i: number): number {
  if (i < LINEAR) return i;
  const exp = 7 + Math.floor((i - LINEAR) / SUB);
  return Math.round(2 ** exp * (1 + ((i - LINEAR) % SUB) / SUB));
}

export function percentileOf(hist: ArrayLike<number>, q: number): number {
  let total = 0;
  for (let i = 0; i < hist.length; i++) total += hist[i]!;
  if (total === 0) return 0;
  const want = Math.ceil(total * q);
  let acc = 0;
  for (let i = 0; i < hist.length; i++) {
    acc += hist[i]!;
    if (acc >= want) return bucketLow(i);
  }
  return bucketLow(hist.length - 1);
}

/** Shared counters of one worker: [calls, timeouts, noHost, phase] then the histogram. */
const CALLS = 0;
const TIMEOUTS = 1;
const NOHOST = 2;
const HEAD = 4;

export interface QpsWorkerData {
  larsQpsWorker: true;
  shared: SharedArrayBuffer;
  agent: string;
  port: number;
  modid: number;
  cmdid: number;
  timeoutMs: number;
}

/** Runs the load and resolves with the totals. */
export async function runQps(o: QpsOptions): Promise<QpsSummary> {
  const workers: Worker[] = [];
  const counters: Int32Array[] = [];
  const ready: Array<Promise<void>> = [];
  for (let i = 0; i < o.threads; i++) {
    const shared = new SharedArrayBuffer((HEAD + BUCKETS) * 4);
    counters.push(new Int32Array(shared));
    const modid = o.modidBase + i;
    const data: QpsWorkerData = {
      larsQpsWorker: true,
      shared,
      agent: o.agent,
      port: o.ports[agentPortIndex(modid, o.cmdid, o.ports.length)]!,
      modid,
      cmdid: o.cmdid,
      timeoutMs: o.timeoutMs,
    };
    const w = new Worker(new URL('./qps-worker.js', import.meta.url), { workerData: data });
    workers.push(w);
    ready.push(
      new Promise((resolve, reject) => {
        w.once('message', () => resolve());
        w.once('error', reject);
        w.once('exit', (code) =>
          reject(new Error(`qps thread ${i + 1} exited (code ${code}) before it was ready`)),
        );
      }),
    );
  }
  try {
    await Promise.all(ready);
  } catch (err) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw err;
  }
  // Warm-up counts are not part of the run.
  const snapshot = (): Int32Array => {
    const sum = new Int32Array(HEAD + BUCKETS);
    for (const c of counters) for (let k = 0; k < sum.length; k++) sum[k]! += Atomics.load(c, k);
    return sum;
  };
  const start = snapshot();
  for (const w of workers) w.postMessage('go');
  const t0 = performance.now();
  let prev = start;
  let elapsedMs = 0;
  const perSecond: number[] = [];
  for (let s = 1; s <= o.durationS; s++) {
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + s * 1000 - performance.now())));
    const now = snapshot();
    const hist = new Int32Array(BUCKETS);
    for (let k = 0; k < BUCKETS; k++) hist[k] = now[HEAD + k]! - prev[HEAD + k]!;
    const calls = now[CALLS]! - prev[CALLS]!;
    perSecond.push(calls);
    o.onSecond?.({ second: s, calls, p50Us: percentileOf(hist, 0.5), p99Us: percentileOf(hist, 0.99) });
    prev = now;
    if (s === o.durationS) elapsedMs = performance.now() - t0;
  }
  // The totals are the seconds' sum: the last second's snapshot ends the run.
  const elapsed = elapsedMs / 1000;
  const end = prev;
  await Promise.all(workers.map((w) => w.terminate()));
  const hist = new Int32Array(BUCKETS);
  for (let k = 0; k < BUCKETS; k++) hist[k] = end[HEAD + k]! - start[HEAD + k]!;
  const calls = end[CALLS]! - start[CALLS]!;
  return {
    threads: o.threads,
    seconds: Math.round(elapsed * 1000) / 1000,
    calls,
    rate: Math.round(calls / elapsed),
    p50Us: percentileOf(hist, 0.5),
    p99Us: percentileOf(hist, 0.99),
    timeouts: end[TIMEOUTS]! - start[TIMEOUTS]!,
    noHost: end[NOHOST]! - start[NOHOST]!,
    perSecond,
  };
}

// ---------------------------------------------------------------------------------------------
// Worker side.

/** Distinct pre-encoded GetHostRequests (seq 1..N, cycling): a buffer is reused N calls later. */
const SEQS = 64;
const WARMUP_CALLS = 2_000;
const WARMUP_MAX_MS = 3_000;

function varint(out: number[], v: number): void {
  // int32 fields: negatives as 10-byte two's complement (protobuf's int32 encoding).
  if (v < 0) {
    let big = BigInt.asUintN(64, BigInt(v));
    while (big >= 0x80n) {
      out.push(Number(big & 0x7fn) | 0x80);
      big >>= 7n;
    }
    out.push(Number(big));
    return;
  }
  let u = v >>> 0;
  while (u >= 0x80) {
    out.push((u & 0x7f) | 0x80);
    u >>>= 7;
  }
  out.push(u);
}

/** Appends a varint field (proto3 leaves zero fields out: the caller checks). */
function field(out: number[], tag: number, v: number): void {
  out.push(tag);
  varint(out, v);
}

function frame(msgid: number, body: number[]): Buffer {
  const b = Buffer.alloc(HEADER_LEN + body.length);
  b.writeInt32LE(msgid, 0);
  b.writeInt32LE(body.length, 4);
  Buffer.from(body).copy(b, HEADER_LEN);
  return b;
}

/** A GetHostRequest frame (proto3: zero fields left out). */
export function encodeGetHostRequest(seq: number, modid: number, cmdid: number): Buffer {
  const body: number[] = [];
  if (seq) field(body, 0x08, seq);
  if (modid) field(body, 0x10, modid);
  if (cmdid) field(body, 0x18, cmdid);
  return frame(MsgId.GetHostRequest, body);
}

/** A ReportRequest frame reporting success for ip:port (ip in wire int32 form). */
export function encodeReportRequest(modid: number, cmdid: number, ip: number, port: number): Buffer {
  const host: number[] = [];
  if (ip) field(host, 0x08, ip);
  if (port) field(host, 0x10, port);
  const body: number[] = [];
  if (modid) field(body, 0x08, modid);
  if (cmdid) field(body, 0x10, cmdid);
  body.push(0x1a, host.length, ...host);
  return frame(MsgId.ReportRequest, body);
}

/** What decodeReply found (module-level: one reply is read at a time). */
const reply = { seq: 0, retcode: 0, ip: 0, port: 0 };

/** Reads a GetHostResponse in place into `reply`; false when it is not one. */
export function decodeReply(b: Uint8Array): boolean {
  const len = b.length;
  if (len < HEADER_LEN || b[0] !== MsgId.GetHostResponse || b[1] || b[2] || b[3]) return false;
  reply.seq = reply.retcode = reply.ip = reply.port = 0;
  let pos = HEADER_LEN;
  const read = (end: number): number => {
    let r = 0;
    for (let shift = 0; pos < end && shift < 70; shift += 7) {
      const byte = b[pos++]!;
      if (shift < 32) r |= (byte & 0x7f) << shift;
      if (byte < 0x80) return r;
    }
    return r;
  };
  while (pos < len) {
    const tag = b[pos++]!;
    if (tag === 0x08) reply.seq = read(len) >>> 0;
    else if (tag === 0x20) reply.retcode = read(len);
    else if (tag === 0x2a) {
      const n = read(len);
      const end = pos + n;
      while (pos < end) {
        const t = b[pos++]!;
        const v = read(end);
        if (t === 0x08) reply.ip = v;
        else if (t === 0x10) reply.port = v;
      }
    } else if ((tag & 7) === 0) read(len);
    else return false;
  }
  return true;
}

/** Body of one worker thread. */
export function qpsWorker(d: QpsWorkerData, post: (m: string) => void, onGo: (f: () => void) => void): void {
  const shared = new Int32Array(d.shared);
  const requests = Array.from({ length: SEQS }, (_, i) => encodeGetHostRequest(i + 1, d.modid, d.cmdid));
  const reports = new Map<number, Buffer>();
  const link = openLink(d.agent, d.port, (b) => onReply(b));
  let seq = 0;
  let sentAt = 0;
  let warm = 0;
  let warming = true;
  const warmUntil = performance.now() + WARMUP_MAX_MS;

  const sendNext = (): void => {
    seq = seq === SEQS ? 1 : seq + 1;
    sentAt = performance.now();
    link.send(requests[seq - 1]!);
  };
  const onReply = (b: Uint8Array): void => {
    if (!decodeReply(b) || reply.seq !== seq) return; // late or foreign: ignored
    const us = (performance.now() - sentAt) * 1000;
    if (reply.retcode === RetCode.SUCC) {
      const key = (reply.ip >>> 0) * 65536 + reply.port;
      let r = reports.get(key);
      if (r === undefined)
        reports.set(key, (r = encodeReportRequest(d.modid, d.cmdid, reply.ip, reply.port)));
      link.send(r);
    }
    if (warming) {
      // Until the route is fetched (NOEXIST at first) and the code is compiled.
      if (reply.retcode === RetCode.SUCC) warm++;
      if (warm >= WARMUP_CALLS || performance.now() > warmUntil) {
        warming = false;
        sentAt = 0;
        post('ready');
        return; // paused until 'go'
      }
    } else {
      if (reply.retcode !== RetCode.SUCC) Atomics.add(shared, NOHOST, 1);
      Atomics.add(shared, HEAD + bucketOf(us), 1);
      Atomics.add(shared, CALLS, 1);
    }
    sendNext();
  };
  // A lost datagram would stall the lockstep: past the timeout, count it and ask again.
  const watchdog = setInterval(
    () => {
      if (sentAt !== 0 && performance.now() - sentAt > d.timeoutMs) {
        if (!warming) Atomics.add(shared, TIMEOUTS, 1);
        sendNext();
      }
    },
    Math.max(10, Math.min(d.timeoutMs / 2, 250)),
  );
  watchdog.unref();
  onGo(() => sendNext());
  link.ready(() => sendNext());
}

interface Link {
  send(frame: Buffer): void;
  ready(f: () => void): void;
}

/**
 * The worker's socket to the agent. With the native addon: batched receive (recvmmsg, no object per
 * reply; issue 17), the same as the agent's, and sendto; otherwise a connected node:dgram socket.
 * Only datagrams from the agent's address reach `onReply`.
 */
function openLink(agent: string, port: number, onReply: (b: Uint8Array) => void): Link {
  const udp = nativeUdp();
  const sockets = nativeSockets();
  if (udp && sockets && isIPv4(agent)) {
    const fd = sockets.bindUdp('0.0.0.0', 0);
    const ip = ipToNumber(agent);
    const receiver = new BatchReceiver(
      udp,
      fd,
      2048,
      (view, len, from) => {
        if (len >= 0 && from.ip === ip && from.port === port) onReply(view);
      },
      () => undefined,
    );
    receiver.start();
    return {
      send: (frame) => void receiver.sendTo(frame, 0, frame.length, ip, port),
      ready: (f) => f(),
    };
  }
  const socket: Socket = createSocket('udp4');
  socket.on('message', (b: Buffer) => onReply(b));
  return {
    send: (frame) => socket.send(frame),
    ready: (f) => socket.connect(port, agent, f),
  };
}
