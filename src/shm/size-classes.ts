import { InvalidArgumentError } from '../errors.js';

/** One size class of the pool: `count` blocks of `size` bytes. */
export interface SizeClass {
  readonly size: number;
  readonly count: number;
}

/** The pool of DESIGN §10 / issue 12: 16 + 32 + 64 + 128 = 240 MiB. */
export const DEFAULT_CLASSES_SPEC = '4KiB:4096,64KiB:512,1MiB:64,16MiB:8';
/** Block sizes are multiples of this (cache-line aligned blocks). */
export const BLOCK_GRANULE = 64;
export const MAX_BLOCK_SIZE = 1024 ** 3;
export const MAX_BLOCKS_PER_CLASS = 1_000_000;
export const MAX_CLASSES = 32;

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** `4096`, `4KiB`, `64K`, `1MiB`, `1.5MiB` -> bytes (binary units; KB = KiB). */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new InvalidArgumentError(
      `${what}: expected a size like 4096, 64KiB or 1MiB, got ${JSON.stringify(text)}`,
    );
  }
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes))
    throw new InvalidArgumentError(`${what}: ${text} is not a whole number of bytes`);
  return bytes;
}

/** Bytes as the largest binary unit that divides them: 4096 -> 4KiB, 1536 -> 1536B... */
export function formatSize(bytes: number): string {
  for (const [unit, f] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= f && bytes % f === 0) return `${bytes / f}${unit}`;
  }
  return `${bytes}B`;
}

/**
 * Parses `SIZE:COUNT,...` (e.g. `4KiB:4096,1MiB:64`): sizes distinct multiples of 64 bytes up to
 * 1 GiB, counts 1..1,000,000, at most 32 classes. Returned sorted by size.
 */
export function parseClasses(spec: string, what = 'classes'): SizeClass[] {
  const parts = spec
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (parts.length === 0)
    throw new InvalidArgumentError(`${what}: expected SIZE:COUNT,... (e.g. ${DEFAULT_CLASSES_SPEC})`);
  if (parts.length > MAX_CLASSES)
    throw new InvalidArgumentError(`${what}: at most ${MAX_CLASSES} classes, got ${parts.length}`);
  const classes = parts.map((part) => {
    const [sizeText, countText, extra] = part.split(':');
    if (sizeText === undefined || countText === undefined || extra !== undefined) {
      throw new InvalidArgumentError(`${what}: expected SIZE:COUNT, got ${JSON.stringify(part)}`);
    }
    const size = parseSize(sizeText, `${what} ${part}`);
    if (size < BLOCK_GRANULE || size > MAX_BLOCK_SIZE || size % BLOCK_GRANULE !== 0) {
      throw new InvalidArgumentError(
        `${what} ${part}: block size must be a multiple of ${BLOCK_GRANULE} bytes between 64B and 1GiB`,
      );
    }
    if (!/^\s*\d+\s*$/.test(countText))
      throw new InvalidArgumentError(`${what} ${part}: count must be a whole number`);
    const count = Number(countText);
    if (count < 1 || count > MAX_BLOCKS_PER_CLASS) {
      throw new InvalidArgumentError(`${what} ${part}: count must be 1..${MAX_BLOCKS_PER_CLASS}`);
    }
    return { size, count };
  });
  classes.sort((a, b) => a.size - b.size);
  for (let i = 1; i < classes.length; i++) {
    if (classes[i]!.size === classes[i - 1]!.size) {
      throw new InvalidArgumentError(`${what}: size ${formatSize(classes[i]!.size)} appears twice`);
    }
  }
  return classes;
}

export function formatClasses(classes: readonly SizeClass[]): string {
  return classes.map((c) => `${formatSize(c.size)}:${c.count}`).join(',');
}

/** Bytes for people: 1536 -> "1.5 KiB", 25269084160 -> "23.5 GiB". */
export function humanSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : Number(v.toFixed(1))} ${units[i]}`;
}
