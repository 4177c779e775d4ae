import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { ShmClient } from '../src/shm/index.js';
import { shmModes, shortTempDir, startPeer } from './helpers/shm.js';
import { alive, CLI, CLI_BUILT, eventually, startStack } from './supervisor-harness.js';

// Real processes (each TypeScript peer takes seconds to start on a loaded 2-core machine): more time.
vi.setConfig({ testTimeout: 120_000 });

/**
 * `lars shm` and its sub-commands as a user runs them (compiled CLI: `npm run build` first), and
 * `lars up` running it as a supervised service.
 */
const suite = CLI_BUILT ? describe : describe.skip;

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('LARS_')) delete env[k];
  return { ...env, ...extra };
}

function lars(
  args: string[],
  env: Record<string, string> = {},
): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: cleanEnv(env),
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Starts `lars shm` as its own process; killed when the test ends. */
async function daemonProcess(socket: string, mode: string, classes = '4KiB:16,64KiB:4,1MiB:4') {
  const child = spawn(process.execPath, [CLI, 'shm', '--socket', socket, '--classes', classes], {
    env: cleanEnv({ LARS_SHM_MODE: mode, LARS_LOG_LEVEL: 'warn' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  onTestFinished(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM'); // a graceful stop unlinks the segment
    await eventually(
      () => (child.exitCode !== null || child.signalCode !== null ? true : undefined),
      5_000,
      'lars shm stopped',
    ).catch(() => child.kill('SIGKILL'));
  });
  await eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`lars shm exited ${child.exitCode}: ${err}`);
      return existsSync(socket) ? true : undefined;
    },
    15_000,
    'lars shm listening',
  );
  return child;
}

suite.each(shmModes())('lars shm CLI (%s mode)', (mode) => {
  it('stat, holders and reclaim against a running daemon', async () => {
    const socket = join(shortTempDir(), 's.sock');
    await daemonProcess(socket, mode);
    const holder = await startPeer(socket, mode);
    await holder.call('alloc', { size: 65536, count: 2 });
    await holder.call('alloc', { size: 100, count: 3 });

    const stat = lars(['shm', 'stat', '--socket', socket], { LARS_SHM_MODE: mode });
    expect(stat.err).toBe('');
    expect(stat.out).toMatch(new RegExp(`daemon in ${mode} mode`));
    expect(stat.out).toMatch(/4KiB\s+16\s+13\s+3\s+19%/);
    expect(stat.out).toMatch(/64KiB\s+4\s+2\s+2\s+50%/);
    expect(stat.out).toMatch(/1MiB\s+4\s+4\s+0\s+0%/);
    const json = JSON.parse(lars(['shm', 'stat', '--json', '--socket', socket]).out) as {
      classes: { free: number }[];
    };
    expect(json.classes.map((c) => c.free)).toEqual([13, 2, 4]);

    const holders = lars(['shm', 'holders', '--socket', socket]);
    expect(holders.out).toMatch(
      new RegExp(`^${holder.pid}\\s+node\\s+1\\s+5\\s+140 KiB\\s+4KiB x3, 64KiB x2`, 'm'),
    );

    const reclaim = lars(['shm', 'reclaim', String(holder.pid), '--socket', socket]);
    expect(reclaim.code).toBe(0);
    expect(reclaim.out.trim()).toBe(
      `reclaimed pid ${holder.pid}: 1 connection cut, 5 blocks (140 KiB) released, 0 batches addressed to it released`,
    );
    const after = JSON.parse(lars(['shm', 'stat', '--json', '--socket', socket]).out) as {
      classes: { free: number }[];
    };
    expect(after.classes.map((c) => c.free)).toEqual([16, 4, 4]);
    // This test process never connected: nothing to reclaim. (The reclaimed peer may reconnect:
    // its client redials, with nothing held.)
    expect(lars(['shm', 'reclaim', String(process.pid), '--socket', socket]).out.trim()).toBe(
      `pid ${process.pid} is not connected to lars shm: nothing to reclaim`,
    );
  });

  it('fails without a stack trace: daemon not running, bad PID, bad classes', () => {
    const dir = shortTempDir();
    const missing = lars(['shm', 'stat', '--socket', join(dir, 'none.sock')]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^lars: LARS_ERR_NOT_CONNECTED: cannot connect to lars shm at .*none\.sock/);
    expect(missing.err).not.toMatch(/\n\s+at /);
    const pid = lars(['shm', 'reclaim', 'abc', '--socket', join(dir, 'none.sock')]);
    expect(pid.err.trim()).toBe('lars: LARS_ERR_INVALID_ARGUMENT: PID: expected a process id, got "abc"');
    const classes = lars(['shm', '--socket', join(dir, 'x.sock'), '--classes', '100:4']);
    expect(classes.code).toBe(1);
    expect(classes.err.trim()).toMatch(
      /^lars: LARS_ERR_CONFIG: --classes 100:4: block size must be a multiple of 64 bytes/,
    );
    const big = lars(['shm', '--socket', join(dir, 'y.sock'), '--classes', '1GiB:1000000']);
    expect(big.err.trim()).toMatch(/^lars: LARS_ERR_SHM_POOL: the pool needs .* but \/dev\/shm has .* free/);
    const long = lars(['shm', '--socket', join(dir, 'x'.repeat(120))]);
    expect(long.err.trim()).toMatch(
      /^lars: LARS_ERR_SHM_POOL: socket path .* more than the 107 a Unix socket allows/,
    );
  });

  it('a daemon killed with SIGKILL restarts on the same socket and removes its old segment', async () => {
    const socket = join(shortTempDir(), 's.sock');
    const first = await daemonProcess(socket, mode);
    const c = await ShmClient.connect({ socket, mode, reconnect: { initialMs: 20, maxMs: 200, jitter: 0 } });
    onTestFinished(() => c.destroy());
    const oldGen = c.generation;
    const st = await c.stat();
    expect(st.generation).toBe(oldGen);
    const oldSegments = readdirSync('/dev/shm').filter((f) => `/${f}` === st.pool.name);
    expect(oldSegments).toHaveLength(1);
    first.kill('SIGKILL');
    await eventually(() => (alive(first.pid!) ? undefined : true), 5_000, 'daemon dead');
    expect(existsSync(socket)).toBe(true); // a killed daemon leaves its socket and segment
    await daemonProcess(socket, mode); // and the next one starts anyway
    await eventually(
      () => (c.state === 'ready' && c.generation !== oldGen ? true : undefined),
      10_000,
      'client back',
    );
    expect(c.generation).toBe(oldGen + 1);
    const left = readdirSync('/dev/shm').filter((f) => oldSegments.includes(f));
    expect(left).toEqual([]);
  });
});

