import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ShmCore } from '../src/shm/daemon/shm-core.js';
import type { ShmPeer } from '../src/shm/daemon/peer.js';
import { layoutPool } from '../src/shm/pool-layout.js';
import { parseClasses } from '../src/shm/size-classes.js';
import type { ShmNotice } from '../src/shm/wire-codec.js';

/** The core alone: no sockets, no segment. Peers are fakes that record notices and kills. */
function setup(quotaPercent = 100) {
  const layout = layoutPool(parseClasses('4KiB:8,64KiB:4'));
  const live = new Set([100, 200, 300]);
  const core = new ShmCore({
    layout,
    generation: 3,
    poolName: '/test',
    mode: 'file',
    quotaBytes: Math.floor((quotaPercent / 100) * (8 * 4096 + 4 * 65536)),
    maxBatchesPerProc: 2,
    defaultTtlMs: 1000,
    maxTtlMs: 5000,
    processExists: (pid) => live.has(pid),
    processName: (pid) => `proc${pid}`,
  });
  const notices: ShmNotice[] = [];
  const killed: string[] = [];
  const peer = (pid: number): ShmPeer => {
    const p = core.attach(pid * 10 + core.connections, {
      notify: (n) => notices.push(n),
      kill: (why) => {
        killed.push(`${pid}: ${why}`);
      },
    });
    core.verify(p, pid);
    return p;
  };
  const free4k = (): number => core.blocks.freeCount(0);
  return { core, peer, notices, killed, free4k, live };
}

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'ok';
};

