import type { SubEntry } from './sublist.js';
import type { Proc } from './proc.js';

/** One subscription of a proc (seed Subscribe), indexed in the Sublist. */
export class BusSub implements SubEntry {
  /** Messages delivered to it. */
  msgs = 0;

  constructor(
    readonly proc: Proc,
    readonly sid: number,
    readonly subject: string,
    readonly queue: string,
    readonly exact: boolean,
  ) {}
}
