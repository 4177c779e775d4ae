import type { Command } from 'commander';
import type { BusClient, BusMsg, ProcInfo } from '../../bus/index.js';
import { defaultBusSocket } from '../../bus/socket-path.js';
import { InvalidArgumentError } from '../../errors.js';
import { loadServiceConfig, processIo, textTable, untilSignal, type CliIo } from '../options.js';

interface ToolFlags {
  socket?: string;
  config?: string;
  json?: boolean;
}

/** How long a CLI command waits for the bus before failing with LARS_ERR_TIMEOUT. */
const CLI_CONNECT_TIMEOUT_MS = 2_000;

function socketOf(o: ToolFlags): string {
  if (o.socket) return o.socket;
  const file = o.config ?? process.env.LARS_CONFIG;
  if (file) return loadServiceConfig(file, []).config.bus.socket || defaultBusSocket();
  return defaultBusSocket();
}

/** Connects as a short-lived proc named after the command, runs `fn`, closes. */
export async function withBus<T>(o: ToolFlags, what: string, fn: (bus: BusClient) => Promise<T>): Promise<T> {
  const { BusClient } = await import('../../bus/index.js');
  const bus = await BusClient.connect({
    name: `lars-${what}-${process.pid}`,
    socket: socketOf(o),
    connectTimeoutMs: CLI_CONNECT_TIMEOUT_MS,
    reconnect: false,
  });
  try {
    return await fn(bus);
  } finally {
    await bus.close();
  }
}

