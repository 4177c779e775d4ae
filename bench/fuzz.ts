/**
 * Fuzz under load (issue 11, item 7): at least 1M random and mutated frames (datagrams, HTTP
 * requests) thrown at each service port of a running `lars up` while a steady client uses it.
 *
 *   npm run bench:fuzz                       # 1,000,000 per service
 *   node dist/bench/fuzz.js --count 200000 --targets dns,agent --seed 7
 *
 * One stack (dns, reporter, console, agent; one worker each). For each target in turn a fuzz process
 * (this file, `--role fuzz`) throws `--count` inputs at its port while this process runs the steady
 * client; printed per target: the inputs and their rate, the steady client's success rate, the
 * service's counters (what it cut, dropped, skipped) and the RSS of every worker before and after.
 *
 * Inputs: TCP (dns, reporter) on 16 connections at a time, each a burst of 1-500 frames (valid
 * requests with random ids, unknown msgids, bodies with flipped bits), half of them ended by one the
 * server cuts for (a random body, a bad length (negative, > 65527), random bytes, a frame cut short),
 * plus 32 connections that stall in a frame and 32 that say nothing, held until the server cuts them
 * (the stack runs with header_timeout 2 s and handshake_timeout 5 s so that happens within the phase). UDP (agent): valid requests with
 * random ids, flipped bits, random lengths and bytes, wrong sizes, 2-64 KB junk. HTTP (console):
 * pipelined requests with mutated methods, paths, headers and bodies, and raw garbage.
 * Steady clients: dns lockstep GetRoute(1, 1) (answer within 2 s); reporter one report every 10 ms
 * (success = its rows in ServerCallStatus afterwards); agent SDK getHost(1, 1) every 2 ms (SDK
 * timeout 1 s); console GET /healthz every 20 ms (2 s).
 */
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { LarsClient } from '../src/api/index.js';
import { encodeFrame, encodeMessage, MsgId } from '../src/protocol/index.js';
import { openStore } from '../src/store/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import {
  forkRole,
  fromParent,
  machineLine,
  nextMessage,
  stopChild,
  tellParent,
  type BenchMessage,
} from './lib/proc.js';
import {
  cpuMs,
  freeUdpPorts,
  metricValue,
  rssMiB,
  stackIni,
  startBenchStack,
  type BenchStack,
} from './lib/stack.js';
import { formatTable } from './lib/table.js';

type Target = 'dns' | 'reporter' | 'agent' | 'web';
const SELF = fileURLToPath(import.meta.url);
const args = parseArgs(process.argv.slice(2));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Outside the fuzzer's random ids (-100..1899), so the steady client's rows are its own. */
const STEADY_MODID = 5_000_000;

// ------------------------------------------------------------------------------ random inputs

/** xorshift32: reproducible inputs for a given --seed. */
let seed = numberArg(args, 'seed', 1) | 0 || 1;
function rnd(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
}
const int = (n: number) => Math.floor(rnd() * n);
function bytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return b;
}
function header(msgid: number, len: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeInt32LE(msgid, 0);
  h.writeInt32LE(len, 4);
  return h;
}
function flip(frame: Buffer): Buffer {
  const b = Buffer.from(frame);
  for (let k = 1 + int(3); k > 0; k--) {
    const i = 8 + int(Math.max(1, b.length - 8));
    if (i < b.length) b[i]! ^= 1 << int(8);
  }
  return b;
}
const randomId = () => int(2_000) - 100;

function validTcp(target: Target): Buffer {
  if (target === 'reporter') {
    const results = Array.from({ length: 1 + int(5) }, () => ({
      ip: int(2 ** 31),
      port: int(65536),
      succ: int(1000),
      err: int(10),
      overload: int(2) === 1,
    }));
    const msg = { modid: randomId(), cmdid: randomId(), caller: int(2 ** 31), results, ts: int(2 ** 31) };
    return encodeFrame(MsgId.ReportStatusRequest, encodeMessage(MsgId.ReportStatusRequest, msg));
  }
  return encodeFrame(
    MsgId.GetRouteRequest,
    encodeMessage(MsgId.GetRouteRequest, { modid: randomId(), cmdid: randomId() }),
  );
}

