/**
 * Self-registration benchmarks (issue 15).
 *
 *   npm run bench:registration                     # SQLite, 5 rounds
 *   node dist/bench/registration.js --db sqlite|mysql|postgres [--rounds 5] [--agents 4]
 *
 * Topology: two dns instances (each in its own process) sharing one database, AGENTS consumer agents
 * split between them and one producer agent, all subscribed to the route under test (which keeps
 * one manual host). Every round, interleaved:
 *
 *   anchor    a manual edit as `lars route add/rm` does it (store write + immediate-poll request):
 *             time until every consumer agent has the change;
 *   register  `lars.register()` on the producer's SDK -> every consumer agent serves the host
 *             (immediate poll: target <= 100 ms);  deregister -> gone everywhere (same bound);
 *   polling   the same with the lease-triggered immediate poll turned off, dns polling every 1 s
 *             (target <= 1.2 s);
 *   kill      a registering process SIGKILLed: watched by its agent (pid + start time), and not
 *             watched (ttl 2 s): time from the kill until every consumer agent dropped the host
 *             (target <= ttl + 1 s).
 *
 * Then: 1,000 registrations on one agent (frames dns receives per renewal interval; database cost
 * of one renewal batch) and a 1:3 weighted route (split over 10,000 picks through the SDK).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AgentService } from '../src/agent/agent-service.js';
import { DEFAULT_LOAD_BALANCE_CONFIG } from '../src/agent/lb-config.js';
import { LarsClient } from '../src/api/index.js';
import { DnsService } from '../src/dns/dns-service.js';
import { ipToNumber, ipToWire, type HostInfo } from '../src/protocol/index.js';
import { notifyDnsInstances, openStore, type Store } from '../src/store/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { benchBackend, BACKEND_LABEL, createBenchDatabase } from './lib/databases.js';
import { forkRole, fromParent, machineLine, nextMessage, stopChild, tellParent } from './lib/proc.js';
import { formatTable } from './lib/table.js';

const SELF = fileURLToPath(import.meta.url);
const HOST = '127.0.0.1';
const MODID = 42;
const CMDID = 7;
const BASE_PORT = 5000;
const args = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------- children

async function runDns(): Promise<void> {
  const store = await openStore(args.get('db') as string);
  const dns = new DnsService({
    store,
    host: HOST,
    port: 0,
    maxConnections: 1000,
    maxOutboundBytes: 16 << 20,
    pollIntervalMs: 1000,
    reloadIntervalMs: 3_600_000,
    changeRetentionS: 3600,
    leaseGraceMs: 1000,
    leaseSweepMs: 250,
    leaseImmediatePoll: args.get('immediate') !== 'false',
  });
  const addr = await dns.start();
  tellParent({ type: 'listening', port: addr.port });
  for (;;) {
    const m = await fromParent(['stop', 'stats']);
    if (m.type === 'stats') tellParent({ type: 'stats', ...dns.leaseStats });
    else break;
  }
  await dns.close();
  await store.close();
  process.exit(0);
}

/** A process that registers itself and waits to be killed. */
async function runRegistrant(): Promise<void> {
  const client = new LarsClient({ ports: (args.get('ports') as string).split(',').map(Number) });
  const reg = await client.register({
    modid: MODID,
    cmdid: CMDID,
    port: Number(args.get('port')),
    ttlS: Number(args.get('ttl')),
    watchProcess: args.get('watch') === 'true',
  });
  tellParent({ type: 'registered', watched: reg.watched });
  setInterval(() => undefined, 1 << 30);
}

// ---------------------------------------------------------------- main

