/**
 * Soak: no false offline with both cores busy (issue 13).
 *
 *   npm run bench:bus-soak                         # 10 minutes, 2 busy loops, 4 processes x 8 clients
 *   node dist/bench/bus-soak.js --duration 60 --busy 2 --procs 4 --clients 8
 *
 * The bus runs with its defaults (offline 3000 ms, heartbeat 1000 ms, kill 9000 ms) while `--busy`
 * processes spin at 100% CPU. Each client process holds `--clients` bus clients: every client
 * subscribes, serves a topic and publishes a few messages a second; one client per process also
 * sends requests. A client that is alive and connected must never be declared offline: the bus
 * reports every state change, and any 'offline' of a live client is a failure. Requests must never
 * time out.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BusClient } from '../src/bus/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { runObservedBus, type ProcEvent } from './lib/bus-observer.js';
import { Histogram } from './lib/histogram.js';
import {
  forkRole,
  fromParent,
  machineLine,
  nextMessage,
  stopChild,
  tellParent,
  type BenchMessage,
} from './lib/proc.js';

const SELF = fileURLToPath(import.meta.url);
const args = parseArgs(process.argv.slice(2));

switch (args.get('role') ?? 'main') {
  case 'bus':
    await runObservedBus(args.get('socket')!, {});
    break;
  case 'busy':
    await runBusy();
    break;
  case 'clients':
    await runClients();
    break;
  default:
    await runMain();
}

async function runBusy(): Promise<void> {
  let stop = false;
  process.on('message', (m: BenchMessage) => {
    if (m?.type === 'stop') stop = true;
  });
  tellParent({ type: 'ready' });
  // Spin in slices so the stop message can get through.
  while (!stop) {
    const end = Date.now() + 50;
    while (Date.now() < end) {
      /* spin */
    }
    await new Promise((r) => setImmediate(r));
  }
  process.exit(0);
}

async function runClients(): Promise<void> {
  const socket = args.get('socket')!;
  const n = numberArg(args, 'clients', 8);
  const id = args.get('id') ?? '0';
  const clients: BusClient[] = [];
  let stateChanges = 0;
  let received = 0;
  for (let i = 0; i < n; i++) {
    const c = await BusClient.connect({ name: `soak-${id}-${i}`, socket });
    c.on('state', () => stateChanges++);
    c.subscribe(`soak.${id}`, { callback: () => received++ });
    c.serve(`soak.svc.${id}.${i}`, (req) => req.data);
    clients.push(c);
  }
  await Promise.all(clients.map((c) => c.flush()));
  tellParent({ type: 'ready' });
  let running = true;
  let published = 0;
  let requests = 0;
  let failures = 0;
  const hist = new Histogram();
  const pubTimer = setInterval(() => {
    for (const c of clients) {
      c.publish(`soak.${id}.tick`, 'x');
      published++;
    }
  }, 250);
  const requester = (async () => {
    const c = clients[0]!;
    let k = 0;
    while (running) {
      const t0 = performance.now();
      try {
        await c.request(`soak.svc.${id}.${k++ % n}`, 'ping', { timeoutMs: 2_000 });
        hist.record((performance.now() - t0) * 1e6);
        requests++;
      } catch {
        failures++;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  await fromParent('stop');
  running = false;
  clearInterval(pubTimer);
  await requester;
  tellParent({
    type: 'result',
    stateChanges,
    received,
    published,
    requests,
    failures,
    p99Ms: hist.percentile(99) / 1e6,
    maxMs: hist.max / 1e6,
  });
  await Promise.all(clients.map((c) => c.close()));
  process.exit(0);
}

interface ClientsResult extends BenchMessage {
  stateChanges: number;
  received: number;
  published: number;
  requests: number;
  failures: number;
  p99Ms: number;
  maxMs: number;
}

async function runMain(): Promise<void> {
  const durationS = numberArg(args, 'duration', 600);
  const busyN = numberArg(args, 'busy', 2);
  const procs = numberArg(args, 'procs', 4);
  const clientsPer = numberArg(args, 'clients', 8);
  const dir = mkdtempSync('/tmp/lars-soak-');
  const socket = join(dir, 'bus.sock');
  const bus = forkRole(SELF, ['--role', 'bus', '--socket', socket]);
  await nextMessage(bus, 'listening', 15_000);
  const events: ProcEvent[] = [];
  bus.on('message', (m: ProcEvent) => {
    if (m?.type === 'procEvent') events.push(m);
  });
  const busy = Array.from({ length: busyN }, () => forkRole(SELF, ['--role', 'busy']));
  await Promise.all(busy.map((b) => nextMessage(b, 'ready', 15_000)));
  const workers = Array.from({ length: procs }, (_, i) =>
    forkRole(SELF, [
      '--role',
      'clients',
      '--socket',
      socket,
      '--id',
      String(i),
      '--clients',
      String(clientsPer),
    ]),
  );
  await Promise.all(workers.map((w) => nextMessage(w, 'ready', 60_000)));
  const t0 = Date.now();
  const live = events.length;
  console.log(
    `bus soak: ${machineLine()}; ${durationS} s, ${busyN} busy loops, ${procs} processes x ${clientsPer} clients, defaults (offline 3000 ms, heartbeat 1000 ms)`,
  );
  const loads: string[] = [];
  const loadTimer = setInterval(() => loads.push((loadavg()[0] ?? 0).toFixed(1)), 60_000);
  await new Promise((r) => setTimeout(r, durationS * 1000));
  clearInterval(loadTimer);
  // Every state change while the clients were alive and connected counts (not their closing).
  const falseOffline = events.slice(live).filter((e) => e.to === 'offline' || e.to === 'killme');
  const results = workers.map((w) => nextMessage<ClientsResult>(w, 'result', 30_000));
  for (const w of workers) w.send({ type: 'stop' });
  const res = await Promise.all(results);
  await Promise.all([...workers, ...busy].map((c) => stopChild(c)));
  await stopChild(bus);
  rmSync(dir, { recursive: true, force: true });
  const sum = (k: keyof ClientsResult): number => res.reduce((n, r) => n + (r[k] as number), 0);
  console.log(
    `ran ${Math.round((Date.now() - t0) / 1000)} s; 1-minute load average, each minute: ${loads.join(', ') || loadavg()[0]?.toFixed(1)}`,
  );
  console.log(
    `clients: ${procs * clientsPer}; published ${sum('published')}, delivered ${sum('received')}; requests ${sum('requests')} (failed ${sum('failures')}, worst p99 ${Math.max(...res.map((r) => r.p99Ms)).toFixed(1)} ms, max ${Math.max(...res.map((r) => r.maxMs)).toFixed(1)} ms); client state changes ${sum('stateChanges')}`,
  );
  console.log(`false offline (a live client declared offline or removed): ${falseOffline.length}`);
  for (const e of falseOffline.slice(0, 10))
    console.log(`  ${e.name} -> ${e.to} (${e.why}, silent ${Math.round(e.silentMs)} ms)`);
  const ok = falseOffline.length === 0 && sum('failures') === 0 && sum('stateChanges') === 0;
  console.log(`soak: ${ok ? 'PASS' : 'FAIL'}`);
}
