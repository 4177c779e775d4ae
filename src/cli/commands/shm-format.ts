import type { HoldersReport, ReclaimResult, ShmStat } from '../../shm/index.js';
import { formatSize, humanSize } from '../../shm/size-classes.js';

/** Left-aligned columns, two spaces apart. */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** `lars shm stat`. */
export function formatStat(s: ShmStat): string {
  const rows = [['CLASS', 'BLOCKS', 'FREE', 'USED', 'USED%']];
  for (const c of s.classes) {
    rows.push([
      formatSize(c.size),
      String(c.total),
      String(c.free),
      String(c.used),
      `${Math.round((100 * c.used) / c.total)}%`,
    ]);
  }
  return [
    `pool ${s.pool.name} (${humanSize(s.pool.size)}), generation ${s.generation}, daemon in ${s.daemonMode} mode`,
    ...table(rows),
    `connections ${s.connections}, processes ${s.processes}, batches in flight ${s.batches.inflight}, expired ${s.batches.expired}`,
  ].join('\n');
}

/** `lars shm holders`. */
export function formatHolders(r: HoldersReport): string {
  if (r.holders.length === 0) return `nobody is connected (generation ${r.generation})`;
  const rows = [['PID', 'NAME', 'CONNS', 'BLOCKS', 'BYTES', 'CLASSES', 'UNRECEIVED']];
  for (const h of r.holders) {
    rows.push([
      String(h.pid),
      h.name,
      String(h.connections),
      String(h.blocks),
      humanSize(h.bytes),
      h.classes.map((c) => `${formatSize(c.size)} x${c.blocks}`).join(', ') || '-',
      h.sent.batches ? `${h.sent.batches} batches, ${humanSize(h.sent.bytes)}` : '-',
    ]);
  }
  const b = r.inBatches;
  return [
    ...table(rows),
    ...(r.truncated ? ['(only the largest holders are listed)'] : []),
    `in batches: ${b.blocks} blocks (${humanSize(b.bytes)}) in ${b.batches} batches`,
  ].join('\n');
}

/** `lars shm reclaim PID`. */
export function formatReclaim(r: ReclaimResult): string {
  if (r.connections === 0 && r.batches === 0)
    return `pid ${r.pid} is not connected to lars shm: nothing to reclaim`;
  return (
    `reclaimed pid ${r.pid}: ${r.connections} connection${r.connections === 1 ? '' : 's'} cut, ` +
    `${r.blocks} blocks (${humanSize(r.bytes)}) released, ${r.batches} batch${r.batches === 1 ? '' : 'es'} addressed to it released`
  );
}
