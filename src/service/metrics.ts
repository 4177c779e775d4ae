import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * Metrics read from the services' own counters at scrape time (prom-client `collect`), so the hot
 * paths only bump plain numbers. One helper for every service's registry.
 */
export function liveMetrics(registry: Registry): {
  gauge(name: string, help: string, read: () => number): Gauge;
  counter(name: string, help: string, read: () => number): Counter;
} {
  return {
    gauge: (name, help, read) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      }),
    counter: (name, help, read) =>
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(read());
        },
      }),
  };
}
