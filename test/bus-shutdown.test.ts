import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCode, type LarsError } from '../src/errors.js';
import { Control } from '../src/bus/wire/control.js';
import { BusMsgId } from '../src/bus/wire/msg-id.js';
import { client, RawBus, startBus } from './helpers/bus.js';
import { Latch, waitFor } from './helpers/latch.js';

describe('bus shutdown', () => {
  it('stops accepting, tells clients, delivers what was queued within linger_ms, fails pending requests with CLOSED', async () => {
    const bus = await startBus({ lingerMs: 1_000 });
    const pub = await client(bus, 'pub', { reconnect: false });
    const sub = await client(bus, 'sub', { reconnect: false });
    const N = 5_000;
    let got = 0;
    const all = new Latch(N, 'queued messages delivered');
    sub.subscribe('x', { callback: () => (got++, all.countDown()) });
    const silent = await client(bus, 'silent', { reconnect: false });
    silent.serve('svc.never', () => new Promise(() => {}));
    await sub.flush();
    await silent.flush();
    const pending = pub.request('svc.never', 'x', { timeoutMs: 60_000 }).catch((e: LarsError) => e);
    await waitFor(() => bus.svc.engine.router.pending.size === 1, 5_000, 'request relayed');
    // A client that never reads must not hold the shutdown past linger_ms.
    const stuck = await RawBus.open(bus.socket);
    stuck.hello('stuck');
    stuck.send(BusMsgId.Sub, Control.sub.encode({ sid: 1, subject: 'x' }));
    await stuck.roundTrip();
    stuck.socket.pause();
    const lame = new Latch(2, 'lame duck notices');
    pub.once('lameDuck', lame.countDown);
    sub.once('lameDuck', lame.countDown);
    for (let i = 0; i < N; i++) pub.publish('x', Buffer.alloc(200));
    await pub.flush();
    await bus.svc.close();
    await lame.wait();
    await all.wait();
    expect(got).toBe(N);
    const err = (await pending) as LarsError;
    expect(err.code).toBe(ErrorCode.CLOSED);
    expect(err.message).toContain('shutting down');
    expect(existsSync(bus.socket)).toBe(false);
    await waitFor(() => pub.state === 'closed' && sub.state === 'closed', 5_000, 'clients closed');
    expect(bus.svc.engine.conns.size).toBe(0);
  });

  it('publishes after the lame-duck notice are dropped and counted as closing; close and destroy are idempotent', async () => {
    const bus = await startBus({ lingerMs: 300 });
    const raw = await RawBus.open(bus.socket);
    raw.hello('late');
    await raw.roundTrip();
    bus.svc.engine.startLameDuck();
    const body = Buffer.alloc(14);
    body[9] = 1;
    body[10] = 0x78; // subject "x"
    raw.send(BusMsgId.Pub, body);
    await raw.roundTrip(2);
    expect(bus.svc.engine.stats.dropped.closing).toBe(1);
    await Promise.all([bus.svc.close(), bus.svc.close()]);
    await bus.svc.destroy();
    await raw.waitClosed();
  });
});