function validUdp(): Buffer {
  switch (int(3)) {
    case 0:
      return encodeFrame(
        MsgId.GetHostRequest,
        encodeMessage(MsgId.GetHostRequest, { seq: int(2 ** 31), modid: randomId(), cmdid: randomId() }),
      );
    case 1:
      return encodeFrame(
        MsgId.ReportRequest,
        encodeMessage(MsgId.ReportRequest, {
          modid: randomId(),
          cmdid: randomId(),
          host: { ip: int(2 ** 31), port: int(65536) },
          retcode: int(3),
          timecost_ms: int(5000),
        }),
      );
    default:
      return encodeFrame(
        MsgId.ApiGetRouteRequest,
        encodeMessage(MsgId.ApiGetRouteRequest, { modid: randomId(), cmdid: randomId() }),
      );
  }
}

/** An input that keeps the connection open (the server skips it or answers it). */
function tcpInput(target: Target): Buffer {
  const r = int(100);
  if (r < 60) return validTcp(target);
  if (r < 95) {
    const body = bytes(int(64));
    return Buffer.concat([header(100 + int(10_000), body.length), body]);
  }
  // Flipped bits: often still one frame that decodes; otherwise a bad body, which ends the connection.
  return flip(validTcp(target));
}

/** An input that ends the connection: the server cuts it for a protocol violation. */
function fatalTcpInput(target: Target): Buffer {
  const r = int(100);
  if (r < 30) {
    const body = bytes(1 + int(200));
    return Buffer.concat([header(target === 'reporter' ? 3 : 1, body.length), body]);
  }
  if (r < 55) return header(int(10), int(2) ? -1 - int(2 ** 30) : 65_528 + int(2 ** 30));
  if (r < 80) return bytes(1 + int(64));
  const v = validTcp(target);
  return v.subarray(0, 1 + int(v.length - 1));
}

