import { describe, expect, it } from 'vitest';
import { BusError } from '../src/bus/index.js';
import { ErrorCode, type LarsError } from '../src/errors.js';
import { busChild, client, startBus } from './helpers/bus.js';
import { waitFor } from './helpers/latch.js';

async function failure(p: Promise<unknown>): Promise<LarsError> {
  try {
    await p;
  } catch (err) {
    return err as LarsError;
  }
  throw new Error('expected a rejection');
}

describe('bus request/reply', () => {
  it('relays a request to a server and its reply back, with headers and the sender names', async () => {
    const bus = await startBus();
    const server = await client(bus, 'resizer');
    const caller = await client(bus, 'ui');
    let seenFrom = '';
    server.serve('svc.resize', async (req) => {
      seenFrom = req.from;
      await new Promise((r) => setTimeout(r, 5));
      return { data: `resized ${req.string()} ${req.headers.size}`, headers: { took: '5ms' } };
    });
    await server.flush();
    const rep = await caller.request('svc.resize', 'img', { headers: { size: '64x64' } });
    expect(rep.string()).toBe('resized img 64x64');
    expect(rep.headers).toEqual({ took: '5ms' });
    expect(rep.from).toBe('resizer');
    expect(rep.subject).toBe('svc.resize');
    expect(seenFrom).toBe('ui');
    expect(bus.svc.engine.stats.requests.ok).toBe(1);
  });

  it('no responders is immediate and names the topic; a silent responder is a timeout; they differ', async () => {
    const bus = await startBus();
    const caller = await client(bus, 'ui');
    const none = await failure(caller.request('svc.nobody', 'x', { timeoutMs: 30_000 }));
    expect(none.code).toBe(ErrorCode.BUS_NO_RESPONDERS);
    expect(none).toBeInstanceOf(BusError);
    expect((none as BusError).subject).toBe('svc.nobody');
    expect(none.message).toContain('svc.nobody');

    const silent = await client(bus, 'silent');
    silent.serve('svc.silent', () => new Promise(() => {}));
    await silent.flush();
    const slow = await failure(caller.request('svc.silent', 'x', { timeoutMs: 200 }));
    expect(slow.code).toBe(ErrorCode.TIMEOUT);
    expect(slow.message).toContain('svc.silent');
  });

  it("the responder's death fails its pending requests at once with CLOSED, not a timeout", async () => {
    const bus = await startBus();
    const child = await busChild(bus.socket, 'worker', { serve: 'svc.slow', delayMs: 60_000 });
    const caller = await client(bus, 'ui');
    const pending = caller.request('svc.slow', 'x', { timeoutMs: 60_000 });
    await waitFor(() => bus.svc.engine.router.pending.size === 1, 5_000, 'request relayed');
    child.kill('SIGKILL');
    const err = await failure(pending);
    expect(err.code).toBe(ErrorCode.CLOSED);
    expect(err.message).toContain('worker');
    expect(bus.svc.engine.stats.requests.closed).toBe(1);
    // The dead server is offline at once; a new request finds no responder.
    const again = await failure(caller.request('svc.slow', 'x'));
    expect(again.code).toBe(ErrorCode.BUS_NO_RESPONDERS);
    expect(again.message).toContain('none online');
  });

  it('a handler that throws gives LARS_ERR_BUS_HANDLER with its code and message', async () => {
    const bus = await startBus();
    const server = await client(bus, 'srv');
    server.serve('svc.fail', () => {
      throw new BusError(ErrorCode.BUS_LIMIT, 'quota exceeded');
    });
    server.serve('svc.reject', () => Promise.reject(new TypeError('bad shape')));
    await server.flush();
    const caller = await client(bus, 'ui');
    const a = await failure(caller.request('svc.fail', 'x'));
    expect(a.code).toBe(ErrorCode.BUS_HANDLER);
    expect(a.message).toContain('LARS_ERR_BUS_LIMIT: quota exceeded');
    const b = await failure(caller.request('svc.reject', 'x'));
    expect(b.message).toContain('TypeError: bad shape');
  });

  it('honours an AbortSignal; the late reply is dropped and counted', async () => {
    const bus = await startBus();
    const server = await client(bus, 'srv');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.serve('svc.gate', async () => {
      await gate;
      return 'late';
    });
    await server.flush();
    const caller = await client(bus, 'ui');
    const ac = new AbortController();
    const p = caller.request('svc.gate', 'x', { signal: ac.signal });
    await waitFor(() => bus.svc.engine.router.pending.size === 1, 5_000, 'relayed');
    ac.abort();
    const err = await failure(p);
    expect((err as Error).name).toBe('AbortError');
    release();
    await waitFor(() => caller.lateReplies === 1, 5_000, 'late reply counted');
  });

  it('servers of a topic share requests round robin; a server at its concurrency limit is skipped, then OVERLOADED', async () => {
    const bus = await startBus();
    const counts: Record<string, number> = { a: 0, b: 0 };
    for (const name of ['a', 'b']) {
      const s = await client(bus, name);
      s.serve('svc.rr', () => {
        counts[name]!++;
        return name;
      });
      await s.flush();
    }
    const caller = await client(bus, 'ui');
    for (let i = 0; i < 10; i++) await caller.request('svc.rr', 'x');
    expect(counts).toEqual({ a: 5, b: 5 });

    const busy = await client(bus, 'busy');
    let hold!: () => void;
    const held = new Promise<void>((r) => (hold = r));
    busy.serve('svc.one', () => held.then(() => 'done'), { concurrency: 1 });
    await busy.flush();
    const first = caller.request('svc.one', 'x');
    await waitFor(() => bus.svc.engine.router.pending.size === 1, 5_000, 'first in flight');
    const second = await failure(caller.request('svc.one', 'x'));
    expect(second.code).toBe(ErrorCode.BUS_OVERLOADED);
    hold();
    expect((await first).string()).toBe('done');
  });

  it('queryTopic lists the servers of a topic (or all) with their online flag', async () => {
    const bus = await startBus();
    const s = await client(bus, 'srv', { publicInfo: 'resizes images' });
    s.serve('svc.resize', () => 'ok', { queue: 'resizers', concurrency: 8 });
    s.serve('svc.crop', () => 'ok');
    await s.flush();
    const caller = await client(bus, 'ui');
    const one = await caller.queryTopic('svc.resize');
    expect(one.map((t) => [t.topic, t.proc.name, t.online, t.queue, t.proc.publicInfo])).toEqual([
      ['svc.resize', 'srv', true, 'resizers', 'resizes images'],
    ]);
    expect((await caller.queryTopic()).map((t) => t.topic)).toEqual(['svc.crop', 'svc.resize']);
    expect(await caller.queryTopic('svc.none')).toEqual([]);
    const bad = await failure(caller.queryTopic('svc.*'));
    expect(bad.code).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it('a request to a stopped responder fails fast; stop() unregisters the topic', async () => {
    const bus = await startBus();
    const s = await client(bus, 'srv');
    const r = s.serve('svc.x', () => 'ok');
    await s.flush();
    const caller = await client(bus, 'ui');
    expect((await caller.request('svc.x', '')).string()).toBe('ok');
    r.stop();
    await s.flush();
    expect((await failure(caller.request('svc.x', ''))).code).toBe(ErrorCode.BUS_NO_RESPONDERS);
    expect(r.handled).toBe(1);
  });

  it('drain() stops serving, lets the running handler reply, then closes; close() sends what was published', async () => {
    const bus = await startBus();
    const server = await client(bus, 'srv');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.serve('svc.slow', async () => {
      await gate;
      return 'finished';
    });
    await server.flush();
    const caller = await client(bus, 'ui');
    const pending = caller.request('svc.slow', 'x');
    await waitFor(() => bus.svc.engine.router.pending.size === 1, 5_000, 'relayed');
    const drained = server.drain();
    await waitFor(() => bus.svc.engine.router.servers('svc.slow').length === 0, 5_000, 'unserved');
    expect((await failure(caller.request('svc.slow', 'y'))).code).toBe(ErrorCode.BUS_NO_RESPONDERS);
    release();
    expect((await pending).string()).toBe('finished');
    await drained;
    expect(server.state).toBe('closed');

    const got: string[] = [];
    const listener = await client(bus, 'listener');
    listener.subscribe('last', { callback: (m) => got.push(m.string()) });
    await listener.flush();
    const shortLived = await client(bus, 'short');
    shortLived.publish('last', 'words');
    await shortLived.close();
    await waitFor(() => got.length === 1, 5_000, 'published before close delivered');
    expect(got).toEqual(['words']);
  });
});
