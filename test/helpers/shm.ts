import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { nativeStatus } from '../../src/native/index.js';
import { ShmDaemon, type ShmDaemonInfo, type ShmDaemonOptions } from '../../src/shm/daemon/index.js';
import { parseClasses, type ShmMode } from '../../src/shm/index.js';

/** Small pool for tests: 64 x 4 KiB, 8 x 64 KiB, 4 x 1 MiB. */
export const TEST_CLASSES = '4KiB:64,64KiB:8,1MiB:4';

/**
 * The modes tests run in: file mode always; addon mode when the addon loads, and under CI=true
 * always (a missing addon then fails the test instead of skipping addon mode).
 */
export function shmModes(): ShmMode[] {
  return nativeStatus().loaded || process.env.CI === 'true' ? ['addon', 'file'] : ['file'];
}

export function shortTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lars-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts a daemon in this process on a fresh socket; stopped when the test ends. */
export async function startDaemon(
  mode: ShmMode,
  extra: Partial<ShmDaemonOptions> = {},
): Promise<{ daemon: ShmDaemon; info: ShmDaemonInfo; socket: string }> {
  const socket = extra.socketPath ?? join(shortTempDir(), 'shm.sock');
  const daemon = new ShmDaemon({ socketPath: socket, classes: parseClasses(TEST_CLASSES), mode, ...extra });
  onTestFinished(() => daemon.destroy());
  const info = await daemon.start();
  return { daemon, info, socket };
}

const hooks = new URL('../fixtures/net-ts-hooks.mjs', import.meta.url).href;
/** `--import` it in a child process to run our TypeScript sources (fixtures/net-ts-hooks.mjs). */
export const tsBootstrap =
  'data:text/javascript,' +
  encodeURIComponent(`import { register } from 'node:module'; register(${JSON.stringify(hooks)});`);

export interface PeerReply {
  ok: boolean;
  result?: unknown;
  code?: string;
  message?: string;
}

/** A child process running test/fixtures/shm-peer.ts, driven over IPC. */
export class ShmPeerProcess {
  readonly notices: unknown[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, (r: PeerReply) => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m: { id?: number; event?: string; notice?: unknown } & PeerReply) => {
      if (m.event === 'notice') this.notices.push(m.notice);
      if (m.id !== undefined) {
        this.waiting.get(m.id)?.(m);
        this.waiting.delete(m.id);
      }
    });
    this.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Sends an op; resolves with the raw reply (ok or error code). */
  ask(op: string, args: Record<string, unknown> = {}): Promise<PeerReply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, resolve);
      this.proc.send({ id, op, ...args }, (err) => err && reject(err));
    });
  }

  /** Sends an op; resolves with its result, rejects with the peer's error code and message. */
  async call<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const r = await this.ask(op, args);
    if (!r.ok) throw Object.assign(new Error(`${op}: ${r.code}: ${r.message}`), { code: r.code });
    return r.result as T;
  }
}

/** Forks a peer process and connects it to the daemon at `socket` in `mode`. */
export async function startPeer(socket: string, mode: ShmMode): Promise<ShmPeerProcess> {
  const proc = fork(new URL('../fixtures/shm-peer.ts', import.meta.url).pathname, [], {
    execArgv: ['--import', tsBootstrap],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, LARS_SHM_MODE: '' },
  });
  onTestFinished(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  const peer = new ShmPeerProcess(proc);
  await new Promise<void>((resolve, reject) => {
    proc.once('message', () => resolve());
    proc.once('exit', (code) => reject(new Error(`peer exited with ${code} before it was up`)));
  });
  await peer.call('connect', { socket, mode });
  return peer;
}
