import { setFlagsFromString } from 'node:v8';

/**
 * Long-running services with small, steady live heaps (dns, the agent) ask V8 to favour size:
 * the old generation grows less eagerly and memory goes back to the system sooner (issue 17,
 * bench:footprint). Set at run time so that `lars dns` / `lars agent` started by hand get it too
 * (NODE_OPTIONS does not accept this flag); `lars up` also passes it on the command line.
 */
export function favourSmallHeap(): void {
  setFlagsFromString('--optimize-for-size');
}