function udpInput(): Buffer {
  const r = int(100);
  if (r < 10) return validUdp();
  if (r < 40) return flip(validUdp());
  if (r < 70) return bytes(int(200));
  if (r < 95) {
    const v = validUdp();
    return int(2) ? v.subarray(0, int(v.length)) : Buffer.concat([v, bytes(1 + int(16))]);
  }
  return bytes(2_048 + int(63_000));
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'GE T', 'XYZZY', ''];
const PATHS = [
  '/',
  '/healthz',
  '/api/routes',
  '/api/login',
  '/api/session',
  '/login',
  '/app.css',
  '/%zz',
  '/' + 'a'.repeat(3000),
  '/api/routes/1/1',
];
function httpInput(): Buffer {
  if (int(100) < 10) return bytes(1 + int(300));
  const method = METHODS[int(METHODS.length)]!;
  const path = PATHS[int(PATHS.length)]! + (int(4) === 0 ? `?${bytes(8).toString('hex')}` : '');
  const body =
    int(3) === 0 ? JSON.stringify({ username: 'admin', password: bytes(8).toString('base64') }) : '';
  let text = `${method} ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
  if (int(10) === 0) {
    const at = int(text.length);
    text = text.slice(0, at) + String.fromCharCode(int(256)) + text.slice(at + 1);
  }
  return Buffer.from(text, 'latin1');
}

// ------------------------------------------------------------------------------ the fuzz process

async function runFuzz(): Promise<void> {
  const target = args.get('target') as Target;
  const port = numberArg(args, 'port', 0);
  const ports = (args.get('ports') ?? '').split(',').filter(Boolean).map(Number);
  const count = numberArg(args, 'count', 1_000_000);
  tellParent({ type: 'ready' });
  const started = performance.now();
  const sent = target === 'agent' ? await fuzzUdp(ports, count) : await fuzzStream(target, port, count);
  tellParent({ type: 'done', sent, ms: performance.now() - started });
  await fromParent('stop');
}

/** Bursts on `parallel` connections until `count` inputs were written; plus stalling and silent ones. */
async function fuzzStream(target: Target, port: number, count: number): Promise<number> {
  let sent = 0;
  const held: Socket[] = [];
  const heldClosed: Promise<void>[] = [];
  for (let i = 0; i < 32; i++) {
    const stall = connect({ host: '127.0.0.1', port }, () =>
      stall.write(target === 'web' ? 'GET / HT' : header(1, 4_000)),
    );
    const silent = connect({ host: '127.0.0.1', port });
    for (const s of [stall, silent]) {
      s.on('error', () => {});
      held.push(s);
      heldClosed.push(new Promise((r) => s.once('close', () => r())));
    }
  }
  const loop = async (): Promise<void> => {
    while (sent < count) {
      // A burst of 1-500 inputs on one connection, ended half of the time by one the server cuts for.
      const chunks: Buffer[] = [];
      const n = 1 + int(500);
      for (let i = 0; i < n && sent < count; i++) {
        chunks.push(target === 'web' ? httpInput() : tcpInput(target));
        sent++;
      }
      if (target !== 'web' && int(2) === 0 && sent < count) {
        chunks.push(fatalTcpInput(target));
        sent++;
      }
      await new Promise<void>((resolve) => {
        const s = connect(
          { host: '127.0.0.1', port, localAddress: `127.0.${1 + int(200)}.${1 + int(250)}` },
          () => s.end(Buffer.concat(chunks)),
        );
        s.on('error', () => {});
        s.on('data', () => {});
        s.setTimeout(5_000, () => s.destroy());
        s.on('close', () => resolve());
      });
    }
  };
  await Promise.all(Array.from({ length: 16 }, loop));
  // The stalled and silent connections are the server's to cut (header and handshake timeouts).
  await Promise.race([Promise.all(heldClosed), new Promise((r) => setTimeout(r, 15_000))]);
  for (const s of held) s.destroy();
  return sent;
}

/** Datagrams over the agent's ports, at most 256 sends in flight. */
async function fuzzUdp(ports: number[], count: number): Promise<number> {
  const socket = createSocket('udp4');
  socket.on('error', () => {});
  let sent = 0;
  let inFlight = 0;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (inFlight < 256 && sent < count) {
        inFlight++;
        sent++;
        socket.send(udpInput(), ports[sent % ports.length]!, '127.0.0.1', () => {
          inFlight--;
          if (sent >= count && inFlight === 0) resolve();
          else if (inFlight < 128) setImmediate(pump);
        });
      }
    };
    pump();
  });
  socket.close();
  return sent;
}

// ------------------------------------------------------------------------------ steady clients

interface Steady {
  stop(): Promise<{ calls: number; ok: number; failures?: Map<string, number> }>;
}

function steadyDns(port: number): Steady {
  let running = true;
  let calls = 0;
  let ok = 0;
  const frame = encodeFrame(
    MsgId.GetRouteRequest,
    encodeMessage(MsgId.GetRouteRequest, { modid: 1, cmdid: 1 }),
  );
  const done = (async () => {
    while (running) {
      await new Promise<void>((resolve) => {
        const s = connect({ host: '127.0.0.1', port });
        let timer: NodeJS.Timeout | undefined;
        const ask = () => {
          if (!running) return s.destroy();
          calls++;
          s.write(frame);
          timer = setTimeout(() => s.destroy(), 2_000);
        };
        s.on('connect', ask);
        s.on('data', () => {
          clearTimeout(timer);
          ok++;
          ask();
        });
        s.on('error', () => {});
        s.on('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return { calls, ok };
    },
  };
}

function steadyReporter(port: number, dbUrl: string): Steady {
  let calls = 0;
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  const timer = setInterval(() => {
    calls++;
    const msg = {
      modid: STEADY_MODID,
      cmdid: 1,
      caller: 1,
      ts: 1,
      results: [{ ip: calls, port: 1, succ: 1, err: 0, overload: false }],
    };
    socket.write(encodeFrame(MsgId.ReportStatusRequest, encodeMessage(MsgId.ReportStatusRequest, msg)));
  }, 10);
  return {
    async stop() {
      clearInterval(timer);
      socket.end();
      const store = await openStore(dbUrl, { createIfMissing: false });
      let ok = 0;
      for (let i = 0; i < 50 && ok < calls; i++) {
        const r = await store.db
          .selectFrom('ServerCallStatus')
          .select((eb) => eb.fn.countAll().as('n'))
          .where('modid', '=', STEADY_MODID)
          .executeTakeFirst();
        ok = Number(r?.n ?? 0);
        if (ok < calls) await sleep(100);
      }
      await store.close();
      return { calls, ok };
    },
  };
}

function steadyAgent(ports: number[]): Steady {
  const client = new LarsClient({ ports });
  let calls = 0;
  let ok = 0;
  const failures = new Map<string, number>();
  const fail = (reason: string): void => void failures.set(reason, (failures.get(reason) ?? 0) + 1);
  const pending = new Set<Promise<void>>();
  const timer = setInterval(() => {
    calls++;
    const p: Promise<void> = client
      .tryGetHost(1, 1)
      .then((a) => (a.retcode === 0 ? void ok++ : fail(`retcode ${a.retcode}`)))
      .catch((err: { code?: string }) => fail(err.code ?? 'error'))
      .finally(() => pending.delete(p));
    pending.add(p);
  }, 2);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all([...pending]);
      await client.close();
      return { calls, ok, failures };
    },
  };
}

function steadyWeb(port: number): Steady {
  let running = true;
  let calls = 0;
  let ok = 0;
  const done = (async () => {
    while (running) {
      calls++;
      try {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2_000) });
        await res.arrayBuffer();
        if (res.status === 200) ok++;
      } catch {
        // counted as a failure
      }
      await sleep(20);
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return { calls, ok };
    },
  };
}

// ------------------------------------------------------------------------------ main

/**
 * 1,500 connections that each announce a 65,000-byte frame, send 1,000 bytes of it and stall (issue
 * 11 saw them add ~93 MB to dns): dns RSS before, while they are held, and after header_timeout cut
 * them. Spread over source addresses (max_conn_per_ip).
 */
async function stalledFrames(stack: BenchStack): Promise<string> {
  const port = await stack.port('dns');
  const [pid] = await stack.pids('dns');
  const before = rssMiB(pid!);
  const closed: Promise<void>[] = [];
  const sockets: Socket[] = [];
  for (let i = 0; i < 1_500; i++) {
    const s = connect({ host: '127.0.0.1', port, localAddress: `127.0.9.${1 + (i % 250)}` }, () =>
      s.write(Buffer.concat([header(1, 65_000), Buffer.alloc(1_000, 7)])),
    );
    s.on('error', () => {});
    sockets.push(s);
    closed.push(new Promise((r) => s.once('close', () => r())));
  }
  await sleep(1_000);
  const held = rssMiB(pid!);
  await Promise.race([Promise.all(closed), sleep(20_000)]);
  const cut = sockets.filter((s) => s.destroyed).length;
  for (const s of sockets) s.destroy();
  await sleep(500);
  return (
    `dns with 1,500 stalled half-frames (65,000 bytes announced, 1,000 sent): RSS ${before.toFixed(0)} MiB, ` +
    `${held.toFixed(0)} MiB while held, ${rssMiB(pid!).toFixed(0)} MiB after header_timeout cut ${cut} of them`
  );
}

const COUNTERS: Record<Target, string[]> = {
  dns: [
    'lars_dns_protocol_errors_total',
    'lars_dns_unknown_msgid_total',
    'lars_dns_connections_cut_total{reason="header_timeout"}',
    'lars_dns_connections_cut_total{reason="handshake_timeout"}',
    'lars_dns_connections_cut_total{reason="max_conn_per_ip"}',
    'lars_dns_unknown_route_subscriptions_dropped_total',
  ],
  reporter: [
    'lars_reporter_protocol_errors_total',
    'lars_reporter_unknown_msgid_total',
    'lars_reporter_connections_cut_total{reason="header_timeout"}',
    'lars_reporter_connections_cut_total{reason="handshake_timeout"}',
    'lars_reporter_rows_received_total',
    'lars_reporter_rows_dropped_total',
  ],
  agent: [
    'lars_agent_kernel_dropped_datagrams_total',
    'lars_agent_malformed_datagrams_total',
    'lars_agent_bad_body_datagrams_total',
    'lars_agent_unknown_msgid_total',
    'lars_agent_malformed_reports_total',
    'lars_agent_noexist_total',
  ],
  web: [],
};

async function metrics(stack: BenchStack, target: Target): Promise<string> {
  const http = target === 'web' ? undefined : await stack.httpPort(target);
  return http ? (await fetch(`http://127.0.0.1:${http}/metrics`)).text() : '';
}

