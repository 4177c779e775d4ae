import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
// @ts-expect-error -- a plain .mjs build script, no declarations
import { changedSources } from '../scripts/start.mjs';

/** Issue 16: `npm start` rebuilds only when a source is newer than the last build's stamp. */
describe('npm start: is dist up to date?', () => {
  it('lists the sources newer than dist/.build-stamp, all of them before any build', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lars-start-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'src/cli'), { recursive: true });
    mkdirSync(join(dir, 'dist'));
    const file = (p: string, mtimeS: number) => {
      writeFileSync(join(dir, p), 'x');
      utimesSync(join(dir, p), mtimeS, mtimeS);
    };
    file('src/cli/main.ts', 1_000);
    file('package.json', 1_000);
    const list = changedSources as (d: string) => string[];
    expect(list(dir).sort()).toEqual(['package.json', 'src/cli/main.ts']);
    file('dist/.build-stamp', 2_000);
    expect(list(dir)).toEqual([]);
    file('src/cli/main.ts', 3_000);
    expect(list(dir)).toEqual(['src/cli/main.ts']);
  });
});