suite('lars up runs lars shm', () => {
  it('starts it first, shows it in lars status, keeps it across SIGHUP and stops it last', async () => {
    const stack = await startStack({
      supervisor: { dns_workers: 1 },
      extra: '[shm]\nclasses = 4KiB:32,1MiB:2',
    });
    const s = await stack.status();
    const shm = s.services.find((x) => x.name === 'shm')!;
    const socket = join(stack.dataDir, 'shm', 'shm.sock');
    expect(shm.state).toBe('running');
    expect(shm.listen).toEqual([{ proto: 'unix', host: socket, port: 0 }]);
    const started = stack.logRecords('worker started').map((r) => r.service);
    expect(started[0]).toBe('shm');

    const c = await ShmClient.connect({ socket });
    onTestFinished(() => c.destroy());
    const buf = await c.alloc(1000);
    expect(buf.bytes().length).toBe(1000);
    expect((await c.stat()).classes.map((k) => k.total)).toEqual([32, 2]);

    const status = lars(['status', '--data-dir', stack.dataDir]);
    expect(status.out).toMatch(
      new RegExp(
        `^shm\\s+${shm.processes[0]!.pid}\\s+worker\\s+running\\s+0\\s+unix ${socket}, http \\d+\\s+ok$`,
        'm',
      ),
    );
    const json = JSON.parse(lars(['status', '--json', '--data-dir', stack.dataDir]).out) as {
      services: { name: string; processes: { health?: { detail?: { mode?: string } } }[] }[];
    };
    expect(json.services.find((x) => x.name === 'shm')!.processes[0]!.health!.detail!.mode).toMatch(
      /addon|file/,
    );

    // A reload replaces the other services but keeps lars shm and every buffer.
    const shmPid = shm.processes[0]!.pid;
    process.kill(stack.pid, 'SIGHUP');
    await eventually(
      async () => {
        const st = await stack.status();
        return st.master.state === 'running' && st.master.lastReload ? st : undefined;
      },
      30_000,
      'reload finished',
    );
    expect(await stack.workerPids('shm')).toEqual([shmPid]);
    expect(buf.bytes().length).toBe(1000);

    process.kill(stack.pid, 'SIGTERM');
    expect((await stack.exited).code).toBe(0);
    const exits = stack.logRecords('worker exited').map((r) => r.service);
    expect(exits.at(-1)).toBe('shm');
    expect(alive(shmPid)).toBe(false);
    expect(existsSync(socket)).toBe(false);
  });
});
