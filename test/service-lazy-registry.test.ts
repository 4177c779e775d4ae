import { describe, expect, it } from 'vitest';
import { LazyRegistry, PROMETHEUS_CONTENT_TYPE } from '../src/service/lazy-registry.js';

describe('LazyRegistry (issue 17: prom-client only once metrics are asked for)', () => {
  it('builds nothing until the first scrape, then reads the counters live', async () => {
    const r = new LazyRegistry();
    let n = 3;
    r.live().counter('x_total', 'x', () => n);
    r.live().gauge('y', 'y', () => n * 2);
    r.labelledCounter('z_total', 'z', 'msg', () => [
      ['a', 1],
      ['b', n],
    ]);
    expect(r.isLoaded).toBe(false);
    const text = await r.metrics();
    expect(r.isLoaded).toBe(true);
    expect(text).toMatch(/^x_total 3$/m);
    expect(text).toMatch(/^y 6$/m);
    expect(text).toMatch(/^z_total\{msg="b"\} 3$/m);
    n = 5;
    // Declared after loading: goes straight into the real registry.
    r.live().counter('w_total', 'w', () => 7);
    const again = await r.metrics();
    expect(again).toMatch(/^x_total 5$/m);
    expect(again).toMatch(/^w_total 7$/m);
    expect(await r.getSingleMetricAsString('y')).toMatch(/^y 10$/m);
    expect((await r.getMetricsAsJSON()).map((m) => m.name).sort()).toEqual([
      'w_total',
      'x_total',
      'y',
      'z_total',
    ]);
    const { Registry } = await import('prom-client');
    expect(r.contentType).toBe(Registry.PROMETHEUS_CONTENT_TYPE);
    expect(PROMETHEUS_CONTENT_TYPE).toBe(Registry.PROMETHEUS_CONTENT_TYPE);
  });
});
