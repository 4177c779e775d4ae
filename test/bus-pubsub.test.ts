import { describe, expect, it } from 'vitest';
import type { BusMsg, SlowConsumerEvent } from '../src/bus/index.js';
import { Control, NoticeKind } from '../src/bus/wire/control.js';
import { dataFrameLength, writeDataFrame } from '../src/bus/wire/data-frame.js';
import { BusMsgId } from '../src/bus/wire/msg-id.js';
import { ErrorCode, type LarsError } from '../src/errors.js';
import { client, RawBus, startBus } from './helpers/bus.js';
import { Latch, waitFor, waitForEvent } from './helpers/latch.js';

function pubFrame(subject: string, payload: Uint8Array): Buffer {
  const out = Buffer.alloc(dataFrameLength(subject.length, 0, payload.length));
  writeDataFrame(out, 0, BusMsgId.Pub, 0, 0, 0, subject, undefined, payload);
  return out;
}

describe('bus publish/subscribe', () => {
  it('delivers hierarchically, with wildcards and exact subscriptions, naming the sender and headers', async () => {
    const bus = await startBus();
    const pub = await client(bus, 'vas', { publicInfo: 'video analysis' });
    const sub = await client(bus, 'vss');
    const got: Record<string, string[]> = { tree: [], star: [], exact: [] };
    let from = '';
    let headers: Record<string, string> = {};
    const all = new Latch(4, 'deliveries');
    const on = (k: string) => (m: BusMsg) => {
      got[k]!.push(`${m.subject}=${m.string()}`);
      from = m.from;
      if (m.subject === 'video.cam1') headers = { ...m.headers };
      all.countDown();
    };
    sub.subscribe('video', { callback: on('tree') });
    sub.subscribe('video.*', { exact: true, callback: on('star') });
    sub.subscribe('video.cam1', { exact: true, callback: on('exact') });
    await sub.flush();
    pub.publish('video.cam1', 'a', { headers: { trace: 't-1' } });
    pub.publish('video.cam1.meta', 'b');
    pub.publish('audio.mic', 'c');
    await all.wait();
    expect(got).toEqual({
      tree: ['video.cam1=a', 'video.cam1.meta=b'],
      star: ['video.cam1=a'],
      exact: ['video.cam1=a'],
    });
    expect(from).toBe('vas');
    expect(headers).toEqual({ trace: 't-1' });
    await pub.flush();
    expect(bus.svc.engine.stats.dropped.no_interest).toBe(1);
  });

  it('an async iterator yields messages in order and ends on unsubscribe', async () => {
    const bus = await startBus();
    const pub = await client(bus, 'p');
    const sub = await client(bus, 's');
    const s = sub.subscribe('n');
    await sub.flush();
    for (let i = 0; i < 100; i++) pub.publish('n', String(i));
    const seen: number[] = [];
    for await (const m of s) {
      seen.push(Number(m.string()));
      if (seen.length === 100) s.unsubscribe();
    }
    expect(seen).toEqual(Array.from({ length: 100 }, (_, i) => i));
    await sub.flush();
    expect(bus.svc.engine.sublist.count).toBe(0);
  });

  it('queue group members share the messages evenly; a plain subscriber gets them all', async () => {
    const bus = await startBus();
    const pub = await client(bus, 'p');
    const counts = [0, 0, 0];
    let plain = 0;
    const done = new Latch(300 + 300, 'deliveries');
    for (let i = 0; i < 3; i++) {
      const c = await client(bus, `w${i}`);
      c.subscribe('jobs', { queue: 'workers', callback: () => (counts[i]!++, done.countDown()) });
      await c.flush();
    }
    const watcher = await client(bus, 'watch');
    watcher.subscribe('jobs', { callback: () => (plain++, done.countDown()) });
    await watcher.flush();
    for (let i = 0; i < 300; i++) pub.publish('jobs.x', 'j');
    await done.wait();
    expect(counts).toEqual([100, 100, 100]);
    expect(plain).toBe(300);
  });

  it('a slow subscriber is dropped from, counted exactly and told once per episode; others get everything', async () => {
    const bus = await startBus({ maxPendingMsgs: 5_000, writeDeadlineMs: 60_000 });
    const pub = await client(bus, 'pub');
    const fast = await client(bus, 'fast');
    let fastGot = 0;
    const N = 40_000;
    const fastDone = new Latch(N, 'fast subscriber');
    fast.subscribe('load', { callback: () => (fastGot++, fastDone.countDown()) });
    await fast.flush();
    const slow = await RawBus.open(bus.socket);
    slow.hello('slow');
    slow.send(BusMsgId.Sub, Control.sub.encode({ sid: 1, subject: 'load' }));
    await slow.roundTrip();
    slow.socket.pause();
    const payload = Buffer.alloc(16, 1);
    for (let i = 0; i < N; i++) {
      pub.publish('load', payload);
      if (i % 500 === 499) await pub.flush();
    }
    await pub.flush();
    await fastDone.wait(20_000);
    expect(fastGot).toBe(N);
    expect(bus.svc.engine.stats.dropped.slow_consumer).toBeGreaterThan(0);
    slow.socket.resume();
    await waitFor(
      () => bus.svc.engine.conns.size > 0 && [...bus.svc.engine.conns].every((c) => c.episodeStartMs < 0),
      10_000,
      'episode over',
    );
    await slow.roundTrip(1234);
    const dropped = bus.svc.engine.stats.dropped.slow_consumer;
    const notices = slow.frames
      .filter((f) => f.msgid === BusMsgId.Notice)
      .map((f) => Control.notice.decode(f.body));
    expect(notices.every((n) => n.kind === NoticeKind.SLOW_CONSUMER)).toBe(true);
    // One notice per episode, and together they report every drop.
    expect(notices.length).toBe(bus.svc.engine.stats.slowConsumerEpisodes);
    expect(notices.reduce((sum, n) => sum + Number(n.dropped), 0)).toBe(dropped);
    const delivered = slow.frames.filter((f) => f.msgid === BusMsgId.Msg).length;
    // sent = delivered + counted drops, exactly.
    expect(delivered + dropped).toBe(N);
    expect((await pub.queryProc('slow'))?.dropped).toBe(dropped);
    expect((await pub.queryProc('fast'))?.dropped).toBe(0);
  });

  it('a subscriber that stays full past write_deadline_ms is cut (SLOW_PEER) and counted', async () => {
    const bus = await startBus({ maxPendingMsgs: 50, writeDeadlineMs: 200 });
    const pub = await client(bus, 'pub');
    const slow = await RawBus.open(bus.socket);
    slow.hello('slow');
    slow.send(BusMsgId.Sub, Control.sub.encode({ sid: 1, subject: 'x' }));
    await slow.roundTrip();
    slow.socket.pause();
    // Keep it full: publish until the connection is cut.
    while (!slow.closed && bus.svc.engine.stats.slowConsumerDisconnects === 0) {
      for (let i = 0; i < 2_000; i++) pub.publish('x', Buffer.alloc(64));
      await pub.flush();
    }
    await waitFor(() => bus.svc.engine.stats.slowConsumerDisconnects === 1, 10_000, 'slow consumer cut');
    const info = await pub.queryProc('slow');
    expect(info?.state).toBe('offline');
    expect(info?.connected).toBe(false);
  });

  it("the client reports the bus's slow-consumer notices as 'slowConsumer' events", async () => {
    const bus = await startBus({ maxPendingMsgs: 100 });
    const pub = await client(bus, 'pub');
    const sub = await client(bus, 'sub');
    let got = 0;
    const events: SlowConsumerEvent[] = [];
    sub.on('slowConsumer', (e: SlowConsumerEvent) => events.push(e));
    sub.subscribe('x', { callback: () => got++ });
    await sub.flush();
    const socket = (sub as unknown as { link: { socket: { pause(): void; resume(): void } } }).link.socket;
    socket.pause();
    for (let i = 0; i < 20_000; i++) pub.publish('x', 'y');
    await pub.flush();
    socket.resume();
    await waitFor(() => [...bus.svc.engine.conns].every((c) => c.episodeStartMs < 0), 10_000, 'episode over');
    await sub.flush();
    const dropped = bus.svc.engine.stats.dropped.slow_consumer;
    expect(dropped).toBeGreaterThan(0);
    expect(events.every((e) => e.where === 'bus')).toBe(true);
    expect(events.reduce((n, e) => n + e.dropped, 0)).toBe(dropped);
    expect(got + dropped).toBe(20_000);
  });

  it("an iterator that falls behind drops past maxPending and reports it as a client-side 'slowConsumer'", async () => {
    const bus = await startBus();
    const pub = await client(bus, 'pub');
    const sub = await client(bus, 'sub');
    const events: SlowConsumerEvent[] = [];
    sub.on('slowConsumer', (e: SlowConsumerEvent) => events.push(e));
    const s = sub.subscribe('burst', { maxPending: 10 });
    await sub.flush();
    for (let i = 0; i < 100; i++) pub.publish('burst', String(i));
    await pub.flush();
    await sub.flush();
    const seen: string[] = [];
    for await (const m of s) {
      seen.push(m.string());
      if (seen.length === 10) break;
    }
    expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
    expect(s.dropped).toBe(90);
    expect(events).toEqual([expect.objectContaining({ where: 'client', subject: 'burst', dropped: 90 })]);
  });

  it("publish() throws LARS_ERR_QUEUE_FULL when the client's buffer is full, and 'drain' says when to resume", async () => {
    const bus = await startBus();
    const pub = await client(bus, 'pub', { maxOutboundBytes: 8_192 });
    let err: LarsError | undefined;
    let sent = 0;
    try {
      for (; sent < 10_000; sent++) pub.publish('x', Buffer.alloc(100));
    } catch (e) {
      err = e as LarsError;
    }
    expect(err?.code).toBe(ErrorCode.QUEUE_FULL);
    expect(sent).toBeLessThan(100);
    await waitForEvent(pub, 'drain');
    pub.publish('x', Buffer.alloc(100));
    await pub.flush();
  });

  it('messages for an offline subscriber are dropped and counted as offline', async () => {
    const bus = await startBus();
    const pub = await client(bus, 'pub');
    const raw = await RawBus.open(bus.socket);
    raw.hello('gone');
    raw.send(BusMsgId.Sub, Control.sub.encode({ sid: 1, subject: 'x' }));
    await raw.roundTrip();
    raw.socket.destroy();
    await waitFor(() => bus.svc.engine.procs.get('gone')?.state === 'offline', 5_000, 'offline');
    pub.publish('x', 'lost');
    raw.write(pubFrame('x', Buffer.alloc(0))); // a write on a destroyed socket is a no-op
    await pub.flush();
    expect(bus.svc.engine.stats.dropped.offline).toBe(1);
  });
});
