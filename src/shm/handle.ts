import { ErrorCode, ShmError } from '../errors.js';

/**
 * A reference to one block of the pool, as the daemon hands it out: the pool generation (changes
 * with every daemon start), the global block index, the block's use generation (changes with every
 * allocation of the block, so a handle of an earlier use is stale) and the length asked for.
 * 16 bytes on the wire; `encodeHandle`/`decodeHandle` carry it through other channels (the bus).
 */
export interface ShmHandle {
  readonly pool: number;
  readonly block: number;
  readonly gen: number;
  readonly len: number;
}

export const HANDLE_BYTES = 16;

export function writeHandle(out: Buffer, at: number, h: ShmHandle): void {
  out.writeUInt32LE(h.pool >>> 0, at);
  out.writeUInt32LE(h.block >>> 0, at + 4);
  out.writeUInt32LE(h.gen >>> 0, at + 8);
  out.writeUInt32LE(h.len >>> 0, at + 12);
}

export function readHandle(b: Buffer, at: number): ShmHandle {
  return {
    pool: b.readUInt32LE(at),
    block: b.readUInt32LE(at + 4),
    gen: b.readUInt32LE(at + 8),
    len: b.readUInt32LE(at + 12),
  };
}

export function encodeHandle(h: ShmHandle): Buffer {
  const out = Buffer.allocUnsafe(HANDLE_BYTES);
  writeHandle(out, 0, h);
  return out;
}

export function decodeHandle(bytes: Uint8Array): ShmHandle {
  if (bytes.byteLength !== HANDLE_BYTES) {
    throw new ShmError(
      ErrorCode.SHM_INVALID_ARGUMENT,
      `a handle is ${HANDLE_BYTES} bytes, got ${bytes.byteLength}`,
    );
  }
  return readHandle(Buffer.from(bytes.buffer, bytes.byteOffset, HANDLE_BYTES), 0);
}

export function handleText(h: ShmHandle): string {
  return `${h.pool}:${h.block}:${h.gen}`;
}
