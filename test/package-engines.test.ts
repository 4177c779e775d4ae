import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

/**
 * Issue 16: the README promises Node >= 20, so `npm ci` must not warn EBADENGINE on Node 20: every
 * package the lock file installs declares an engines.node range that Node 20 satisfies (cookie 2.x
 * wants Node 22; package.json overrides it to 1.1.1, the same API @fastify/cookie calls).
 */
const require = createRequire(import.meta.url);
const semver = require('semver') as { satisfies(v: string, range: string): boolean };

describe('package-lock.json', () => {
  it('installs nothing that refuses Node 20', () => {
    const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8')) as {
      packages: Record<string, { version?: string; engines?: { node?: string } | string[] }>;
    };
    const refusing: string[] = [];
    for (const [path, p] of Object.entries(lock.packages)) {
      const range = Array.isArray(p.engines) ? undefined : p.engines?.node;
      if (!range) continue;
      for (const node of ['20.19.0'])
        if (!semver.satisfies(node, range)) refusing.push(`${path}@${p.version} (node ${range}; ${node})`);
    }
    expect(refusing).toEqual([]);
  });
});
