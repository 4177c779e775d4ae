import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { BusClient, type BusClientOptions } from '../../src/bus/index.js';
import {
  BusService,
  busSettings,
  type BusServiceOptions,
  type BusSettings,
} from '../../src/bus/server/index.js';
import { Control } from '../../src/bus/wire/control.js';
import { writeU32 } from '../../src/bus/wire/data-frame.js';
import { BusMsgId } from '../../src/bus/wire/msg-id.js';
import { FrameDecoder, type Frame } from '../../src/protocol/index.js';
import { Latch, waitFor } from './latch.js';

/**
 * Bus test helpers: a daemon on a fresh short temp socket path (sun_path is 107 bytes), clients,
 * raw sockets for bad input, and child processes running a client (to SIGKILL/SIGSTOP). Everything
 * is closed when the test finishes.
 */
export interface TestBus {
  svc: BusService;
  socket: string;
  httpPort: number | undefined;
  dir: string;
}

export async function startBus(
  settings: Partial<Omit<BusSettings, 'maxFrame'>> = {},
  extra: Partial<BusServiceOptions> = {},
): Promise<TestBus> {
  const dir = mkdtempSync('/tmp/lars-');
  const svc = new BusService({
    socketPath: join(dir, 'bus.sock'),
    settings: busSettings(settings),
    ...extra,
  });
  onTestFinished(async () => {
    await svc.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const { socket, httpPort } = await svc.start();
  return { svc, socket, httpPort, dir };
}

export async function client(
  bus: { socket: string },
  name: string,
  opts: Partial<BusClientOptions> = {},
): Promise<BusClient> {
  const c = await BusClient.connect({ name, socket: bus.socket, ...opts });
  onTestFinished(() => c.destroy());
  return c;
}

/** A raw connection: writes arbitrary bytes, decodes what the bus sends back. */
export class RawBus {
  readonly frames: Frame[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder({ maxBodyLen: 64 << 20 });
  private readonly closedLatch = new Latch(1, 'raw connection closed');

  private constructor(readonly socket: Socket) {
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk))
        this.frames.push({ msgid: f.msgid, body: Buffer.from(f.body) });
    });
    socket.on('close', () => {
      this.closed = true;
      this.closedLatch.countDown();
    });
  }

  static async open(path: string): Promise<RawBus> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const raw = new RawBus(socket);
    onTestFinished(() => void socket.destroy());
    return raw;
  }

  send(msgid: number, body: Uint8Array): void {
    this.socket.write(frame(msgid, body));
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  hello(name: string): void {
    this.send(BusMsgId.Hello, Control.hello.encode({ name }));
  }

  /** Resolves with the first frame of `msgid` received (after `from` frames), waiting for it. */
  async next(msgid: number, from = 0): Promise<Frame> {
    let found: Frame | undefined;
    await waitFor(
      () => (found = this.frames.slice(from).find((f) => f.msgid === msgid)) !== undefined,
      5_000,
      `frame 0x${msgid.toString(16)}`,
    );
    return found as Frame;
  }

  /** Sends PING and waits for its PONG: everything sent before was processed. */
  async roundTrip(id = 999): Promise<void> {
    let seen = this.frames.length;
    this.send(BusMsgId.Ping, Control.ping.encode({ req_id: id }));
    await waitFor(
      () => {
        for (; seen < this.frames.length; seen++) {
          const f = this.frames[seen] as Frame;
          if (f.msgid === BusMsgId.Pong && Control.pong.decode(f.body).req_id === id) return true;
        }
        return this.closed;
      },
      5_000,
      'pong',
    );
  }

  errors(): { op: number; id: number; code: string; message: string }[] {
    return this.frames
      .filter((f) => f.msgid === BusMsgId.Err)
      .map((f) => {
        const e = Control.err.decode(f.body);
        return { op: e.op, id: e.id, code: e.code, message: e.message };
      });
  }

  waitClosed(ms = 5_000): Promise<void> {
    return this.closedLatch.wait(ms);
  }
}

export function frame(msgid: number, body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(8 + body.length);
  writeU32(out, 0, msgid);
  writeU32(out, 4, body.length);
  out.set(body, 8);
  return out;
}

/**
 * A child process running a BusClient from the TypeScript sources (test/fixtures/bus-proc.mjs),
 * registered as `name`; it serves `serve` topics (echo after `delayMs`) and reports 'ready'.
 */
export async function busChild(
  socket: string,
  name: string,
  opts: {
    serve?: string;
    delayMs?: number;
    heartbeatMs?: number;
    shmSocket?: string;
    hold?: number;
    subscribe?: string;
  } = {},
): Promise<ChildProcess> {
  const child = fork(
    new URL('../fixtures/bus-proc.mjs', import.meta.url),
    [JSON.stringify({ socket, name, ...opts })],
    {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
  });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`bus child ${name} exited (${code}) before it was ready`)));
  });
  return child;
}
