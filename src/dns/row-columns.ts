/**
 * Route rows of a full reload as int32 columns (route number, wire ip, port) in fixed-size blocks
 * of typed arrays: 12 bytes a row outside the JS heap, where a row object or a per-route number
 * array would be promoted into the old generation and keep dns's heap grown after every reload
 * (issue 17). Blocks rather than one doubling array: growing never copies the table.
 */
export class RowColumns {
  private blocks: Int32Array[] = [];
  private _length = 0;

  get length(): number {
    return this._length;
  }

  push(route: number, ip: number, port: number): void {
    const at = (this._length & BLOCK_MASK) * 3;
    if (at === 0) this.blocks.push(new Int32Array(BLOCK_ROWS * 3));
    const block = this.blocks[this.blocks.length - 1] as Int32Array;
    block[at] = route;
    block[at + 1] = ip;
    block[at + 2] = port;
    this._length++;
  }

  route(row: number): number {
    return this.at(row, 0);
  }

  ip(row: number): number {
    return this.at(row, 1);
  }

  port(row: number): number {
    return this.at(row, 2);
  }

  clear(): void {
    this.blocks = [];
    this._length = 0;
  }

  private at(row: number, column: number): number {
    return (this.blocks[row >>> BLOCK_SHIFT] as Int32Array)[(row & BLOCK_MASK) * 3 + column] as number;
  }
}

const BLOCK_SHIFT = 13;
/** 8192 rows: 96 KiB a block. */
const BLOCK_ROWS = 1 << BLOCK_SHIFT;
const BLOCK_MASK = BLOCK_ROWS - 1;
