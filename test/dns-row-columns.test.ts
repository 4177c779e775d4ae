import { describe, expect, it } from 'vitest';
import { RowColumns } from '../src/dns/row-columns.js';

describe('RowColumns', () => {
  it('reads back every row across block boundaries, negative values included, and clears', () => {
    const c = new RowColumns();
    const n = 20_000; // more than two 8192-row blocks
    for (let i = 0; i < n; i++) c.push(i % 7, ~i, i * 3);
    expect(c.length).toBe(n);
    for (const i of [0, 8191, 8192, 16383, 16384, n - 1]) {
      expect([c.route(i), c.ip(i), c.port(i)]).toEqual([i % 7, ~i, i * 3]);
    }
    c.clear();
    expect(c.length).toBe(0);
    c.push(1, 2, 3);
    expect([c.route(0), c.ip(0), c.port(0)]).toEqual([1, 2, 3]);
  });
});
