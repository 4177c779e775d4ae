import { describe, expect, it, onTestFinished, vi } from 'vitest';
import type { BusMsg } from '../src/bus/index.js';
import { ErrorCode } from '../src/errors.js';
import { parseClasses, ShmClient, type ShmBuffer } from '../src/shm/index.js';
import { busChild, client, startBus } from './helpers/bus.js';
import { Latch, waitForAsync } from './helpers/latch.js';
import { pattern } from './helpers/shm-pattern.js';
import { shmModes, startDaemon } from './helpers/shm.js';

vi.setConfig({ testTimeout: 60_000 });

const MiB = 1024 * 1024;
const CLASSES = '4KiB:64,2MiB:12,16MiB:3';

async function setup(mode: 'addon' | 'file' = 'addon') {
  const shmd = await startDaemon(mode, { classes: parseClasses(CLASSES) });
  const bus = await startBus({}, { shmSocket: shmd.socket });
  const shm = async (): Promise<ShmClient> => {
    const c = await ShmClient.connect({ socket: shmd.socket, mode });
    onTestFinished(() => c.destroy());
    return c;
  };
  return { shmd, bus, shm };
}

/** Every block of the pool is free again. */
async function allFree(c: ShmClient): Promise<void> {
  await waitForAsync(
    async () => (await c.stat()).classes.every((k) => k.free === k.total),
    5_000,
    'pool free',
  );
}

describe.each(shmModes())('bus shared-memory payloads (%s mode)', (mode) => {
  it('publish hands the same memory to every subscriber, with no payload through a socket', async () => {
    const { bus, shm } = await setup(mode);
    const [s0, s1, s2] = [await shm(), await shm(), await shm()];
    const pub = await client(bus, 'pub', { shm: s0 });
    const subs = [await client(bus, 'a', { shm: s1 }), await client(bus, 'b', { shm: s2 })];
    const got: BusMsg[] = [];
    const latch = new Latch(2, 'two deliveries');
    for (const c of subs)
      c.subscribe('video', {
        callback: (m) => {
          got.push(m);
          latch.countDown();
        },
      });
    await Promise.all(subs.map((c) => c.flush()));
    const buf = await s0.alloc(MiB + 7);
    pattern(42, buf.size).copy(buf.bytes());
    const bytesIn = bus.svc.engine.stats.bytesIn;
    pub.publish('video.cam1', buf, { headers: { seq: '1' } });
    expect(buf.held).toBe(false); // handed on: no longer ours
    expect(() => buf.bytes()).toThrow(expect.objectContaining({ code: ErrorCode.SHM_NOT_HELD }));
    await latch.wait();
    for (const m of got) {
      expect(m.subject).toBe('video.cam1');
      expect(m.from).toBe('pub');
      expect(m.headers).toEqual({ seq: '1' });
      expect(m.shm?.handle.block).toBe(buf.handle.block);
      expect(Buffer.compare(Buffer.from(m.data), pattern(42, MiB + 7))).toBe(0);
    }
    if (mode === 'addon') {
      // The same memory: a write through one receiver's view shows in the other's.
      got[0]!.shm!.bytes()[0] = 0xee;
      expect(got[1]!.shm!.bytes()[0]).toBe(0xee);
    }
    // Frames only: the bus read far less than the payload.
    expect(bus.svc.engine.stats.bytesIn - bytesIn).toBeLessThan(1024);
    expect((await s0.stat()).classes.find((k) => k.size === 2 * MiB)!.used).toBe(1);
    await Promise.all(got.map((m) => m.shm!.release()));
    await allFree(s0);
  });

  it('keep: the sender keeps its reference; a message nobody receives is released', async () => {
    const { bus, shm } = await setup(mode);
    const s0 = await shm();
    const s1 = await shm();
    const pub = await client(bus, 'pub', { shm: s0 });
    const sub = await client(bus, 'sub', { shm: s1 });
    const got: BusMsg[] = [];
    sub.subscribe('x', { callback: (m) => got.push(m) });
    await sub.flush();
    const buf = await s0.alloc(3 * MiB);
    pub.publish('x', buf, { keep: true });
    expect(buf.held).toBe(true);
    await waitForAsync(async () => got.length === 1, 5_000, 'delivery');
    await got[0]!.shm!.release();
    expect((await s0.stat()).held.blocks).toBe(1);
    // Nobody listens on y: the reference the bus was given goes back to the pool.
    pub.publish('y', buf);
    await pub.flush();
    await allFree(s0);
    expect(bus.svc.engine.stats.dropped.no_interest).toBe(1);
  });

  it('request and reply by reference; inline payloads over max_payload are refused', async () => {
    const { bus, shm } = await setup(mode);
    const s0 = await shm();
    const s1 = await shm();
    const caller = await client(bus, 'caller', { shm: s0 });
    const server = await client(bus, 'server', { shm: s1 });
    server.serve('svc.invert', (req) => {
      const b = req.shm as ShmBuffer;
      const v = b.bytes();
      for (let i = 0; i < v.length; i += 4096) v[i] = 255 - (v[i] as number);
      return b; // the same buffer goes back by reference
    });
    await server.flush();
    const buf = await s0.alloc(16 * MiB);
    const src = pattern(7, 16 * MiB);
    src.copy(buf.bytes());
    const rep = await caller.request('svc.invert', buf, { timeoutMs: 10_000 });
    expect(rep.shm?.handle.block).toBe(buf.handle.block);
    const out = Buffer.from(rep.data);
    expect(out[0]).toBe(255 - (src[0] as number));
    expect(out[1]).toBe(src[1]);
    await rep.shm!.release();
    await allFree(s0);
    await expect(caller.request('svc.invert', Buffer.alloc(2 * MiB))).rejects.toMatchObject({
      code: ErrorCode.MESSAGE_TOO_LARGE,
    });
    expect(() => caller.publish('svc.invert', Buffer.alloc(MiB + 1))).toThrow(
      expect.objectContaining({ code: ErrorCode.MESSAGE_TOO_LARGE }),
    );
  });
  it('a refused request and a late reply give their references back to the pool', async () => {
    const { bus, shm } = await setup(mode);
    const s0 = await shm();
    const s1 = await shm();
    const caller = await client(bus, 'caller', { shm: s0 });
    const server = await client(bus, 'server', { shm: s1 });
    // No responders: the caller counted its buffer as sent, so the bus must release it.
    const lost = await s0.alloc(3 * MiB);
    await expect(caller.request('nobody.here', lost, { timeoutMs: 5_000 })).rejects.toMatchObject({
      code: ErrorCode.BUS_NO_RESPONDERS,
    });
    await allFree(s0);
    // A reply that comes after the caller gave up: dropped by the bus, and released.
    let callerGaveUp!: () => void;
    const gaveUp = new Promise<void>((r) => (callerGaveUp = r));
    server.serve('svc.slow', async () => {
      await gaveUp;
      return s1.alloc(3 * MiB);
    });
    await server.flush();
    await expect(caller.request('svc.slow', Buffer.from('hi'), { timeoutMs: 200 })).rejects.toMatchObject({
      code: ErrorCode.TIMEOUT,
    });
    const late = () => bus.svc.engine.stats.lateReplies + caller.lateReplies;
    const before = late();
    callerGaveUp();
    // Dropped by the bus (its own deadline passed) or by the caller's client: released either way.
    await waitForAsync(async () => late() > before, 10_000, 'late reply seen');
    await allFree(s1);
    await allFree(s0);
  });
});

