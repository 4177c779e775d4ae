import { describe, expect, it, onTestFinished } from 'vitest';
import { ErrorCode } from '../src/errors.js';
import { ShmClient } from '../src/shm/index.js';
import { decodeRequest, encodeRequest, type ShmRequest } from '../src/shm/wire-codec.js';
import { ShmMsg } from '../src/shm/wire-ids.js';
import { startDaemon } from './helpers/shm.js';

async function pair(): Promise<{ holder: ShmClient; relay: ShmClient }> {
  const { socket } = await startDaemon('addon');
  const holder = await ShmClient.connect({ socket });
  const relay = await ShmClient.connect({ socket });
  onTestFinished(async () => {
    await holder.destroy();
    await relay.destroy();
  });
  return { holder, relay };
}

const me = process.pid;

describe('shm TRANSFER and CANCEL (relays, issue 14)', () => {
  it('fans one reference out to several batches; the block is freed after the last release', async () => {
    const { holder, relay } = await pair();
    const buf = await holder.alloc(5000);
    buf.bytes()[0] = 42;
    const ids = await relay.transfer(me, buf.handle, [
      { pid: me, tag: 1 },
      { pid: me, tag: 2 },
    ]);
    expect(ids).toHaveLength(2);
    const got = [...(await holder.recv(ids[0]!)), ...(await holder.recv(ids[1]!))];
    expect(got.map((b) => b.bytes()[0])).toEqual([42, 42]);
    // The moved reference is gone from the holder's side: releasing `buf` is a NOT_HELD from the daemon.
    await Promise.all(got.map((b) => b.release()));
    await expect(holder.freeBuffer(buf)).rejects.toMatchObject({ code: ErrorCode.SHM_NOT_HELD });
    expect((await holder.stat()).classes.every((k) => k.free === k.total)).toBe(true);
  });

  it('keep leaves the holder its reference; no addressee releases it; checks come first', async () => {
    const { holder, relay } = await pair();
    const buf = await holder.alloc(100);
    const [id] = await relay.transfer(me, buf.handle, [{ pid: me, tag: 0 }], { keep: true });
    const [copy] = await holder.recv(id!);
    await copy!.release();
    expect(buf.held).toBe(true);
    expect((await holder.stat()).held.blocks).toBe(1);
    await expect(relay.transfer(me, { ...buf.handle, gen: buf.handle.gen + 1 }, [])).rejects.toMatchObject({
      code: ErrorCode.SHM_STALE,
    });
    // An addressee whose process is gone gets no batch (id 0); the others would get theirs.
    await expect(
      relay.transfer(me, buf.handle, [{ pid: 0x7ffffff0, tag: 0 }], { keep: true }),
    ).resolves.toEqual([0]);
    await expect(relay.transfer(me, buf.handle, [{ pid: -1, tag: 0 }])).rejects.toMatchObject({
      code: ErrorCode.SHM_INVALID_ARGUMENT,
    });
    await expect(relay.transfer(0x7ffffff0, buf.handle, [])).rejects.toMatchObject({
      code: ErrorCode.SHM_NOT_HELD,
    });
    expect((await holder.stat()).held.blocks).toBe(1); // nothing changed by the refusals
    await relay.transfer(me, buf.handle, []);
    expect((await holder.stat()).classes.every((k) => k.free === k.total)).toBe(true);
  });

  it('CANCEL ends the relay’s unreceived batches by tag or id, and only its own', async () => {
    const { holder, relay } = await pair();
    const [a, b, c] = await holder.allocMany(100, 3);
    const [ia] = await relay.transfer(me, a!.handle, [{ pid: me, tag: 7 }]);
    const [ib] = await relay.transfer(me, b!.handle, [{ pid: me, tag: 7 }]);
    const [ic] = await relay.transfer(me, c!.handle, [{ pid: me, tag: 8 }]);
    expect(await holder.cancel({ tag: 7 })).toBe(0); // not the holder's batches
    expect(await relay.cancel({ tag: 7 })).toBe(2);
    expect(await relay.cancel({ batchIds: [ic!] })).toBe(1);
    await expect(holder.recv(ia!)).rejects.toMatchObject({ code: ErrorCode.SHM_EXPIRED });
    await expect(holder.recv(ib!)).rejects.toMatchObject({ code: ErrorCode.SHM_EXPIRED });
    expect((await holder.stat()).classes.every((k) => k.free === k.total)).toBe(true);
  });

  it('encodes and decodes TRANSFER and CANCEL; a malformed body is INVALID_ARGUMENT', () => {
    const handle = { pool: 1, block: 2, gen: 3, len: 4 };
    const t: ShmRequest = {
      cmd: ShmMsg.TRANSFER,
      fromPid: 9,
      keep: true,
      ttlMs: 5,
      handle,
      to: [{ pid: 10, tag: 11 }],
    };
    expect(decodeRequest(ShmMsg.TRANSFER, encodeRequest(1, t))).toEqual(t);
    const c: ShmRequest = { cmd: ShmMsg.CANCEL, tag: 3, batchIds: [4, 5] };
    expect(decodeRequest(ShmMsg.CANCEL, encodeRequest(1, c))).toEqual(c);
    const body = encodeRequest(1, t);
    for (const cut of [4, 30, body.length - 1])
      expect(() => decodeRequest(ShmMsg.TRANSFER, body.subarray(0, cut))).toThrow(
        expect.objectContaining({ code: ErrorCode.SHM_INVALID_ARGUMENT }),
      );
    const flags = Buffer.from(body);
    flags[8] = 0x80;
    expect(() => decodeRequest(ShmMsg.TRANSFER, flags)).toThrow(/unknown flags/);
  });
});