describe('shm core', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('allocates from the smallest class that fits and frees on the last reference', () => {
    const { core, peer, free4k } = setup();
    const a = peer(100);
    const [x] = core.alloc(a, 100, 0, 1);
    expect(x).toMatchObject({ pool: 3, block: 0, gen: 1, len: 100 });
    const [y] = core.alloc(a, 4097, 0, 1);
    expect(y!.block).toBe(8); // first 64 KiB block
    core.addref(a, [x!]);
    expect(a.held.get(0)).toBe(2);
    core.free(a, [x!]);
    expect(free4k()).toBe(7);
    core.free(a, [x!]);
    expect(free4k()).toBe(8);
    const [z] = core.alloc(a, 10, 0, 1);
    expect(z).toMatchObject({ block: 0, gen: 2 }); // reused: a new use generation
  });

  it('refuses free of a block not held, a double free and stale handles, changing nothing', () => {
    const { core, peer, free4k } = setup();
    const a = peer(100);
    const b = peer(200);
    const [x, y] = core.alloc(a, 10, 0, 2);
    expect(code(() => core.free(b, [x!]))).toBe('LARS_ERR_SHM_NOT_HELD');
    core.free(a, [x!]);
    expect(code(() => core.free(a, [x!]))).toBe('LARS_ERR_SHM_NOT_HELD'); // double free
    expect(() => core.free(a, [x!])).toThrow(/double free/);
    // A batch of two where the second is bad: the first stays held.
    expect(code(() => core.free(a, [y!, x!]))).toBe('LARS_ERR_SHM_NOT_HELD');
    expect(a.held.get(y!.block)).toBe(1);
    expect(code(() => core.free(a, [y!, y!]))).toBe('LARS_ERR_SHM_NOT_HELD'); // one reference, freed twice
    expect(code(() => core.free(a, [{ ...y!, pool: 2 }]))).toBe('LARS_ERR_SHM_STALE'); // earlier daemon
    core.alloc(b, 10, 0, 1); // block x reused by b: x's handle is now stale
    expect(code(() => core.free(a, [x!]))).toBe('LARS_ERR_SHM_STALE');
    expect(code(() => core.free(a, [{ ...y!, block: 999 }]))).toBe('LARS_ERR_SHM_INVALID_ARGUMENT');
    expect(free4k()).toBe(6);
  });

  it('refuses bad sizes, alignments and counts', () => {
    const { core, peer } = setup();
    const a = peer(100);
    expect(code(() => core.alloc(a, 0, 0, 1))).toBe('LARS_ERR_SHM_INVALID_ARGUMENT');
    expect(code(() => core.alloc(a, 65537, 0, 1))).toBe('LARS_ERR_SHM_INVALID_ARGUMENT');
    expect(code(() => core.alloc(a, 10, 8192, 1))).toBe('LARS_ERR_SHM_INVALID_ARGUMENT');
    expect(code(() => core.alloc(a, 10, 48, 1))).toBe('LARS_ERR_SHM_INVALID_ARGUMENT');
    expect(code(() => core.alloc(a, 10, 0, 0))).toBe('LARS_ERR_SHM_INVALID_ARGUMENT');
    expect(core.alloc(a, 10, 4096, 1)[0]!.block).toBe(0);
    const unverified = core.attach(1, { notify: () => {}, kill: () => {} });
    expect(code(() => core.alloc(unverified, 10, 0, 1))).toBe('LARS_ERR_SHM_NOT_VERIFIED');
  });

  it('pool exhaustion names the class and the top holders', () => {
    const { core, peer } = setup();
    const a = peer(100);
    const b = peer(200);
    core.alloc(a, 10, 0, 5);
    const [sent] = core.alloc(b, 10, 0, 3);
    core.send(b, 300, 0, [sent!]);
    let err: Error | undefined;
    try {
      core.alloc(b, 10, 0, 1);
    } catch (e) {
      err = e as Error;
    }
    expect(err).toMatchObject({ code: 'LARS_ERR_SHM_NO_MEMORY' });
    expect(err!.message).toBe(
      'no free block in class 4KiB (8 blocks, 0 free); top holders: pid 100 (proc100) 5 blocks, pid 200 (proc200) 2 blocks; 1 block in 1 unreceived batch',
    );
    expect(core.counters.allocFailed.no_memory).toBe(1);
  });

  it('a process over its quota is refused (batches it sent count), naming it', () => {
    const { core, peer } = setup(25); // 25 % of 288 KiB = 72 KiB
    const a = peer(100);
    const a2 = peer(100); // a second connection of the same process shares the quota
    const [big] = core.alloc(a, 65536, 0, 1);
    expect(code(() => core.alloc(a2, 65536, 0, 1))).toBe('LARS_ERR_SHM_QUOTA');
    core.send(a, 200, 0, [big!]);
    expect(() => core.alloc(a2, 65536, 0, 1)).toThrow(
      /pid 100 \(proc100\) holds 0B and has 64KiB in unreceived batches/,
    );
    core.alloc(a2, 4096, 0, 2);
    const b = peer(200);
    core.alloc(b, 4096, 0, 3);
    expect(code(() => core.recv(b, 1))).toBe('LARS_ERR_SHM_QUOTA'); // receiving would pass b's quota
    expect(core.batches.size).toBe(1); // the batch waits
  });

  it('send moves references into a batch; only the addressee receives; unknown ids are named', () => {
    const { core, peer, live } = setup();
    const a = peer(100);
    const b = peer(200);
    const [x] = core.alloc(a, 10, 0, 1);
    expect(code(() => core.send(a, 4242, 0, [x!]))).toBe('LARS_ERR_SHM_INVALID_ARGUMENT'); // no such process
    expect(code(() => core.send(a, 200, 6000, [x!]))).toBe('LARS_ERR_SHM_INVALID_ARGUMENT'); // ttl over max
    const id = core.send(a, 200, 0, [x!]);
    expect(a.held.size).toBe(0);
    expect(code(() => core.free(a, [x!]))).toBe('LARS_ERR_SHM_NOT_HELD');
    const c = peer(300);
    expect(code(() => core.recv(c, id))).toBe('LARS_ERR_SHM_NOT_ADDRESSEE');
    expect(() => core.recv(c, id)).toThrow('batch 1 is addressed to pid 200, not to pid 300');
    expect(core.recv(b, id)).toEqual({ fromPid: 100, handles: [x] });
    expect(code(() => core.recv(b, id))).toBe('LARS_ERR_SHM_UNKNOWN_BATCH');
    expect(code(() => core.recv(b, 12345))).toBe('LARS_ERR_SHM_UNKNOWN_BATCH');
    core.free(b, [x!]);
    expect(core.blocks.freeCount(0)).toBe(8);
    live.delete(300);
  });

  it('a batch not received in its ttl is released, its sender told, a late recv gets EXPIRED', () => {
    const { core, peer, notices, free4k } = setup();
    const a = peer(100);
    const b = peer(200);
    const bufs = core.alloc(a, 10, 0, 2);
    const id = core.send(a, 200, 500, bufs);
    vi.advanceTimersByTime(499);
    expect(notices).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(notices).toEqual([{ kind: 'batch-released', batchId: id, to: 200, blocks: 2, reason: 'ttl' }]);
    expect(free4k()).toBe(8);
    expect(code(() => core.recv(b, id))).toBe('LARS_ERR_SHM_EXPIRED');
    expect(core.counters.batchesExpired).toBe(1);
    expect(core.counters.reclaimedBytes.expired).toBe(2 * 4096);
    expect(core.procs.get(100)!.sentBatches).toBe(0);
  });

  it('limits batches in flight per process', () => {
    const { core, peer } = setup();
    const a = peer(100);
    const bufs = core.alloc(a, 10, 0, 3);
    core.send(a, 200, 0, [bufs[0]!]);
    core.send(a, 200, 0, [bufs[1]!]);
    expect(code(() => core.send(a, 200, 0, [bufs[2]!]))).toBe('LARS_ERR_SHM_QUOTA');
  });

  it('a closing connection releases what it held; batches to its process go when its last connection does', () => {
    const { core, peer, notices, free4k } = setup();
    const a = peer(100);
    const b1 = peer(200);
    const b2 = peer(200);
    core.alloc(b1, 10, 0, 3);
    const id = core.send(a, 200, 0, core.alloc(a, 10, 0, 1));
    core.detach(b1);
    expect(free4k()).toBe(7); // b1's 3 blocks back; the batch waits: pid 200 still has b2
    expect(core.counters.reclaimedBytes.disconnect).toBe(3 * 4096);
    core.detach(b2);
    expect(notices).toEqual([
      { kind: 'batch-released', batchId: id, to: 200, blocks: 1, reason: 'addressee-gone' },
    ]);
    expect(free4k()).toBe(8);
    expect(core.procs.has(200)).toBe(false);
  });

  it('a block referenced by a batch survives its sender closing', () => {
    const { core, peer, free4k } = setup();
    const a = peer(100);
    const b = peer(200);
    const [x] = core.alloc(a, 10, 0, 1);
    const id = core.send(a, 200, 0, [x!]);
    core.detach(a);
    expect(free4k()).toBe(7);
    expect(core.recv(b, id).handles).toEqual([x]);
    core.free(b, [x!]);
    expect(free4k()).toBe(8);
    expect(core.procs.size).toBe(1);
  });

  it('reclaim releases a live process at once, cuts its connections and its incoming batches', () => {
    const { core, peer, killed, free4k } = setup();
    const hung = peer(200);
    const other = peer(100);
    core.alloc(hung, 10, 0, 4);
    core.send(other, 200, 0, core.alloc(other, 10, 0, 1));
    const r = core.reclaim(200, 'killme');
    expect(r).toEqual({ pid: 200, connections: 1, blocks: 4, bytes: 4 * 4096, batches: 1 });
    expect(killed).toEqual(['200: reclaimed (killme)']);
    expect(free4k()).toBe(8);
    expect(core.counters.reclaimedBytes.killme).toBe(5 * 4096);
    core.detach(hung); // its close afterwards releases nothing twice
    expect(free4k()).toBe(8);
    expect(core.reclaim(4242, 'manual')).toEqual({
      pid: 4242,
      connections: 0,
      blocks: 0,
      bytes: 0,
      batches: 0,
    });
  });

  it('reports holders per process and class', () => {
    const { core, peer } = setup();
    const a = peer(100);
    core.alloc(a, 10, 0, 2);
    core.alloc(a, 5000, 0, 1);
    core.send(a, 200, 0, core.alloc(a, 10, 0, 1));
    const r = core.holders();
    expect(r.holders).toEqual([
      {
        pid: 100,
        name: 'proc100',
        connections: 1,
        blocks: 3,
        bytes: 2 * 4096 + 65536,
        classes: [
          { size: 4096, blocks: 2 },
          { size: 65536, blocks: 1 },
        ],
        sent: { batches: 1, bytes: 4096 },
      },
    ]);
    expect(r.inBatches).toEqual({ batches: 1, blocks: 1, bytes: 4096 });
  });
});
