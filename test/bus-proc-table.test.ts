import { describe, expect, it } from 'vitest';
import type { BusConn } from '../src/bus/server/bus-conn.js';
import { ProcTable } from '../src/bus/server/proc-table.js';
import type { Proc, ProcState } from '../src/bus/server/proc.js';

/**
 * Proc states on the bus's own clock (DESIGN §9), with fake time: transitions are asserted as
 * sequences (STYLE §15). offline 3000 ms, kill 9000 ms (3 x offline).
 */
function table() {
  let now = 1_000;
  const events: string[] = [];
  const removed: string[] = [];
  const t = new ProcTable({
    offlineMs: 3_000,
    killMs: 9_000,
    now: () => now,
    onState: (p: Proc, from: ProcState, to: ProcState) => events.push(`${p.name}:${from}->${to}`),
    onRemove: (p: Proc, why) => removed.push(`${p.name}:${why}`),
  });
  const conn = (): BusConn => ({}) as BusConn;
  const reg = (name: string, takeover = false) =>
    t.register(name, conn(), { pid: 1, uid: 2, gid: 3 }, { publicInfo: '', privateInfo: '', takeover });
  return {
    t,
    events,
    removed,
    reg,
    advance: (ms: number) => {
      now += ms;
      t.sweep(now);
    },
    at: () => now,
  };
}

describe('bus proc states (fake time)', () => {
  it('normal -> offline at offline_ms of silence -> killme and removed at kill_ms', () => {
    const h = table();
    const r = h.reg('a');
    expect(r.ok).toBe(true);
    h.advance(2_999);
    expect(h.events).toEqual([]);
    h.advance(1);
    expect(h.events).toEqual(['a:normal->offline']);
    h.advance(5_999); // 8999 ms silent
    expect(h.removed).toEqual([]);
    h.advance(1);
    expect(h.events).toEqual(['a:normal->offline', 'a:offline->killme']);
    expect(h.removed).toEqual(['a:killme']);
    expect(h.t.get('a')).toBeUndefined();
  });

  it('any frame brings an offline but connected proc back to normal and restarts its clock', () => {
    const h = table();
    const r = h.reg('a');
    if (!r.ok) throw new Error('not registered');
    h.advance(4_000);
    h.t.revive(r.proc, h.at());
    expect(h.events).toEqual(['a:normal->offline', 'a:offline->normal']);
    h.advance(8_000); // offline again, not yet 9000 since the frame
    expect(h.removed).toEqual([]);
    h.advance(1_000);
    expect(h.removed).toEqual(['a:killme']);
  });

  it('a closed socket is offline at once and a frame cannot revive it; removed at kill_ms', () => {
    const h = table();
    const r = h.reg('a');
    if (!r.ok) throw new Error('not registered');
    h.advance(500);
    h.t.detach(r.proc, 'disconnected');
    expect(h.events).toEqual(['a:normal->offline']);
    h.t.revive(r.proc, h.at());
    expect(r.proc.state).toBe('offline');
    h.advance(9_000);
    expect(h.removed).toEqual(['a:killme']);
  });

  it('a live name is refused, taken over on request, and an offline one is replaced at once', () => {
    const h = table();
    const first = h.reg('a');
    const second = h.reg('a');
    expect(second.ok).toBe(false);
    const third = h.reg('a', true);
    expect(third.ok).toBe(true);
    expect(h.removed).toEqual(['a:replaced']);
    if (!first.ok || !third.ok) throw new Error('unreachable');
    expect(third.replaced).toBe(first.proc);
    expect(first.proc.state).toBe('killme');
    h.t.detach(third.proc, 'disconnected');
    const fourth = h.reg('a');
    expect(fourth.ok).toBe(true);
    expect(h.removed).toEqual(['a:replaced', 'a:replaced']);
    expect(h.t.size).toBe(1);
    if (fourth.ok) expect(fourth.proc.num).not.toBe(third.proc.num);
  });

  it('an unregistered proc goes offline and its name can be taken without takeover', () => {
    const h = table();
    const r = h.reg('a');
    if (!r.ok) throw new Error('not registered');
    h.t.detach(r.proc, 'unregistered');
    expect(r.proc.offlineReason).toBe('unregistered');
    expect(h.reg('a').ok).toBe(true);
  });
});
