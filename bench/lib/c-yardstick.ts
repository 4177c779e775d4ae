import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The C yardstick of issue 17 (bench/c): a lockstep client like the original `qps` tool and a
 * minimal UDP responder, compiled with the machine's `cc` into dist/bench/c-bin (build output,
 * ignored by git) the first time a benchmark needs them, and again whenever a source is newer.
 */
const HERE = dirname(fileURLToPath(import.meta.url));
/** bench/c in the source tree (this file runs from dist/bench/lib). */
const SOURCES = join(HERE, '..', '..', '..', 'bench', 'c');
const OUT = join(HERE, '..', 'c-bin');

export interface CTools {
  client: string;
  responder: string;
}

export function buildCTools(): CTools {
  mkdirSync(OUT, { recursive: true });
  const build = (name: string): string => {
    const src = join(SOURCES, `${name}.c`);
    const bin = join(OUT, name);
    const newest = Math.max(statSync(src).mtimeMs, statSync(join(SOURCES, 'lars_wire.h')).mtimeMs);
    if (!existsSync(bin) || statSync(bin).mtimeMs < newest) {
      execFileSync('cc', ['-O2', '-Wall', '-o', bin, src, '-lpthread'], { stdio: 'inherit' });
    }
    return bin;
  };
  return { client: build('qps_client'), responder: build('udp_responder') };
}

export interface QpsResult {
  calls: number;
  seconds: number;
  rate: number;
  timeouts: number;
  nohost: number;
  p50_us: number;
  p99_us: number;
  per_second: number[];
}

/** Runs the C client for `seconds` against `ports` (thread i: modid base + i, cmdid 1). */
export function runCClient(
  tools: CTools,
  o: { host: string; ports: readonly number[]; threads: number; seconds: number; modidBase?: number },
): Promise<QpsResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      tools.client,
      [o.host, o.ports.join(','), String(o.threads), String(o.seconds), String(o.modidBase ?? 1), '1'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`qps_client exited with code ${code}`));
      else resolve(JSON.parse(out) as QpsResult);
    });
  });
}

/** Starts the C responder on `ports`; resolves once every port is bound. */
export function startCResponder(
  tools: CTools,
  host: string,
  ports: readonly number[],
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(tools.responder, [host, ports.join(',')], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.once('data', () => resolve(child));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`udp_responder exited with code ${code}`)));
  });
}