describe('bus shared memory and dying or hung receivers', () => {
  it('a receiver killed before taking its messages: the bus cancels their batches at once', async () => {
    const { bus, shm } = await setup('addon');
    const s0 = await shm();
    const child = await busChild(bus.socket, 'victim', {
      shmSocket: bus.svc.engine.relay.socketPath,
      subscribe: 'f',
    });
    child.kill('SIGSTOP');
    const pub = await client(bus, 'pub', { shm: s0 });
    for (let i = 0; i < 3; i++) pub.publish('f', await s0.alloc(5000));
    await pub.flush();
    await waitForAsync(
      async () => (await s0.stat()).classes.some((k) => k.used === 3),
      5_000,
      'batches made',
    );
    child.kill('SIGKILL');
    // Well before the batches' ttl (30 s): released when the bus saw the connection close.
    await allFree(s0);
  });

  it('a proc the bus declares killme (hung, still connected) has its shared memory reclaimed', async () => {
    const shmd = await startDaemon('addon', { classes: parseClasses(CLASSES) });
    const bus = await startBus({ offlineMs: 300, killMs: 900, heartbeatMs: 100 }, { shmSocket: shmd.socket });
    const watcher = await ShmClient.connect({ socket: shmd.socket });
    onTestFinished(() => watcher.destroy());
    const child = await busChild(bus.socket, 'hung', { shmSocket: shmd.socket, hold: 2, heartbeatMs: 100 });
    const held = async (): Promise<number> =>
      (await watcher.holders()).holders.find((h) => h.pid === child.pid)?.blocks ?? 0;
    expect(await held()).toBe(2);
    child.kill('SIGSTOP');
    await waitForAsync(async () => (await held()) === 0, 10_000, 'holdings reclaimed');
    await allFree(watcher);
    expect(bus.svc.engine.procs.get('hung')).toBeUndefined();
  });
});
