import { randomBytes } from 'node:crypto';
import { chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { encodeFrame, FrameDecoder } from '../src/protocol/index.js';
import { ShmDaemon } from '../src/shm/daemon/index.js';
import { ShmClient } from '../src/shm/index.js';
import { parseClasses } from '../src/shm/size-classes.js';
import {
  decodeHandlesPayload,
  decodeJsonPayload,
  decodeReply,
  encodeRequest,
} from '../src/shm/wire-codec.js';
import { ShmMsg, ShmStatus } from '../src/shm/wire-ids.js';
import { waitFor, waitForEvent } from './helpers/latch.js';
import { shmModes, shortTempDir, startDaemon, startPeer, TEST_CLASSES } from './helpers/shm.js';

// Real processes (each TypeScript peer takes seconds to start on a loaded 2-core machine): more time.
vi.setConfig({ testTimeout: 120_000 });

async function connect(socket: string, mode: 'addon' | 'file'): Promise<ShmClient> {
  const c = await ShmClient.connect({ socket, mode, reconnect: { initialMs: 20, maxMs: 200, jitter: 0.2 } });
  onTestFinished(() => c.destroy());
  return c;
}

/** A raw socket speaking frames, for what the client library would never send. */
async function rawConnection(
  socket: string,
): Promise<{ s: Socket; replies: () => Promise<ReturnType<typeof decodeReply>> }> {
  const s = createConnection(socket);
  onTestFinished(() => {
    s.destroy();
  });
  await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
  const d = new FrameDecoder();
  const queue: ReturnType<typeof decodeReply>[] = [];
  const wake: (() => void)[] = [];
  s.on('data', (c: Buffer) => {
    for (const f of d.push(c)) if (f.msgid === ShmMsg.REPLY) queue.push(decodeReply(Buffer.from(f.body)));
    wake.splice(0).forEach((w) => w());
  });
  return {
    s,
    replies: async () => {
      await waitFor(() => queue.length > 0, 5_000, 'reply');
      return queue.shift()!;
    },
  };
}

const segmentsOf = (name: string): string[] => readdirSync('/dev/shm').filter((f) => f === name.slice(1));

describe.each(shmModes())('shm daemon (%s mode)', (mode) => {
  it('a daemon restart: a new generation, old segment unlinked, old buffers stale, the client reconnects', async () => {
    const { daemon, info, socket } = await startDaemon(mode);
    const c = await connect(socket, mode);
    const buf = await c.alloc(1000);
    buf.bytes().fill(1);
    const view = buf.bytes();
    expect(segmentsOf(info.poolName)).toHaveLength(1);
    const reconnecting = waitForEvent(c, 'state', 5_000);
    await daemon.close();
    expect(await reconnecting).toEqual(['reconnecting']);
    expect(segmentsOf(info.poolName)).toHaveLength(0);
    expect(() => buf.bytes()).toThrow(expect.objectContaining({ code: 'LARS_ERR_SHM_STALE' }));
    if (mode === 'addon') expect(view.length).toBe(0); // the old mapping is gone: views are empty, not dangling
    await buf.release(); // nothing left to free: resolves

    const again = new ShmDaemon({ socketPath: socket, classes: parseClasses(TEST_CLASSES), mode });
    onTestFinished(() => again.destroy());
    const info2 = await again.start();
    expect(info2.generation).toBe(info.generation + 1);
    await waitFor(() => c.state === 'ready', 10_000, 'reconnected');
    expect(c.generation).toBe(info2.generation);
    const fresh = await c.alloc(1000);
    expect(fresh.handle.pool).toBe(info2.generation);
    // A handle of the old generation is refused by the new daemon.
    const raw = await rawConnection(socket);
    raw.s.write(
      encodeFrame(ShmMsg.HELLO, encodeRequest(1, { cmd: ShmMsg.HELLO, version: 1, pid: process.pid })),
    );
    const hello = await raw.replies();
    if (mode === 'file') {
      raw.s.write(encodeFrame(ShmMsg.PROVE, encodeRequest(2, { cmd: ShmMsg.PROVE })));
      expect((await raw.replies()).status).toBe(ShmStatus.NOT_VERIFIED); // the raw socket never opened the proof
      expect(decodeJsonPayload<{ proofPath: string }>(hello.payload).proofPath).toBeTruthy();
    } else {
      raw.s.write(encodeFrame(ShmMsg.FREE, encodeRequest(2, { cmd: ShmMsg.FREE, handles: [buf.handle] })));
      const r = await raw.replies();
      expect(r.status).toBe(ShmStatus.STALE);
      expect(r.payload.toString()).toMatch(/generation/);
    }
  });

  it("a second daemon on a live socket is refused and leaves the first daemon's segment alone", async () => {
    const { socket, info } = await startDaemon(mode);
    const second = new ShmDaemon({ socketPath: socket, classes: parseClasses(TEST_CLASSES), mode });
    await expect(second.start()).rejects.toMatchObject({
      code: 'LARS_ERR_SHM_POOL',
      message: expect.stringMatching(/another lars shm is serving/),
    });
    expect(segmentsOf(info.poolName)).toHaveLength(1);
    const c = await connect(socket, mode);
    expect(c.generation).toBe(info.generation);
  });

  it('a start that fails half-way removes what it created', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    onTestFinished(() => {
      blocker.close();
    });
    const port = (blocker.address() as { port: number }).port;
    const socket = join(shortTempDir(), 'shm.sock');
    const before = readdirSync('/dev/shm').filter((f) => f.startsWith('lars-shm-'));
    const d = new ShmDaemon({
      socketPath: socket,
      classes: parseClasses(TEST_CLASSES),
      mode,
      http: { host: '127.0.0.1', port },
    });
    await expect(d.start()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect(existsSync(socket)).toBe(false);
    expect(readdirSync('/dev/shm').filter((f) => f.startsWith('lars-shm-') && !before.includes(f))).toEqual(
      [],
    );
  });

  it.skipIf(process.getuid!() !== 0)(
    'refuses a socket directory that belongs to another user (needs root to set up)',
    async () => {
      const dir = join(shortTempDir(), 'theirs');
      mkdirSync(dir, { mode: 0o755 });
      chownSync(dir, 4242, 4242);
      const d = new ShmDaemon({ socketPath: join(dir, 's.sock'), classes: parseClasses(TEST_CLASSES), mode });
      await expect(d.start()).rejects.toMatchObject({
        code: 'LARS_ERR_SHM_POOL',
        message: `socket directory ${dir} belongs to uid 4242, not to this user`,
      });
    },
  );

  it('recv by the wrong process is refused and the batch stays for its addressee', async () => {
    const { socket } = await startDaemon(mode);
    const sender = await connect(socket, mode);
    const addressee = await startPeer(socket, mode);
    const intruder = await startPeer(socket, mode);
    const [buf] = await sender.allocMany(4096, 1);
    const batchId = await sender.send([buf!], { to: addressee.pid });
    const bad = await intruder.ask('recv', { batchId });
    expect(bad).toMatchObject({ ok: false, code: 'LARS_ERR_SHM_NOT_ADDRESSEE' });
    expect(bad.message).toBe(
      `batch ${batchId} is addressed to pid ${addressee.pid}, not to pid ${intruder.pid}`,
    );
    expect(await addressee.call<unknown[]>('recv', { batchId })).toHaveLength(1);
    expect(await intruder.ask('recv', { batchId: 99999 })).toMatchObject({
      code: 'LARS_ERR_SHM_UNKNOWN_BATCH',
    });
  });

  it('pool exhaustion and quota errors name the top holder', async () => {
    const { socket } = await startDaemon(mode, { quotaPercent: 50 });
    const me = await connect(socket, mode);
    const hog = await startPeer(socket, mode);
    await hog.call('alloc', { size: 1 << 20, count: 2 }); // 2 of the 4 1 MiB blocks
    await me.allocMany(1 << 20, 2);
    const err = await me.alloc(1 << 20).catch((e: Error) => e);
    expect(err).toMatchObject({ code: 'LARS_ERR_SHM_NO_MEMORY' });
    expect((err as Error).message).toMatch(
      new RegExp(
        `class 1MiB \\(4 blocks, 0 free\\); top holders: pid (${hog.pid}|${process.pid}) \\(\\S+\\) 2 blocks`,
      ),
    );
    expect((err as Error).message).toContain(`pid ${hog.pid} (`);
    const q = await hog.ask('alloc', { size: 65536, count: 8 }); // 2 MiB + 512 KiB > 50 % of ~4.8 MiB
    expect(q).toMatchObject({ ok: false, code: 'LARS_ERR_SHM_QUOTA' });
    expect(q.message).toContain(`pid ${hog.pid} (`);
  });

  it('free of a block not held and double free are refused over the wire', async () => {
    const { socket } = await startDaemon(mode);
    const me = await connect(socket, mode);
    const buf = await me.alloc(4096);
    // A second connection (of this same process) speaks the protocol by hand.
    const raw = await rawConnection(socket);
    const send = (req: Parameters<typeof encodeRequest>[1], reqid: number) =>
      raw.s.write(encodeFrame(req.cmd, encodeRequest(reqid, req)));
    send({ cmd: ShmMsg.HELLO, version: 1, pid: process.pid }, 1);
    const hello = decodeJsonPayload<{ verified: boolean; proofPath?: string }>((await raw.replies()).payload);
    if (!hello.verified) {
      // File mode: prove who we are as the client library does (hold the file open, send PROVE).
      const fd = openSync(hello.proofPath!, 'r');
      send({ cmd: ShmMsg.PROVE }, 2);
      expect((await raw.replies()).status).toBe(ShmStatus.OK);
      closeSync(fd);
    }
    // The block the client holds is not this connection's to free.
    send({ cmd: ShmMsg.FREE, handles: [buf.handle] }, 3);
    const notHeld = await raw.replies();
    expect(notHeld.status).toBe(ShmStatus.NOT_HELD);
    expect(notHeld.payload.toString()).toBe(`block ${buf.handle.block} is not held by this connection`);
    // Its own block: the first free succeeds, the second is a double free.
    send({ cmd: ShmMsg.ALLOC, size: 10, align: 0, count: 1 }, 4);
    const [own] = decodeHandlesPayload((await raw.replies()).payload);
    send({ cmd: ShmMsg.FREE, handles: [own!] }, 5);
    expect((await raw.replies()).status).toBe(ShmStatus.OK);
    send({ cmd: ShmMsg.FREE, handles: [own!] }, 6);
    const twice = await raw.replies();
    expect(twice.status).toBe(ShmStatus.NOT_HELD);
    expect(twice.payload.toString()).toBe(
      `block ${own!.block} is not held by this connection (it is free: double free?)`,
    );
    // The client library's release is idempotent: one FREE, then nothing.
    await buf.release();
    await buf.release();
    expect((await me.stat()).held.blocks).toBe(0);
  });

  it('survives fuzzed frames: random and mutated commands get error replies, bad framing closes only that connection', async () => {
    const { socket, daemon } = await startDaemon(mode);
    const me = await connect(socket, mode);
    const good = await me.alloc(100);
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const valid = [
      encodeRequest(0, { cmd: ShmMsg.ALLOC, size: 100, align: 0, count: 1 }),
      encodeRequest(0, { cmd: ShmMsg.FREE, handles: [good.handle] }),
      encodeRequest(0, { cmd: ShmMsg.SEND, to: process.pid, ttlMs: 10, handles: [good.handle] }),
      encodeRequest(0, { cmd: ShmMsg.RECV, batchId: 1 }),
      encodeRequest(0, { cmd: ShmMsg.RECLAIM, pid: 1, reason: 9 }),
    ];
    for (let round = 0; round < 20; round++) {
      const raw = await rawConnection(socket);
      const frames: Buffer[] = [];
      for (let i = 0; i < 100; i++) {
        const msgid = 0x4300 + rnd(20);
        let body: Buffer;
        if (rnd(2) === 0) body = randomBytes(rnd(60));
        else {
          body = Buffer.from(valid[rnd(valid.length)]!);
          for (let k = rnd(4); k >= 0; k--) if (body.length) body[rnd(body.length)] = rnd(256);
        }
        frames.push(encodeFrame(msgid, body));
      }
      if (round % 5 === 4) frames.push(Buffer.from([1, 2, 3, 4, 0xff, 0xff, 0xff, 0x7f])); // msglen too large
      raw.s.write(Buffer.concat(frames));
      for (let i = 0; i < 100; i++) {
        const r = await raw.replies();
        expect(r.status === 0 || r.status >= ShmStatus.NO_MEMORY).toBe(true);
      }
      if (round % 5 === 4) await new Promise<void>((r) => raw.s.once('close', () => r()));
      raw.s.destroy();
    }
    await waitFor(() => daemon.state!.connections === 1, 5_000, 'fuzz connections closed');
    expect(good.bytes().length).toBe(100); // the good client never noticed
    const st = await me.stat();
    expect(st.classes.reduce((n, k) => n + (k.total - k.free), 0)).toBe(1); // every fuzz block released
  });

  it('file-mode identity: a declared pid that does not hold the proof is refused', async () => {
    const { socket } = await startDaemon(mode);
    const raw = await rawConnection(socket);
    const other = await startPeer(socket, mode);
    raw.s.write(
      encodeFrame(ShmMsg.ALLOC, encodeRequest(1, { cmd: ShmMsg.ALLOC, size: 10, align: 0, count: 1 })),
    );
    const first = await raw.replies();
    if (mode === 'addon') {
      expect(first.status).toBe(ShmStatus.OK); // the kernel already said who we are
      return;
    }
    expect(first.status).toBe(ShmStatus.NOT_VERIFIED);
    // Claim to be the other process: it never opened our proof file.
    raw.s.write(
      encodeFrame(ShmMsg.HELLO, encodeRequest(2, { cmd: ShmMsg.HELLO, version: 1, pid: other.pid })),
    );
    const hello = decodeJsonPayload<{ proofPath: string; verified: boolean }>((await raw.replies()).payload);
    expect(hello.verified).toBe(false);
    expect(existsSync(hello.proofPath)).toBe(true);
    raw.s.write(encodeFrame(ShmMsg.PROVE, encodeRequest(3, { cmd: ShmMsg.PROVE })));
    const r = await raw.replies();
    expect(r.status).toBe(ShmStatus.NOT_VERIFIED);
    expect(r.payload.toString()).toBe(`pid ${other.pid} does not hold the proof file open`);
    expect(existsSync(hello.proofPath)).toBe(false);
  });

  it('exports /healthz and Prometheus /metrics', async () => {
    const { socket, info } = await startDaemon(mode, { http: { host: '127.0.0.1', port: 0 } });
    const c = await connect(socket, mode);
    await c.allocMany(4096, 2);
    const base = `http://127.0.0.1:${info.httpPort}`;
    const health = (await (await fetch(`${base}/healthz`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', mode, generation: info.generation, connections: 1 });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain(`lars_shm_mode{mode="${mode}"} 1`);
    expect(metrics).toContain('lars_shm_pool_bytes{class="4KiB",state="used"} 8192');
    expect(metrics).toContain('lars_shm_alloc_total 2');
    expect(metrics).toMatch(
      new RegExp(`lars_shm_holdings_bytes\\{pid="${process.pid}",name="[^"]*"\\} 8192`),
    );
    const holders = (await (await fetch(`${base}/holders`)).json()) as { holders: { pid: number }[] };
    expect(holders.holders[0]!.pid).toBe(process.pid);
  });
});
