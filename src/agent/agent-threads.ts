import { join } from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { AggregatorRegistry, Registry } from 'prom-client';
import { ClosedError, WorkerError } from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { AdminHttp, type Health } from '../service/admin-http.js';
import type { AgentServiceOptions } from './agent-service.js';
import { portsOfShard } from './agent-shards.js';
import type { FromShard, ShardWorkerData, ToShard } from './agent-worker.js';
import { RouteCache, type CachedRoute } from './route-cache.js';
import { agentRouteKey } from './agent-core.js';

export interface ThreadedAgentOptions extends Omit<
  AgentServiceOptions,
  'shard' | 'onRouteChanged' | 'http' | 'now'
> {
  /** Shard threads (at most one per port). */
  threads: number;
  /** Worker entry (tests point it at a fixture that loads TypeScript). */
  workerScript?: URL;
  logLevel?: string;
}

interface Shard {
  worker: Worker;
  port: MessagePort | undefined;
  health: Record<string, unknown> | undefined;
  metrics: unknown[] | undefined;
  closed: Promise<void>;
}

const STATS_EVERY_MS = 1_000;

/**
 * The agent on several threads, so both cores serve the UDP API (the original ran one thread per
 * port). Each shard thread binds some of the ports and owns exactly the routes whose original port
 * (`(modid + cmdid) % ports`) it binds: clients that pick ports like the original never cross
 * threads; a request on another port is forwarded to the owner and answered from where it arrived.
 *
 * This thread only supervises: it keeps the last-known-good cache (shards report every route change;
 * on start each shard is seeded with the cached routes it owns), serves health and metrics
 * aggregated over the shards, and closes them. A shard that dies takes its routes with it: the
 * process exits so the supervisor restarts the agent whole.
 */
export class ThreadedAgent {
  private readonly opts: ThreadedAgentOptions;
  private readonly log: Logger;
  private readonly shards: Shard[] = [];
  private readonly routes = new Map<string, CachedRoute>();
  private readonly cache: RouteCache | undefined;
  private readonly http: AdminHttp;
  private registry: Registry = new Registry();
  private statsTimer: NodeJS.Timeout | undefined;
  private state: 'new' | 'running' | 'closing' | 'closed' = 'new';
  private boundPorts: number[] = [];
  private started = false;

  constructor(options: ThreadedAgentOptions) {
    this.opts = options;
    this.log = options.logger ?? silentLogger;
    this.cache =
      options.cacheDir !== undefined
        ? new RouteCache(join(options.cacheDir, 'routes.json'), () => this.routes.values())
        : undefined;
    this.http = new AdminHttp({
      host: options.httpHost ?? options.host,
      port: options.httpPort ?? 0,
      // The aggregate of the shards' latest figures (rebuilt when they report).
      registry: { metrics: () => this.registry.metrics(), contentType: Registry.PROMETHEUS_CONTENT_TYPE },
      health: () => this.health(),
    });
  }

  async start(): Promise<{ ports: number[]; httpPort: number }> {
    if (this.state !== 'new') throw new ClosedError('agent already started or closed');
    this.state = 'running';
    const portCount = this.opts.ports.length;
    const shardCount = Math.max(1, Math.min(this.opts.threads, portCount));
    const cached = this.cache?.load();
    if (cached?.problem) this.log.warn({ problem: cached.problem }, 'route cache ignored');
    for (const r of cached?.routes ?? []) this.routes.set(agentRouteKey(r.modid, r.cmdid), r);

    const ready: Array<Promise<number[]>> = [];
    for (let s = 0; s < shardCount; s++) {
      const portIndexes = portsOfShard(s, portCount, shardCount);
      const data: ShardWorkerData = {
        shard: s,
        shardCount,
        portCount,
        portIndexes,
        options: {
          ...stripped(this.opts),
          ports: portIndexes.map((i) => this.opts.ports[i] as number),
          cacheDir: undefined,
        },
        logLevel: this.opts.logLevel ?? process.env.LARS_LOG_LEVEL ?? 'info',
      };
      const worker = new Worker(this.opts.workerScript ?? new URL('./agent-worker.js', import.meta.url), {
        workerData: { larsAgentShard: data },
      });
      let readyResolve!: (ports: number[]) => void;
      let readyReject!: (err: Error) => void;
      ready.push(new Promise((res, rej) => ((readyResolve = res), (readyReject = rej))));
      const shard: Shard = {
        worker,
        port: undefined,
        health: undefined,
        metrics: undefined,
        closed: new Promise((resolve) => worker.once('exit', () => resolve())),
      };
      worker.on('message', (m: FromShard) => this.onShardMessage(shard, m, readyResolve));
      worker.once('exit', (code) =>
        readyReject(new WorkerError(`agent shard ${s} exited (code ${code}) before it was ready`)),
      );
      worker.on('error', (err) => {
        readyReject(new WorkerError(`agent shard ${s} failed: ${err.message}`, { cause: err }));
        // Before start() resolved the failure is start()'s to report; after, the agent cannot
        // serve the dead shard's routes, so the process exits for the supervisor to restart it.
        if (this.state === 'running' && this.started) {
          this.log.error(
            { err, shard: s },
            'agent shard thread died; exiting so the supervisor restarts the agent',
          );
          process.exitCode = 70;
          void this.destroy().finally(() => process.exit(70));
        }
      });
      this.shards.push(shard);
    }
    // A full mesh of channels between shards for forwarding.
    const meshes: Array<Array<MessagePort | null>> = this.shards.map(() => this.shards.map(() => null));
    for (let a = 0; a < shardCount; a++) {
      for (let b = a + 1; b < shardCount; b++) {
        const { port1, port2 } = new MessageChannel();
        meshes[a]![b] = port1;
        meshes[b]![a] = port2;
      }
    }
    this.shards.forEach((sh, i) => {
      const ports = meshes[i]!;
      sh.worker.postMessage(
        { t: 'siblings', ports } satisfies ToShard,
        ports.filter((p): p is MessagePort => p !== null),
      );
      const owned = [...this.routes.values()].filter((r) =>
        portsOfShard(i, portCount, shardCount).includes(ownerIndex(r, portCount)),
      );
      sh.worker.postMessage({ t: 'seed', routes: owned } satisfies ToShard);
    });
    let perShard: number[][];
    try {
      perShard = await Promise.all(ready);
    } catch (err) {
      await this.destroy();
      throw err;
    }
    this.started = true;
    this.boundPorts = new Array<number>(portCount);
    perShard.forEach((ports, s) =>
      portsOfShard(s, portCount, shardCount).forEach((gi, k) => (this.boundPorts[gi] = ports[k] as number)),
    );
    const httpPort = (await this.http.listen()).port;
    this.statsTimer = setInterval(() => this.pollStats(), STATS_EVERY_MS);
    this.statsTimer.unref();
    this.pollStats();
    this.log.info({ ports: this.boundPorts, threads: shardCount, httpPort }, 'agent listening');
    return { ports: [...this.boundPorts], httpPort };
  }

