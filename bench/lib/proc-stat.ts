import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time and context switches of a process from /proc (Linux), summed over all its threads:
 * what issue 17 looks at to tell "preempted in the middle of its work" (involuntary switches) from
 * "waiting for work" (voluntary ones).
 */
export interface ProcSample {
  /** utime + stime of every thread, in clock ticks (USER_HZ, 100 on Linux). */
  cpuTicks: number;
  voluntary: number;
  involuntary: number;
  threads: number;
  rssKb: number;
  atMs: number;
}

const USER_HZ = 100;

export function sampleProc(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): the 12th and 13th are utime and stime.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuTicks = Number(f[11]) + Number(f[12]);
  let voluntary = 0;
  let involuntary = 0;
  let threads = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      voluntary += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(s)?.[1] ?? 0);
      involuntary += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(s)?.[1] ?? 0);
      threads++;
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  return { cpuTicks, voluntary, involuntary, threads, rssKb, atMs: performance.now() };
}

/** Between two samples: CPU share (1 = one full core) and switches per second. */
export function procDelta(
  a: ProcSample,
  b: ProcSample,
): { cpu: number; involuntaryPerS: number; voluntaryPerS: number } {
  const s = (b.atMs - a.atMs) / 1000;
  return {
    cpu: (b.cpuTicks - a.cpuTicks) / USER_HZ / s,
    involuntaryPerS: (b.involuntary - a.involuntary) / s,
    voluntaryPerS: (b.voluntary - a.voluntary) / s,
  };
}

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
