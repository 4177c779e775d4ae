/**
 * How fast the bus notices dead and hung procs (issue 13 targets), on the bus's own clock:
 *
 *   npm run bench:bus-liveness                 # 20 kills, 3 hangs, default offline 3000 / kill 9000 ms
 *   node dist/bench/bus-liveness.js --kills 50 --hangs 5 --offline-ms 1000
 *
 * kill: a client process is SIGKILLed; the time from the kill (parent's clock) to the bus marking
 * the proc offline (socket closed). Target: within 100 ms.
 * hang: a client process is SIGSTOPped (connected, silent); how long after its last frame the bus
 * marks it offline and removes it (killme). Targets: offline_ms ± 300 ms and kill_ms ± 300 ms.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { BusClient } from '../src/bus/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { runObservedBus, type ProcEvent } from './lib/bus-observer.js';
import { forkRole, fromParent, machineLine, nextMessage, stopChild, tellParent } from './lib/proc.js';
import { formatTable } from './lib/table.js';

const SELF = fileURLToPath(import.meta.url);
const args = parseArgs(process.argv.slice(2));

switch (args.get('role') ?? 'main') {
  case 'bus':
    await runObservedBus(args.get('socket')!, {
      offlineMs: numberArg(args, 'offline-ms', 3000),
    });
    break;
  case 'victim': {
    const bus = await BusClient.connect({
      name: args.get('name')!,
      socket: args.get('socket')!,
      reconnect: false,
    });
    await bus.flush();
    tellParent({ type: 'ready' });
    await fromParent('stop');
    await bus.close();
    process.exit(0);
    break;
  }
  default:
    await runMain();
}

function waitEvent(bus: ChildProcess, name: string, to: string, timeoutMs: number): Promise<ProcEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      bus.off('message', on);
      reject(new Error(`no '${to}' for ${name} within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (m: ProcEvent): void => {
      if (m?.type === 'procEvent' && m.name === name && m.to === to) {
        clearTimeout(timer);
        bus.off('message', on);
        resolve(m);
      }
    };
    bus.on('message', on);
  });
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

async function runMain(): Promise<void> {
  const kills = numberArg(args, 'kills', 20);
  const hangs = numberArg(args, 'hangs', 3);
  const offlineMs = numberArg(args, 'offline-ms', 3000);
  const killMs = offlineMs * 3;
  const dir = mkdtempSync('/tmp/lars-bl-');
  const socket = join(dir, 'bus.sock');
  const bus = forkRole(SELF, ['--role', 'bus', '--socket', socket, '--offline-ms', String(offlineMs)]);
  await nextMessage(bus, 'listening', 15_000);
  console.log(`bus liveness: ${machineLine()}; offline_ms ${offlineMs}, kill_ms ${killMs}`);
  const killLat: number[] = [];
  const offlineAt: number[] = [];
  const removedAt: number[] = [];
  try {
    for (let i = 0; i < kills; i++) {
      const name = `victim-k${i}`;
      const v = forkRole(SELF, ['--role', 'victim', '--socket', socket, '--name', name]);
      await nextMessage(v, 'ready', 15_000);
      const offline = waitEvent(bus, name, 'offline', 5_000);
      const t0 = performance.timeOrigin + performance.now();
      v.kill('SIGKILL');
      killLat.push((await offline).wallMs - t0);
    }
    for (let i = 0; i < hangs; i++) {
      const name = `victim-h${i}`;
      const v = forkRole(SELF, ['--role', 'victim', '--socket', socket, '--name', name]);
      await nextMessage(v, 'ready', 15_000);
      const offline = waitEvent(bus, name, 'offline', killMs * 2);
      const killme = waitEvent(bus, name, 'killme', killMs * 2);
      v.kill('SIGSTOP');
      offlineAt.push((await offline).silentMs);
      removedAt.push((await killme).silentMs);
      v.kill('SIGKILL');
      v.kill('SIGCONT');
    }
  } finally {
    await stopChild(bus);
    rmSync(dir, { recursive: true, force: true });
  }
  const rows: (string | number)[][] = [];
  if (killLat.length)
    rows.push([
      'SIGKILL -> offline (ms after the kill)',
      killLat.length,
      pct(killLat, 50),
      pct(killLat, 99),
      Math.max(...killLat),
      '<= 100',
    ]);
  if (offlineAt.length)
    rows.push([
      'SIGSTOP -> offline (ms after last frame)',
      offlineAt.length,
      pct(offlineAt, 50),
      pct(offlineAt, 99),
      Math.max(...offlineAt),
      `${offlineMs} ± 300`,
    ]);
  if (removedAt.length)
    rows.push([
      'SIGSTOP -> removed (ms after last frame)',
      removedAt.length,
      pct(removedAt, 50),
      pct(removedAt, 99),
      Math.max(...removedAt),
      `${killMs} ± 300`,
    ]);
  console.log(formatTable(['event', 'n', 'p50', 'p99', 'max', 'target'], rows));
  const ok =
    killLat.every((x) => x <= 100) &&
    offlineAt.every((x) => Math.abs(x - offlineMs) <= 300) &&
    removedAt.every((x) => Math.abs(x - killMs) <= 300);
  console.log(`liveness targets: ${ok ? 'MET' : 'NOT MET'}`);
}