  get ports(): number[] {
    return [...this.boundPorts];
  }

  health(): Health {
    const hs = this.shards.map((s) => s.health).filter((h): h is Record<string, unknown> => h !== undefined);
    const sum = (k: string) => hs.reduce((a, h) => a + (Number(h[k]) || 0), 0);
    const worst = hs.some((h) => h.status !== 'ok') || hs.length < this.shards.length ? 'degraded' : 'ok';
    return {
      status: worst,
      threads: this.shards.length,
      dns: hs.every((h) => h.dns === 'connected') ? 'connected' : 'disconnected',
      routes: sum('routes'),
      staleRoutes: sum('staleRoutes'),
      hosts: sum('hosts'),
      idle: sum('idle'),
      overloaded: sum('overloaded'),
      registrations: sum('registrations'),
      ports: this.boundPorts,
    };
  }

  /**
   * Writes the last-known-good cache now (a replacement agent about to start loads it). False when
   * there is no cache or the write failed.
   */
  flushCache(): boolean {
    return this.cache?.flushNow() ?? false;
  }

  close(): Promise<void> {
    return this.shutdown(true);
  }

  destroy(): Promise<void> {
    return this.shutdown(false);
  }

  private async shutdown(graceful: boolean): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'closing';
    if (this.statsTimer) clearInterval(this.statsTimer);
    for (const s of this.shards) s.worker.postMessage({ t: 'close', graceful } satisfies ToShard);
    const deadline = setTimeout(
      () => this.shards.forEach((s) => void s.worker.terminate()),
      graceful ? 5_000 : 500,
    );
    await Promise.all(this.shards.map((s) => s.closed));
    clearTimeout(deadline);
    this.cache?.close();
    await this.http.close();
    this.state = 'closed';
  }

  private pollStats(): void {
    for (const s of this.shards) s.worker.postMessage({ t: 'stats' } satisfies ToShard);
  }

  private onShardMessage(shard: Shard, m: FromShard, ready: (ports: number[]) => void): void {
    switch (m.t) {
      case 'ready':
        ready(m.ports);
        break;
      case 'route':
        if (m.hosts)
          this.routes.set(agentRouteKey(m.modid, m.cmdid), {
            modid: m.modid,
            cmdid: m.cmdid,
            hosts: m.hosts,
          });
        else this.routes.delete(agentRouteKey(m.modid, m.cmdid));
        this.cache?.markDirty();
        break;
      case 'stats':
        shard.health = m.health;
        shard.metrics = m.metrics;
        if (this.shards.every((s) => s.metrics)) {
          this.registry = AggregatorRegistry.aggregate(this.shards.map((s) => s.metrics as object[]));
        }
        break;
      case 'closed':
        void shard.worker.terminate();
        break;
    }
  }
}

function ownerIndex(r: CachedRoute, portCount: number): number {
  return (((r.modid + r.cmdid) % portCount) + portCount) % portCount;
}

/** The options a shard can receive over structured clone (no logger, no functions). */
function stripped(o: ThreadedAgentOptions): ShardWorkerData['options'] {
  const {
    logger: _l,
    threads: _t,
    workerScript: _w,
    logLevel: _ll,
    httpHost: _hh,
    httpPort: _hp,
    ...rest
  } = o;
  return rest;
}