interface Stack {
  store: Store;
  dnsProcs: ChildProcess[];
  producer: AgentService;
  consumers: AgentService[];
  sdk: LarsClient;
  /** Resolves when every consumer's route satisfies `ok`; rejects after timeoutMs. */
  until(ok: (hosts: readonly HostInfo[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

async function startStack(url: string, consumers: number, immediate: boolean): Promise<Stack> {
  const store = await openStore(url);
  const dnsProcs = [0, 1].map(() =>
    forkRole(SELF, ['--role', 'dns', '--db', url, '--immediate', String(immediate)]),
  );
  const ports = await Promise.all(
    dnsProcs.map((p) => nextMessage<{ type: string; port: number }>(p, 'listening', 30_000)),
  );
  const routes: Array<readonly HostInfo[]> = [];
  const waiters = new Set<() => void>();
  const mk = (dnsPort: number, i: number) =>
    new AgentService({
      host: HOST,
      ports: [0, 0, 0],
      dns: { host: HOST, port: dnsPort },
      reporter: undefined,
      lb: DEFAULT_LOAD_BALANCE_CONFIG,
      reportIntervalS: 1,
      cacheDir: undefined,
      callerIp: ipToWire('127.0.0.1'),
      http: false,
      backoff: { initialMs: 20, maxMs: 500, jitter: 0.2 },
      ...(i >= 0
        ? {
            onRouteChanged: (m: number, c: number, hosts: readonly HostInfo[] | undefined) => {
              if (m !== MODID || c !== CMDID) return;
              routes[i] = hosts ?? [];
              for (const w of [...waiters]) w();
            },
          }
        : {}),
    });
  const producer = mk(ports[0]!.port, -1);
  const cons = Array.from({ length: consumers }, (_, i) => mk(ports[i % 2]!.port, i));
  const bound = await producer.start();
  for (const c of cons) await c.start();
  // Every consumer asks for the route once: dns subscribes it, pushes follow.
  for (const c of cons) c.core.getRoute(MODID, CMDID);
  const sdk = new LarsClient({ host: HOST, ports: bound.ports, timeoutMs: 2000 });
  const until = (ok: (hosts: readonly HostInfo[]) => boolean, timeoutMs = 20_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (cons.every((_, i) => ok(routes[i] ?? []))) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`agents did not converge within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  await until((h) => h.some((x) => x.port === BASE_PORT));
  return {
    store,
    dnsProcs,
    producer,
    consumers: cons,
    sdk,
    until,
    async close() {
      await sdk.close();
      await Promise.all([producer, ...cons].map((a) => a.destroy()));
      await Promise.all(dnsProcs.map((p) => stopChild(p)));
      await store.close();
    },
  };
}

const has = (port: number) => (hosts: readonly HostInfo[]) => hosts.some((h) => h.port === port);
const lacks = (port: number) => (hosts: readonly HostInfo[]) => !hosts.some((h) => h.port === port);

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

function median(values: number[]): number {
  return pct(values, 50);
}

async function runMain(): Promise<void> {
  const backend = benchBackend(args.get('db') ?? 'sqlite');
  const rounds = numberArg(args, 'rounds', 5);
  const agents = numberArg(args, 'agents', 4);
  console.log(`self-registration bench on ${BACKEND_LABEL[backend]}; ${machineLine()}`);
  console.log(
    `${rounds} rounds; 2 dns processes sharing the database; ${agents} consumer agents + 1 producer\n`,
  );
  const db = await createBenchDatabase(backend);
  try {
    const setup = await openStore(db.url);
    await setup.migrate();
    await setup.addHost(MODID, CMDID, ipToNumber('10.0.0.1'), BASE_PORT);
    await setup.close();
    await latencyRounds(db.url, rounds, agents);
    await thousand(db.url);
    await weights(db.url);
  } finally {
    await db.drop();
  }
}

async function latencyRounds(url: string, rounds: number, agents: number): Promise<void> {
  const immediate = await startStack(url, agents, true);
  const polling = await startStack(url, agents, false);
  const m: Record<string, number[]> = {
    'anchor: manual add (lars route add)': [],
    'anchor: manual rm': [],
    'register (immediate poll)': [],
    'deregister (immediate poll)': [],
    'register (polling only)': [],
    'deregister (polling only)': [],
    'SIGKILL, watched process': [],
    'SIGKILL, ttl 2 s, not watched': [],
  };
  const ratios: number[] = [];
  let port = 6000;
  for (let r = 0; r < rounds; r++) {
    const p1 = port++;
    const anchorAdd = await timed(async () => {
      await immediate.store.addHost(MODID, CMDID, ipToNumber('10.0.0.2'), p1);
      await notifyDnsInstances(immediate.store);
      await immediate.until(has(p1));
    });
    m['anchor: manual add (lars route add)']!.push(anchorAdd);
    m['anchor: manual rm']!.push(
      await timed(async () => {
        await immediate.store.removeHost(MODID, CMDID, ipToNumber('10.0.0.2'), p1);
        await notifyDnsInstances(immediate.store);
        await immediate.until(lacks(p1));
      }),
    );
    const p2 = port++;
    let reg: Awaited<ReturnType<LarsClient['register']>> | undefined;
    const regMs = await timed(async () => {
      reg = await immediate.sdk.register({ modid: MODID, cmdid: CMDID, port: p2 });
      await immediate.until(has(p2));
    });
    m['register (immediate poll)']!.push(regMs);
    ratios.push(regMs / anchorAdd);
    m['deregister (immediate poll)']!.push(
      await timed(async () => {
        await reg!.deregister();
        await immediate.until(lacks(p2));
      }),
    );
    const p3 = port++;
    m['register (polling only)']!.push(
      await timed(async () => {
        reg = await polling.sdk.register({ modid: MODID, cmdid: CMDID, port: p3 });
        await polling.until(has(p3));
      }),
    );
    // Not right after the poll that showed the registration: a random phase, as in real life.
    await new Promise((r) => setTimeout(r, Math.random() * 1000));
    m['deregister (polling only)']!.push(
      await timed(async () => {
        await reg!.deregister();
        await polling.until(lacks(p3));
      }),
    );
    for (const watch of [true, false]) {
      const p4 = port++;
      const child = fork(
        SELF,
        [
          '--role',
          'registrant',
          '--ports',
          immediate.producer.ports.join(','),
          '--port',
          String(p4),
          '--ttl',
          '2',
          '--watch',
          String(watch),
        ],
        { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
      );
      await nextMessage(child, 'registered', 30_000);
      await immediate.until(has(p4));
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const t0 = performance.now();
      child.kill('SIGKILL');
      await exited;
      await immediate.until(lacks(p4));
      m[watch ? 'SIGKILL, watched process' : 'SIGKILL, ttl 2 s, not watched']!.push(performance.now() - t0);
    }
    process.stdout.write(`round ${r + 1}/${rounds} done\r`);
  }
  process.stdout.write('\n');
  await polling.close();
  await immediate.close();
  console.log(
    formatTable(
      ['scenario (time until every consumer agent has it)', 'p50 ms', 'p99 ms', 'max ms'],
      Object.entries(m).map(([k, v]) => [k, pct(v, 50), pct(v, 99), Math.max(...v)]),
    ),
  );
  console.log(`\nregister / manual add, median of per-round ratios: ${median(ratios).toFixed(2)}\n`);
}

async function thousand(url: string): Promise<void> {
  const s = await startStack(url, 1, true);
  try {
    const regs = [];
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++)
      regs.push(
        s.sdk.register({ modid: MODID, cmdid: CMDID + 1, port: 20_000 + i, ttlS: 3, watchProcess: false }),
      );
    await Promise.all(regs);
    const registerMs = performance.now() - t0;
    const stats = async () => {
      const all = await Promise.all(
        s.dnsProcs.map(async (p) => {
          p.send({ type: 'stats' });
          return nextMessage<{ type: string; batches: number; renewed: number }>(p, 'stats', 10_000);
        }),
      );
      return {
        frames: all.reduce((a, x) => a + x.batches, 0),
        renewed: all.reduce((a, x) => a + x.renewed, 0),
      };
    };
    // Let the registrations settle, then watch three renewal intervals (ttl 3 s: one per second).
    await new Promise((r) => setTimeout(r, 1500));
    const a0 = s.producer.registrationStats().batches;
    const d0 = await stats();
    await new Promise((r) => setTimeout(r, 3200));
    const a1 = s.producer.registrationStats().batches;
    const d1 = await stats();
    // Database cost of one 1,000-lease renewal batch, timed on the store directly.
    const leases = Array.from({ length: 1000 }, (_, i) => ({
      modid: MODID,
      cmdid: CMDID + 2,
      ip: ipToNumber('10.1.0.1'),
      port: 30_000 + i,
      weight: 1,
      ttlMs: 10_000,
    }));
    let queries = 0;
    const store = await openStore(url, { onQuery: () => void queries++ });
    await store.renewLeases({ agent: 'bench', renew: leases, remove: [], nowMs: Date.now(), dnsId: 'bench' });
    const times: number[] = [];
    let perBatch = 0;
    for (let i = 0; i < 10; i++) {
      queries = 0;
      times.push(
        await timed(async () => {
          await store.renewLeases({
            agent: 'bench',
            renew: leases,
            remove: [],
            nowMs: Date.now(),
            dnsId: 'bench',
          });
        }),
      );
      perBatch = queries;
    }
    await store.close();
    console.log(
      formatTable(
        ['1,000 registrations on one agent', 'value'],
        [
          ['register 1,000 through the SDK (ms)', registerMs],
          ['renewal batches the agent sent in ~3.2 s (ttl 3 s)', a1 - a0],
          ['LeaseBatch frames dns received in that time', d1.frames - d0.frames],
          ['lease renewals written in that time', d1.renewed - d0.renewed],
          ['database queries per 1,000-lease renewal batch', perBatch],
          ['one 1,000-lease renewal batch, p50 ms', pct(times, 50)],
          ['one 1,000-lease renewal batch, max ms', Math.max(...times)],
        ],
      ),
    );
    console.log('');
  } finally {
    await s.close();
  }
}

async function weights(url: string): Promise<void> {
  const s = await startStack(url, 1, true);
  try {
    await s.sdk.register({ modid: MODID, cmdid: CMDID + 3, port: 7001, weight: 1 });
    await s.sdk.register({ modid: MODID, cmdid: CMDID + 3, port: 7002, weight: 3 });
    const consumer = new LarsClient({ host: HOST, ports: s.consumers[0]!.ports, timeoutMs: 2000 });
    await consumer.regInit(MODID, CMDID + 3, { tries: 100, intervalMs: 20 });
    while ((await consumer.getRoute(MODID, CMDID + 3)).length < 2)
      await new Promise((r) => setTimeout(r, 20));
    const count = new Map<number, number>();
    for (let i = 0; i < 10_000; i++) {
      const h = await consumer.getHost(MODID, CMDID + 3);
      count.set(h.port, (count.get(h.port) ?? 0) + 1);
    }
    await consumer.close();
    const a = count.get(7001) ?? 0;
    const b = count.get(7002) ?? 0;
    console.log(
      `weights 1:3 over 10,000 picks through the SDK: ${a} : ${b} (${((100 * a) / 10_000).toFixed(2)} % / ${((100 * b) / 10_000).toFixed(2)} %)`,
    );
  } finally {
    await s.close();
  }
}

// Last: every function and constant above is initialised before a role runs.
switch (args.get('role') ?? 'main') {
  case 'dns':
    await runDns();
    break;
  case 'registrant':
    await runRegistrant();
    break;
  default:
    await runMain();
}
