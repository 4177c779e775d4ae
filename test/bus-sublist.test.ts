import { describe, expect, it } from 'vitest';
import { Sublist, type SubEntry } from '../src/bus/server/sublist.js';

/**
 * Subject matching of the bus (DESIGN §9), table-driven. The seed's center meant hierarchical
 * matching (`a.b` receives `a.b.c`) but its lookup ignored the prefix it computed and only ever found
 * exact subscribers; those cases are marked "seed bug".
 */
interface Sub extends SubEntry {
  id: string;
}

const sub = (subject: string, opts: { exact?: boolean; queue?: string; id?: string } = {}): Sub => ({
  subject,
  exact: opts.exact ?? false,
  queue: opts.queue ?? '',
  id: opts.id ?? `${subject}${opts.exact ? '!' : ''}`,
});

const CASES: { pattern: string; exact?: boolean; matches: string[]; misses: string[]; note?: string }[] = [
  {
    pattern: 'a.b',
    matches: ['a.b', 'a.b.c', 'a.b.c.d'],
    misses: ['a', 'a.c', 'a.bc', 'ab', 'x.a.b', 'b'],
    note: 'seed bug: a.b.c missed',
  },
  {
    pattern: 'a',
    matches: ['a', 'a.b', 'a.b.c'],
    misses: ['ab', 'b.a', 'aa.b'],
    note: 'seed bug: descendants missed',
  },
  { pattern: 'a.b', exact: true, matches: ['a.b'], misses: ['a.b.c', 'a', 'a.bc'] },
  { pattern: 'a.*', matches: ['a.b', 'a.x', 'a.b.c'], misses: ['a', 'b.a', 'ab.c'] },
  { pattern: 'a.*', exact: true, matches: ['a.b', 'a.x'], misses: ['a', 'a.b.c'] },
  { pattern: 'a.>', matches: ['a.b', 'a.b.c', 'a.b.c.d.e'], misses: ['a', 'b.c', 'ab'] },
  { pattern: 'a.>', exact: true, matches: ['a.b', 'a.b.c'], misses: ['a'] },
  { pattern: '*.b', matches: ['x.b', 'a.b', 'x.b.c'], misses: ['b', 'x.c.b', 'x.bb'] },
  { pattern: '*.b', exact: true, matches: ['x.b'], misses: ['x.b.c', 'b'] },
  { pattern: 'a.*.c', matches: ['a.x.c', 'a.y.c.d'], misses: ['a.x.d', 'a.c', 'a.x'] },
  { pattern: '>', matches: ['a', 'a.b', 'z.y.x'], misses: [] },
  { pattern: '*', matches: ['a', 'a.b'], misses: [] },
  { pattern: '*', exact: true, matches: ['a', 'b'], misses: ['a.b'] },
  { pattern: '*.*', exact: true, matches: ['a.b'], misses: ['a', 'a.b.c'] },
  {
    pattern: 'video.cam1',
    matches: ['video.cam1', 'video.cam1.meta'],
    misses: ['video.cam10', 'video.cam', 'video'],
  },
];

describe('bus subject matching', () => {
  for (const c of CASES) {
    it(`${c.pattern}${c.exact ? ' (exact)' : ''}${c.note ? ` — ${c.note}` : ''}`, () => {
      const list = new Sublist<Sub>();
      list.insert(sub(c.pattern, { exact: c.exact ?? false }));
      for (const s of c.matches)
        expect(
          list.match(s).plain.map((x) => x.subject),
          `${s} should match`,
        ).toEqual([c.pattern]);
      for (const s of c.misses) expect(list.match(s).plain, `${s} should not match`).toEqual([]);
    });
  }

  it('a subject collects every matching subscription exactly once', () => {
    const list = new Sublist<Sub>();
    const subs = [
      sub('a'),
      sub('a.b'),
      sub('a.b', { exact: true }),
      sub('a.*'),
      sub('a.>'),
      sub('*.b'),
      sub('>'),
      sub('x'),
      sub('a.b.c'),
    ];
    for (const s of subs) list.insert(s);
    const ids = list
      .match('a.b')
      .plain.map((s) => s.id)
      .sort();
    expect(ids).toEqual(['*.b', '>', 'a', 'a.*', 'a.>', 'a.b', 'a.b!'].sort());
    expect(
      list
        .match('a.b.c')
        .plain.map((s) => s.id)
        .sort(),
    ).toEqual(['*.b', '>', 'a', 'a.*', 'a.>', 'a.b', 'a.b.c'].sort());
  });

  it('queue subscriptions are grouped by queue name across patterns', () => {
    const list = new Sublist<Sub>();
    list.insert(sub('jobs', { queue: 'w', id: 'w1' }));
    list.insert(sub('jobs.>', { queue: 'w', id: 'w2' }));
    list.insert(sub('jobs.a', { queue: 'v', id: 'v1' }));
    list.insert(sub('jobs', { id: 'plain' }));
    const m = list.match('jobs.a');
    expect(m.plain.map((s) => s.id)).toEqual(['plain']);
    const groups = Object.fromEntries(m.groups.map((g) => [g.name, g.members.map((s) => s.id).sort()]));
    expect(groups).toEqual({ w: ['w1', 'w2'], v: ['v1'] });
  });

  it('the result cache is invalidated by subscribe and unsubscribe; removal prunes the trie', () => {
    const list = new Sublist<Sub>();
    expect(list.match('a.b').plain).toEqual([]);
    const s1 = sub('a.b');
    list.insert(s1);
    expect(list.match('a.b').plain).toEqual([s1]);
    const s2 = sub('a.*.c', { exact: true });
    list.insert(s2);
    expect(
      list
        .match('a.b.c')
        .plain.map((s) => s.id)
        .sort(),
    ).toEqual([s1.id, s2.id].sort());
    expect(list.remove(s1)).toBe(true);
    expect(list.remove(s1)).toBe(false);
    expect(list.match('a.b.c').plain).toEqual([s2]);
    expect(list.remove(s2)).toBe(true);
    expect(list.count).toBe(0);
    expect(list.match('a.b.c').plain).toEqual([]);
    // Pruned: nothing is left below the root.
    expect((list as unknown as { root: { children: Map<string, unknown> } }).root.children.size).toBe(0);
  });
});
