import type { Registry } from 'prom-client';
import type { MetricsSource } from './admin-http.js';

/** prom-client's Registry.PROMETHEUS_CONTENT_TYPE, without loading prom-client to read it. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Definition =
  | { kind: 'gauge' | 'counter'; name: string; help: string; read: () => number }
  | {
      kind: 'labelled';
      name: string;
      help: string;
      label: string;
      read: () => Iterable<readonly [string, number]>;
    };

/**
 * A metrics registry that loads prom-client on the first scrape (issue 17: an agent on every host
 * should not carry ~4 MB of a metrics library until somebody asks for metrics). Metrics are declared
 * up front as readers of the service's own counters (what liveMetrics does), and built into a real
 * prom-client Registry when it is first needed; later declarations go straight into it.
 */
export class LazyRegistry implements MetricsSource {
  readonly contentType = PROMETHEUS_CONTENT_TYPE;
  private readonly definitions: Definition[] = [];
  private real: Promise<Registry> | undefined;
  private loaded: Registry | undefined;
  private prom: typeof import('prom-client') | undefined;

  /** The same shape as liveMetrics(registry). */
  live(): {
    gauge(name: string, help: string, read: () => number): void;
    counter(name: string, help: string, read: () => number): void;
  } {
    return {
      gauge: (name, help, read) => this.define({ kind: 'gauge', name, help, read }),
      counter: (name, help, read) => this.define({ kind: 'counter', name, help, read }),
    };
  }

  /** A counter with one label, read as (label value, count) pairs at scrape time. */
  labelledCounter(
    name: string,
    help: string,
    label: string,
    read: () => Iterable<readonly [string, number]>,
  ): void {
    this.define({ kind: 'labelled', name, help, label, read });
  }

  /** prom-client has been loaded (a scrape happened). */
  get isLoaded(): boolean {
    return this.loaded !== undefined;
  }

  async metrics(): Promise<string> {
    return (await this.registry()).metrics();
  }

  async getMetricsAsJSON(): ReturnType<Registry['getMetricsAsJSON']> {
    return (await this.registry()).getMetricsAsJSON();
  }

  async getSingleMetricAsString(name: string): Promise<string> {
    return (await this.registry()).getSingleMetricAsString(name);
  }

  /** The real registry, built on first use. */
  registry(): Promise<Registry> {
    this.real ??= import('prom-client').then((prom) => {
      this.prom = prom;
      const r = new prom.Registry();
      this.loaded = r;
      for (const d of this.definitions) this.build(r, d);
      return r;
    });
    return this.real;
  }

  private define(d: Definition): void {
    this.definitions.push(d);
    if (this.loaded) this.build(this.loaded, d);
  }

  private build(r: Registry, d: Definition): void {
    const prom = this.prom!;
    if (d.kind === 'gauge') {
      new prom.Gauge({
        name: d.name,
        help: d.help,
        registers: [r],
        collect() {
          this.set(d.read());
        },
      });
    } else if (d.kind === 'counter') {
      new prom.Counter({
        name: d.name,
        help: d.help,
        registers: [r],
        collect() {
          this.reset();
          this.inc(d.read());
        },
      });
    } else if (d.kind === 'labelled') {
      const { label, read } = d;
      new prom.Counter({
        name: d.name,
        help: d.help,
        labelNames: [label],
        registers: [r],
        collect() {
          this.reset();
          for (const [value, n] of read()) this.inc({ [label]: value }, n);
        },
      });
    }
  }
}
