import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { HostInfo } from '../protocol/index.js';

/** One cached route: hosts in wire form (int32 ip). */
export interface CachedRoute {
  modid: number;
  cmdid: number;
  hosts: HostInfo[];
}

interface CacheFile {
  format: 'lars-agent-route-cache';
  version: 1;
  savedAt: number;
  routes: CachedRoute[];
}

/**
 * The agent's last-known-good route cache: a JSON file rewritten atomically (write to a temporary
 * file, then rename) at most once per `flushIntervalMs` after a route changed. An agent started
 * while dns is down answers from it; the routes are marked stale until dns confirms them.
 *
 * A missing, unreadable or malformed file loads as empty (and says why): a cache must never stop
 * the agent from starting.
 */
export class RouteCache {
  readonly path: string;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly flushIntervalMs: number;
  private readonly collect: () => Iterable<CachedRoute>;
  private closed = false;
  readonly stats = { saves: 0, saveErrors: 0 };
  lastError: Error | undefined;

  constructor(path: string, collect: () => Iterable<CachedRoute>, flushIntervalMs = 1_000) {
    this.path = path;
    this.collect = collect;
    this.flushIntervalMs = flushIntervalMs;
  }

  load(): { routes: CachedRoute[]; savedAt?: number; problem?: string } {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return { routes: [], ...(code === 'ENOENT' ? {} : { problem: (err as Error).message }) };
    }
    try {
      const data = JSON.parse(text) as CacheFile;
      if (data.format !== 'lars-agent-route-cache' || data.version !== 1 || !Array.isArray(data.routes)) {
        return { routes: [], problem: 'not a Lars agent route cache (format/version mismatch)' };
      }
      const routes = data.routes.filter(
        (r) =>
          Number.isInteger(r.modid) &&
          Number.isInteger(r.cmdid) &&
          Array.isArray(r.hosts) &&
          r.hosts.every((h) => Number.isInteger(h.ip) && Number.isInteger(h.port)),
      );
      return { routes, savedAt: data.savedAt };
    } catch (err) {
      return { routes: [], problem: `malformed JSON: ${(err as Error).message}` };
    }
  }

  /** Notes that routes changed; a save follows within flushIntervalMs. */
  markDirty(): void {
    if (this.closed) return;
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.flushIntervalMs);
    this.timer.unref();
  }

  /** Writes the cache now if anything changed. Never throws (errors are counted and kept). */
  flush(): void {
    if (!this.dirty) return;
    this.dirty = false;
    const file: CacheFile = {
      format: 'lars-agent-route-cache',
      version: 1,
      savedAt: Date.now(),
      routes: [...this.collect()],
    };
    const tmp = `${this.path}.${process.pid}.tmp`;
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      writeFileSync(tmp, JSON.stringify(file));
      renameSync(tmp, this.path);
      this.stats.saves++;
    } catch (err) {
      this.stats.saveErrors++;
      this.lastError = err as Error;
    }
  }

  /** Writes the whole cache now, changed or not; false when the write failed. */
  flushNow(): boolean {
    const before = this.stats.saveErrors;
    this.dirty = true;
    this.flush();
    return this.stats.saveErrors === before;
  }

  /** Flushes pending changes and stops the timer. Idempotent. */
  close(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.flush();
    this.closed = true;
  }
}
