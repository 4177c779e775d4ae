import { ErrorCode, ShmError } from '../errors.js';
import type { SizeClass } from './size-classes.js';

/**
 * Where everything lives in the pool segment: a 4 KiB header page, then one region per size class
 * (segregated blocks: deterministic, no fragmentation). Regions start on 4 KiB boundaries, so a
 * block's natural alignment is the largest power of two dividing its class size, up to 4096.
 * Pure arithmetic and byte layout, no I/O.
 *
 * Header (little-endian): magic "LARSSHM1", u32 layout version, u32 generation, f64 pool size,
 * u32 daemon pid, u32 class count, then per class u32 size, u32 count, f64 offset. The pid lets a
 * starting daemon remove segments whose daemon died without cleaning up (killed with -9). Clients check magic, version and
 * generation against the daemon's HELLO before they trust a mapping.
 */
export const HEADER_BYTES = 4096;
export const PAGE = 4096;
export const MAGIC = 'LARSSHM1';
export const LAYOUT_VERSION = 1;
/** Largest `align` an allocation may ask for. */
export const MAX_ALIGN = 4096;

export interface ClassLayout {
  readonly index: number;
  readonly size: number;
  readonly count: number;
  /** Byte offset of the class region in the segment. */
  readonly offset: number;
  /** Global index of the class's first block. */
  readonly firstBlock: number;
  /** Every block of the class starts on a multiple of this. */
  readonly align: number;
}

export interface PoolLayout {
  readonly classes: readonly ClassLayout[];
  /** Segment size in bytes (header included). */
  readonly size: number;
  readonly blocks: number;
}

export function naturalAlign(size: number): number {
  let a = 1;
  while (a < MAX_ALIGN && size % (a * 2) === 0) a *= 2;
  return a;
}

export function layoutPool(classes: readonly SizeClass[]): PoolLayout {
  let offset = HEADER_BYTES;
  let firstBlock = 0;
  const out: ClassLayout[] = [];
  classes.forEach((c, index) => {
    out.push({ index, size: c.size, count: c.count, offset, firstBlock, align: naturalAlign(c.size) });
    offset = Math.ceil((offset + c.size * c.count) / PAGE) * PAGE;
    firstBlock += c.count;
  });
  return { classes: out, size: offset, blocks: firstBlock };
}

/** The class of a global block index (classes are few: a linear scan). */
export function classOfBlock(layout: PoolLayout, block: number): ClassLayout | undefined {
  if (!Number.isInteger(block) || block < 0 || block >= layout.blocks) return undefined;
  const cs = layout.classes;
  for (let i = cs.length - 1; i >= 0; i--) if (block >= cs[i]!.firstBlock) return cs[i];
  return undefined;
}

/** Byte offset of a block in the segment. */
export function blockOffset(cls: ClassLayout, block: number): number {
  return cls.offset + (block - cls.firstBlock) * cls.size;
}

export function writeHeader(
  layout: PoolLayout,
  generation: number,
  out: Uint8Array,
  daemonPid = process.pid,
): void {
  const b = Buffer.from(out.buffer, out.byteOffset, HEADER_BYTES);
  b.fill(0);
  b.write(MAGIC, 0, 'latin1');
  b.writeUInt32LE(LAYOUT_VERSION, 8);
  b.writeUInt32LE(generation >>> 0, 12);
  b.writeDoubleLE(layout.size, 16);
  b.writeUInt32LE(daemonPid, 24);
  b.writeUInt32LE(layout.classes.length, 28);
  let at = 32;
  for (const c of layout.classes) {
    b.writeUInt32LE(c.size, at);
    b.writeUInt32LE(c.count, at + 4);
    b.writeDoubleLE(c.offset, at + 8);
    at += 16;
  }
}

/** Checks a mapped header against what the daemon announced; throws SHM_POOL when it differs. */
export function checkHeader(header: Uint8Array, layout: PoolLayout, generation: number, name: string): void {
  const b = Buffer.from(header.buffer, header.byteOffset, Math.min(header.byteLength, HEADER_BYTES));
  const fail = (what: string): never => {
    throw new ShmError(ErrorCode.SHM_POOL, `segment ${name}: ${what}`);
  };
  if (b.length < HEADER_BYTES) fail('shorter than its header');
  if (b.toString('latin1', 0, 8) !== MAGIC) fail('not a Lars shared-memory pool (bad magic)');
  if (b.readUInt32LE(8) !== LAYOUT_VERSION)
    fail(`layout version ${b.readUInt32LE(8)}, expected ${LAYOUT_VERSION}`);
  if (b.readUInt32LE(12) !== generation >>> 0)
    fail(`generation ${b.readUInt32LE(12)}, expected ${generation}`);
  if (b.readDoubleLE(16) !== layout.size) fail(`size ${b.readDoubleLE(16)}, expected ${layout.size}`);
  if (b.readUInt32LE(28) !== layout.classes.length) fail('class table differs');
}

/** The daemon pid recorded in a header, or undefined when the bytes are not a Lars pool header. */
export function headerDaemonPid(header: Uint8Array): number | undefined {
  if (header.byteLength < 32) return undefined;
  const b = Buffer.from(header.buffer, header.byteOffset, 32);
  if (b.toString('latin1', 0, 8) !== MAGIC) return undefined;
  return b.readUInt32LE(24);
}

/**
 * POSIX name of a pool segment: `/lars-shm-<uid>-<tag>-<generation>`; `tag` distinguishes daemons of
 * one user (a hash of the socket path), so a restarting daemon removes only its own old segments.
 */
export function segmentName(uid: number, tag: string, generation: number): string {
  return `/lars-shm-${uid}-${tag}-${generation}`;
}

/** Parses a segment file name (without the leading '/') of `uid` and `tag`; its generation or undefined. */
export function segmentGeneration(fileName: string, uid: number, tag: string): number | undefined {
  const prefix = `lars-shm-${uid}-${tag}-`;
  if (!fileName.startsWith(prefix)) return undefined;
  const rest = fileName.slice(prefix.length);
  return /^\d{1,10}$/.test(rest) ? Number(rest) : undefined;
}