function headersOf(list: string[] | undefined): Record<string, string> | undefined {
  if (!list || list.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new InvalidArgumentError(`--header: expected NAME=VALUE, got ${JSON.stringify(kv)}`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

function intOption(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new InvalidArgumentError(`${name} must be an integer ${min}..${max}, got ${JSON.stringify(v)}`);
  return Number(v);
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export async function runBusProcs(o: ToolFlags, io: CliIo = processIo): Promise<void> {
  const procs = await withBus(o, 'procs', async (bus) =>
    (await bus.queryProc()).filter((p) => p.name !== bus.name),
  );
  if (o.json) return io.out(JSON.stringify(procs, null, 2));
  if (procs.length === 0) return io.out('no procs registered');
  const rows = procs.map((p: ProcInfo) => [
    p.name,
    p.state,
    p.pid === undefined ? '?' : String(p.pid),
    p.uid === undefined ? '?' : String(p.uid),
    p.connected ? 'yes' : 'no',
    `${Math.round(p.idleMs)}ms`,
    String(p.subscriptions.length),
    p.serves.map((s) => s.topic).join(',') || '-',
    String(p.msgsIn),
    String(p.msgsOut),
    String(p.dropped),
    p.publicInfo,
  ]);
  const header = [
    'NAME',
    'STATE',
    'PID',
    'UID',
    'CONNECTED',
    'IDLE',
    'SUBS',
    'SERVES',
    'IN',
    'OUT',
    'DROPPED',
    'INFO',
  ];
  for (const line of textTable(header, rows)) io.out(line);
}

export async function runBusTopics(o: ToolFlags, io: CliIo = processIo): Promise<void> {
  const { served, subs } = await withBus(o, 'topics', async (bus) => ({
    served: await bus.queryTopic(),
    subs: (await bus.queryProc()).flatMap((p) => p.subscriptions.map((s) => ({ proc: p.name, ...s }))),
  }));
  if (o.json) {
    const topics = served.map((t) => ({
      topic: t.topic,
      proc: t.proc.name,
      online: t.online,
      queue: t.queue,
    }));
    return io.out(JSON.stringify({ topics, subscriptions: subs }, null, 2));
  }
  const rows = [
    ...served.map((t) => ['serve', t.topic, t.proc.name, t.queue || '-', t.online ? 'online' : 'offline']),
    ...subs.map((s) => [
      'sub',
      s.subject + (s.exact ? ' (exact)' : ''),
      s.proc,
      s.queue || '-',
      `${s.msgs} msgs`,
    ]),
  ];
  if (rows.length === 0) return io.out('no served topics and no subscriptions');
  for (const line of textTable(['KIND', 'TOPIC/SUBJECT', 'PROC', 'QUEUE', 'STATUS'], rows)) io.out(line);
}

function show(m: BusMsg, json: boolean | undefined): string {
  if (json) return JSON.stringify({ subject: m.subject, from: m.from, headers: m.headers, data: m.string() });
  const h = Object.entries(m.headers).map(([k, v]) => `${k}=${v}`);
  return `[${m.subject}] ${m.from || '?'}${h.length ? ` {${h.join(' ')}}` : ''}: ${m.string()}`;
}

/**
 * The client sub-commands of `lars bus`. `--socket` and `--config` are options of `lars bus` itself
 * (they may be given before or after the sub-command); actions read them with optsWithGlobals().
 */
export function registerBusTools(bus: Command): void {
  const tool = (name: string, description: string): Command => bus.command(name).description(description);
  const flags = <T>(cmd: Command): T => cmd.optsWithGlobals<T & object>();

  tool(
    'procs',
    'list registered procs: state, kernel pid/uid, idle time, subscriptions, served topics, counters',
  )
    .option('--json', 'print JSON')
    .action((_o: ToolFlags, cmd: Command) => runBusProcs(flags<ToolFlags>(cmd)));

  tool('topics', 'list served topics (with online flag) and subscriptions')
    .option('--json', 'print JSON')
    .action((_o: ToolFlags, cmd: Command) => runBusTopics(flags<ToolFlags>(cmd)));

  tool('pub', 'publish DATA (UTF-8) on SUBJECT')
    .argument('<subject>')
    .argument('<data>')
    .option('--header <name=value>', 'a header (repeatable)', collect)
    .action(async (subject: string, data: string, _o: unknown, cmd: Command) => {
      const o = flags<ToolFlags & { header?: string[] }>(cmd);
      const headers = headersOf(o.header);
      await withBus(o, 'pub', async (c) => {
        c.publish(subject, data, headers ? { headers } : {});
        await c.flush();
      });
    });

  tool(
    'sub',
    'print messages published on SUBJECT (and its descendants unless --exact) until Ctrl-C or --count',
  )
    .argument('<subject>')
    .option('--count <n>', 'exit after N messages')
    .option('--queue <name>', 'join a queue group')
    .option('--exact', 'NATS semantics: only SUBJECT itself (wildcards * and > still apply)')
    .option('--json', 'one JSON object per message')
    .action(async (subject: string, _o: unknown, cmd: Command) => {
      const o = flags<ToolFlags & { count?: string; queue?: string; exact?: boolean }>(cmd);
      const count = intOption(o.count, '--count', 1, 1e9);
      await withBus(o, 'sub', async (c) => {
        const sub = c.subscribe(subject, { ...(o.queue ? { queue: o.queue } : {}), exact: o.exact === true });
        await c.flush();
        const stop = untilSignal().then(() => sub.unsubscribe());
        let n = 0;
        for await (const m of sub) {
          processIo.out(show(m, o.json));
          if (count !== undefined && ++n >= count) break;
        }
        void stop;
      });
    });

  tool(
    'req',
    'send DATA (UTF-8) as a request to TOPIC and print the reply; exits 1 on no responders or timeout',
  )
    .argument('<topic>')
    .argument('<data>')
    .option('--timeout <ms>', 'reply timeout in ms', '5000')
    .option('--header <name=value>', 'a header (repeatable)', collect)
    .option('--json', 'print the reply as JSON')
    .action(async (topic: string, data: string, _o: unknown, cmd: Command) => {
      const o = flags<ToolFlags & { timeout: string; header?: string[] }>(cmd);
      const timeoutMs = intOption(o.timeout, '--timeout', 1, 3_600_000) as number;
      const headers = headersOf(o.header);
      const rep = await withBus(o, 'req', (c) =>
        c.request(topic, data, { timeoutMs, ...(headers ? { headers } : {}) }),
      );
      processIo.out(o.json ? show(rep, true) : rep.string());
    });

  tool(
    'bench',
    'quick throughput and latency check of a running bus (pub/sub and request/reply, in this process)',
  )
    .option('--duration <s>', 'seconds per measurement', '2')
    .option('--size <bytes>', 'payload size', '16')
    .action(async (_o: unknown, cmd: Command) => {
      const o = flags<ToolFlags & { duration: string; size: string }>(cmd);
      const durationMs = (intOption(o.duration, '--duration', 1, 600) as number) * 1000;
      const size = intOption(o.size, '--size', 0, 1 << 20) as number;
      const socket = socketOf(o);
      const { runBusBench } = await import('./bus-bench.js');
      await runBusBench({ socket, durationMs, size, connectTimeoutMs: CLI_CONNECT_TIMEOUT_MS }, processIo);
    });
}