async function rssAll(stack: BenchStack): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of ['dns', 'reporter', 'web', 'agent'])
    for (const pid of await stack.pids(s)) out[s] = rssMiB(pid);
  return out;
}

async function runMain(): Promise<void> {
  const count = numberArg(args, 'count', 1_000_000);
  const targets = (args.get('targets') ?? 'dns,reporter,agent,web').split(',') as Target[];
  const agentPorts = await freeUdpPorts(3);
  // Short timeouts, so the stalled and silent connections of each phase are cut within it.
  const ini = stackIni(agentPorts, {}, ['[reactor]', 'header_timeout = 2', 'handshake_timeout = 5']);
  const stack = await startBenchStack(ini);
  const dbUrl = `sqlite:${stack.dataDir}/lars.db`;
  const warm = new LarsClient({ ports: agentPorts });
  for (let i = 0; i < 200 && (await warm.tryGetHost(1, 1)).retcode !== 0; i++) await sleep(25);
  await warm.close();
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  try {
    if (targets.includes('dns')) notes.push(await stalledFrames(stack));
    for (const target of targets) {
      const rssBefore = await rssAll(stack);
      const before = await metrics(stack, target);
      const port = target === 'agent' ? 0 : await stack.port(target);
      const steady =
        target === 'dns'
          ? steadyDns(port)
          : target === 'reporter'
            ? steadyReporter(port, dbUrl)
            : target === 'agent'
              ? steadyAgent(agentPorts)
              : steadyWeb(port);
      const fuzz = forkRole(SELF, [
        '--role',
        'fuzz',
        '--target',
        target,
        '--port',
        String(port),
        '--ports',
        agentPorts.join(','),
        '--count',
        String(count),
        '--seed',
        String(numberArg(args, 'seed', 1)),
      ]);
      await nextMessage(fuzz, 'ready', 10_000);
      const [targetPid] = await stack.pids(target);
      const cpu0 = cpuMs(targetPid!);
      const done = await nextMessage<BenchMessage & { sent: number; ms: number }>(fuzz, 'done', 1_800_000);
      const cpuPct = (cpuMs(targetPid!) - cpu0) / done.ms / 0.01;
      await stopChild(fuzz);
      await sleep(500);
      const { calls, ok, failures } = await steady.stop();
      const after = await metrics(stack, target);
      const rssAfter = await rssAll(stack);
      const delta = (name: string) => (metricValue(after, name) || 0) - (metricValue(before, name) || 0);
      rows.push([
        target,
        done.sent,
        Math.round(done.ms / 1000),
        Math.round(done.sent / (done.ms / 1000)),
        calls,
        Number(((100 * ok) / Math.max(1, calls)).toFixed(2)),
        Number(rssBefore[target]!.toFixed(1)),
        Number(rssAfter[target]!.toFixed(1)),
      ]);
      notes.push(
        `${target}: ${COUNTERS[target].map((c) => `${c.replace(/^lars_[a-z]+_/, '')}=${delta(c)}`).join(' ') || '(no /metrics)'}; ` +
          `${target} CPU ${Math.round(cpuPct)} % of a core while fuzzed; ` +
          (failures && failures.size > 0
            ? `steady failures: ${[...failures].map(([k, v]) => `${v} ${k}`).join(', ')}; `
            : '') +
          `RSS MiB before/after: ${Object.keys(rssBefore)
            .map((s) => `${s} ${rssBefore[s]!.toFixed(0)}/${rssAfter[s]!.toFixed(0)}`)
            .join(', ')}`,
      );
    }
  } finally {
    await stack.stop();
  }
  process.stdout.write(
    `fuzz under load, ${count.toLocaleString('en-US')} inputs per service (${machineLine()})\n`,
  );
  process.stdout.write(
    formatTable(
      ['target', 'inputs', 's', 'inputs/s', 'steady calls', 'steady ok %', 'RSS MiB before', 'after'],
      rows,
    ) + '\n',
  );
  process.stdout.write(notes.map((n) => `  ${n}`).join('\n') + '\n');
}

// Last: the helpers above must be initialised before either role runs.
if (args.get('role') === 'fuzz') await runFuzz();
else await runMain();
