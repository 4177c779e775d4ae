import { hostname } from 'node:os';
import type { Config } from '../../config/index.js';
import { ConfigError } from '../../errors.js';
import { checkSubject, checkSubscription } from '../wire/subject.js';

/** Headers the bridge stamps on what crosses it (loop prevention, issue 14). */
export const ORIGIN_HEADER = 'Lars-Origin';
export const HOPS_HEADER = 'Lars-Hops';
/** A message that crossed the bridge this many times is not exported again. */
export const BRIDGE_HOP_LIMIT = 2;
/** Reply headers of a request served through the bridge that failed (typed error at the far end). */
export const ERROR_HEADER = 'Lars-Error';
/** The far end of a forwarded request: how long the caller waits (the local request's timeout). */
export const TIMEOUT_HEADER = 'Lars-Timeout-Ms';
/** How long a request crossing the bridge waits when its caller's timeout is not known. */
export const BRIDGE_REQUEST_TIMEOUT_MS = 5_000;
/** Proc name of the bridge on its own bus. */
export const BRIDGE_PROC_NAME = 'lars-bridge';

/** `[bus.bridge]` validated: lists split, subjects checked, prefix defaulted. Frozen. */
export interface BridgeSettings {
  readonly url: string;
  readonly prefix: string;
  readonly exports: readonly string[];
  readonly imports: readonly string[];
  readonly serves: readonly string[];
  readonly forwards: readonly string[];
}

/** `lars.<host>`: the host name's first label, with characters a subject token cannot hold replaced. */
export function defaultPrefix(host = hostname()): string {
  const label = (host.split('.')[0] ?? '').replace(/[^A-Za-z0-9_-]/g, '_') || 'host';
  return `lars.${label}`;
}

function list(value: string, key: string, check: (s: string) => string | undefined): string[] {
  const out = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const s of out) {
    const bad = check(s);
    if (bad) throw new ConfigError(`[bus.bridge] ${key}: ${bad}`, { section: 'bus.bridge', key });
  }
  return out;
}

/** The bridge settings, or undefined when `[bus.bridge] url` is empty (no bridge). */
export function bridgeSettingsFromConfig(config: Config): BridgeSettings | undefined {
  const b = config['bus.bridge'];
  if (b.url === '') return undefined;
  if (!/^(nats|tls|ws|wss):\/\/./.test(b.url) && !/^[^/\s]+:\d+$/.test(b.url))
    throw new ConfigError(`[bus.bridge] url: expected nats://host:port, got ${JSON.stringify(b.url)}`, {
      section: 'bus.bridge',
      key: 'url',
    });
  const prefix = b.prefix || defaultPrefix();
  const bad = checkSubject(prefix, 'prefix');
  if (bad) throw new ConfigError(`[bus.bridge] prefix: ${bad}`, { section: 'bus.bridge', key: 'prefix' });
  return Object.freeze({
    url: b.url,
    prefix,
    exports: list(b.export, 'export', checkSubscription),
    imports: list(b.import, 'import', checkSubscription),
    serves: list(b.serve, 'serve', (s) => checkSubject(s, 'topic')),
    forwards: list(b.forward, 'forward', checkSubscription),
  });
}

/**
 * NATS subscriptions for a subject in local (hierarchical) syntax: `x` is `x` and `x.>`; a pattern
 * ending in `>` is itself.
 */
export function natsSubjects(local: string): string[] {
  return local === '>' || local.endsWith('.>') ? [local] : [local, `${local}.>`];
}
