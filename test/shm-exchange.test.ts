import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { ShmClient, type ShmNotice } from '../src/shm/index.js';
import { waitFor, waitForEvent } from './helpers/latch.js';
import { pattern } from './helpers/shm-pattern.js';
import { shmModes, startDaemon, startPeer } from './helpers/shm.js';

// Real processes (each TypeScript peer takes seconds to start on a loaded 2-core machine): more time.
vi.setConfig({ testTimeout: 120_000 });

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function connect(socket: string, mode: 'addon' | 'file'): Promise<ShmClient> {
  const c = await ShmClient.connect({ socket, mode });
  onTestFinished(() => c.destroy());
  return c;
}

describe.each(shmModes())('shm exchange (%s mode)', (mode) => {
  it('serves on a 0600 socket in a 0700 directory and reports its mode', async () => {
    const { socket, info } = await startDaemon(mode);
    expect(info.mode).toBe(mode);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(socket)).mode & 0o777).toBe(0o700);
    const c = await connect(socket, mode);
    expect(c.pid).toBe(process.pid); // the kernel (addon) or the file proof (file) said so
    const st = await c.stat();
    expect(st).toMatchObject({
      mode,
      daemonMode: mode,
      generation: info.generation,
      held: { blocks: 0, bytes: 0 },
    });
    expect(st.classes.map((k) => [k.size, k.total, k.free])).toEqual([
      [4096, 64, 64],
      [65536, 8, 8],
      [1048576, 4, 4],
    ]);
  });

  it('two real processes exchange buffers, content checked byte for byte', async () => {
    const { socket } = await startDaemon(mode);
    const sender = await startPeer(socket, mode);
    const receiver = await startPeer(socket, mode);
    for (const size of [100, 4096, 65536, 1_000_000]) {
      const [buf] = await sender.call<number[]>('alloc', { size });
      const sent = await sender.call<string>('fill', { buf, seed: size });
      expect(sent).toBe(sha(pattern(size, size)));
      const batchId = await sender.call<number>('send', { bufs: [buf], to: receiver.pid });
      const got = await receiver.call<{ buf: number; size: number; sha: string }[]>('recv', { batchId });
      expect(got).toHaveLength(1);
      expect(got[0]!.size).toBe(size);
      expect(got[0]!.sha).toBe(sent);
      await receiver.call('release', { buf: got[0]!.buf });
    }
    const st = await sender.call<{ classes: { free: number; total: number }[] }>('stat');
    expect(st.classes.every((k) => k.free === k.total)).toBe(true);
  });

  it('this process and a child exchange in both directions; a second reference keeps the block', async () => {
    const { socket } = await startDaemon(mode);
    const me = await connect(socket, mode);
    const peer = await startPeer(socket, mode);
    const a = await me.alloc(5000);
    pattern(7, 5000).copy(a.bytes());
    const keep = await me.addref(a);
    const batch = await me.send([a], { to: peer.pid });
    expect(() => a.bytes()).toThrow(expect.objectContaining({ code: 'LARS_ERR_SHM_NOT_HELD' }));
    const [got] = await peer.call<{ sha: string; buf: number }[]>('recv', { batchId: batch });
    expect(got!.sha).toBe(sha(pattern(7, 5000)));
    // The peer writes; this process sees it through its own reference (file mode: read anew).
    await peer.call('fill', { buf: got!.buf, seed: 8 });
    const back = await peer.call<number>('send', { bufs: [got!.buf], to: process.pid });
    const [mine] = await me.recv(back);
    expect(sha(mine!.bytes())).toBe(sha(pattern(8, 5000)));
    if (mode === 'addon') expect(sha(keep.bytes())).toBe(sha(pattern(8, 5000)));
    await mine!.release();
    expect((await me.stat()).held.blocks).toBe(1);
    await keep.release();
    await keep.release(); // idempotent
    expect((await me.stat()).held).toEqual({ blocks: 0, bytes: 0 });
  });

  it('a receiver that dies before recv: the batch is released at its ttl and the sender told', async () => {
    const { socket, daemon } = await startDaemon(mode);
    const sender = await connect(socket, mode);
    // The addressee is a process that dies before it ever talks to lars shm: only the ttl can end it.
    const receiver = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    onTestFinished(() => {
      receiver.kill('SIGKILL');
    });
    const buf = await sender.alloc(4096);
    const notice = waitForEvent<[ShmNotice]>(sender, 'notice', 10_000);
    const t0 = Date.now();
    const batch = await sender.send([buf], { to: receiver.pid!, ttlMs: 300 });
    receiver.kill('SIGKILL');
    expect((await sender.stat()).classes[0]!.free).toBe(63);
    const [n] = await notice;
    expect(n).toEqual({ kind: 'batch-released', batchId: batch, to: receiver.pid, reason: 'ttl', blocks: 1 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(daemon.state!.counters.batchesExpired).toBe(1);
    expect((await sender.stat()).classes[0]!.free).toBe(64);
  });

  it('a connected receiver killed before recv: its batches are released at once, the sender told', async () => {
    const { socket } = await startDaemon(mode);
    const sender = await connect(socket, mode);
    const receiver = await startPeer(socket, mode);
    const bufs = await sender.allocMany(4096, 3);
    const batch = await sender.send(bufs, { to: receiver.pid, ttlMs: 600_000 });
    const notice = waitForEvent<[ShmNotice]>(sender, 'notice', 10_000);
    receiver.proc.kill('SIGKILL');
    const [n] = await notice;
    expect(n).toEqual({
      kind: 'batch-released',
      batchId: batch,
      to: receiver.pid,
      reason: 'addressee-gone',
      blocks: 3,
    });
    expect((await sender.stat()).classes[0]!.free).toBe(64);
  });

  it('a holder killed with SIGKILL: its blocks are free at once', async () => {
    const { socket, daemon } = await startDaemon(mode);
    const me = await connect(socket, mode);
    const holder = await startPeer(socket, mode);
    await holder.call('alloc', { size: 65536, count: 5 });
    await holder.call('alloc', { size: 4096, count: 10 });
    const before = await me.holders();
    expect(before.holders.find((h) => h.pid === holder.pid)).toMatchObject({
      blocks: 15,
      bytes: 5 * 65536 + 10 * 4096,
    });
    const released = waitForEvent<[{ pid: number; reason: string; blocks: number }]>(
      daemon,
      'release',
      10_000,
    );
    holder.proc.kill('SIGKILL');
    const [e] = await released;
    expect(e).toMatchObject({ pid: holder.pid, reason: 'disconnect', blocks: 15 });
    const st = await me.stat();
    expect(st.classes.map((k) => k.free)).toEqual([64, 8, 4]);
    expect(daemon.state!.counters.reclaimedBytes.disconnect).toBe(5 * 65536 + 10 * 4096);
    await waitFor(() => daemon.state!.procs.size === 1, 5_000, 'holder forgotten');
  });
});
