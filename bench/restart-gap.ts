/**
 * The restart gap of `lars up` (issue 11, item 4): requests that fail while the only worker of a
 * service is replaced after a SIGKILL, and how long until the replacement serves.
 *
 *   npm run bench:restart-gap                    # both modes, 1 round each
 *   node dist/bench/restart-gap.js --rounds 3 --modes held,cluster
 *
 * Modes (interleaved per round): held = the master holds the listening sockets and passes them to
 * each worker (the default when the native addon is built); cluster = LARS_NATIVE=off, workers bind
 * through node:cluster, which closes a socket when its last worker exits (the behaviour before).
 *
 * One stack per round and mode: dns, reporter, console and agent with one worker each. For each
 * service in turn a client runs against it, its worker is SIGKILLed after 1.5 s, and the client
 * keeps going until the replacement has served for 2 s:
 * - dns: 4 lockstep GetRoute connections; a connection reset by the dying worker reconnects and
 *   sends its request again (as the agent does); failed = refused connects and answers not within 5 s.
 * - reporter: a connection per report (connect, send, end); failed = refused connects.
 * - web: GET /healthz one after another, 5 s timeout; failed = refused or timed out.
 * - agent: SDK getHost(1, 1) every 2 ms whatever the answers take, the SDK's default 1 s timeout;
 *   failed = timeouts, NOT_CONNECTED (nothing listening) and non-SUCC answers.
 * "serves after" = from the killed process's death to the first answer to a request sent after it
 * (for the reporter, which answers nothing, the first accepted connection: with held sockets the
 * kernel accepts into the backlog at once); "ready after" = from the death to the replacement
 * reporting READY to the master.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { LarsClient } from '../src/api/index.js';
import { encodeFrame, encodeMessage, MsgId } from '../src/protocol/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { machineLine } from './lib/proc.js';
import { freeUdpPorts, stackIni, startBenchStack, type BenchStack } from './lib/stack.js';
import { formatTable } from './lib/table.js';

type Mode = 'held' | 'cluster';
const SERVICES = ['dns', 'reporter', 'web', 'agent'] as const;
type Service = (typeof SERVICES)[number];

const args = parseArgs(process.argv.slice(2));
const rounds = numberArg(args, 'rounds', 1);
const modes = (args.get('modes') ?? 'held,cluster').split(',') as Mode[];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a client saw around a kill. */
class Tally {
  sent = 0;
  ok = 0;
  readonly failures = new Map<string, number>();
  killAt = Infinity;
  firstOkAfterKill = Infinity;

  fail(reason: string): void {
    this.failures.set(reason, (this.failures.get(reason) ?? 0) + 1);
  }

  answered(sentAt: number): void {
    this.ok++;
    if (sentAt >= this.killAt)
      this.firstOkAfterKill = Math.min(this.firstOkAfterKill, Date.now() - this.killAt);
  }

  get failed(): number {
    let n = 0;
    for (const v of this.failures.values()) n += v;
    return n;
  }

  describe(): string {
    return [...this.failures].map(([k, v]) => `${v} ${k}`).join(', ') || '-';
  }
}

interface Client {
  tally: Tally;
  stop(): Promise<void>;
}

const routeFrame = encodeFrame(
  MsgId.GetRouteRequest,
  encodeMessage(MsgId.GetRouteRequest, { modid: 1, cmdid: 1 }),
);

function dnsClient(port: number): Client {
  const tally = new Tally();
  let running = true;
  const conn = async (): Promise<void> => {
    let resend = false;
    while (running) {
      resend = await new Promise<boolean>((resolve) => {
        const s = connect({ host: '127.0.0.1', port });
        let pending = false;
        let sentAt = 0;
        let timer: NodeJS.Timeout | undefined;
        const send = () => {
          if (!running) return s.end();
          pending = true;
          sentAt = Date.now();
          tally.sent++;
          s.write(routeFrame);
          timer = setTimeout(() => {
            tally.fail('no answer in 5 s');
            pending = false;
            s.destroy();
          }, 5_000);
        };
        s.on('connect', () => {
          if (resend) tally.sent--; // the same request again
          send();
        });
        s.on('data', () => {
          if (!pending) return;
          pending = false;
          clearTimeout(timer);
          tally.answered(sentAt);
          send();
        });
        s.on('error', (err: NodeJS.ErrnoException) => {
          if (err.code === 'ECONNREFUSED') tally.fail('refused');
        });
        s.on('close', () => {
          clearTimeout(timer);
          resolve(pending);
        });
      });
      if (running && !resend) await sleep(10);
    }
  };
  const loops = [conn(), conn(), conn(), conn()];
  return {
    tally,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** A client that runs `step` until stopped, 5 ms apart. */
function loopClient(step: (tally: Tally) => Promise<void>): Client {
  const tally = new Tally();
  let running = true;
  const done = (async () => {
    while (running) {
      await step(tally);
      await sleep(5);
    }
  })();
  return {
    tally,
    async stop() {
      running = false;
      await done;
    },
  };
}

function reporterClient(port: number): Client {
  let ip = 1;
  return loopClient(async (tally) => {
    const sentAt = Date.now();
    tally.sent++;
    await new Promise<void>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        const msg = {
          modid: 9,
          cmdid: 9,
          caller: 1,
          ts: 1,
          results: [{ ip: ip++, port: 1, succ: 1, err: 0, overload: false }],
        };
        s.end(encodeFrame(MsgId.ReportStatusRequest, encodeMessage(MsgId.ReportStatusRequest, msg)));
        tally.answered(sentAt);
      });
      s.on('error', (err: NodeJS.ErrnoException) =>
        tally.fail(err.code === 'ECONNREFUSED' ? 'refused' : String(err.code)),
      );
      s.on('close', () => resolve());
    });
  });
}

function webClient(port: number): Client {
  return loopClient(async (tally) => {
    const sentAt = Date.now();
    tally.sent++;
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5_000) });
      await res.arrayBuffer();
      if (res.status === 200) tally.answered(sentAt);
      else tally.fail(`HTTP ${res.status}`);
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      tally.fail(
        cause?.code === 'ECONNREFUSED'
          ? 'refused'
          : (err as Error).name === 'TimeoutError'
            ? 'timeout'
            : String(cause?.code ?? (err as Error).message),
      );
    }
  });
}

function agentClient(ports: number[]): Client {
  const tally = new Tally();
  const client = new LarsClient({ ports });
  const pending = new Set<Promise<void>>();
  const timer = setInterval(() => {
    const sentAt = Date.now();
    tally.sent++;
    const p: Promise<void> = client
      .tryGetHost(1, 1)
      .then((a) => (a.retcode === 0 ? tally.answered(sentAt) : tally.fail(`retcode ${a.retcode}`)))
      .catch((err: { code?: string }) => tally.fail(err.code ?? 'error'))
      .finally(() => pending.delete(p));
    pending.add(p);
  }, 2);
  return {
    tally,
    async stop() {
      clearInterval(timer);
      await Promise.all([...pending]);
      await client.close();
    },
  };
}

async function measure(
  stack: BenchStack,
  service: Service,
  agentPorts: number[],
): Promise<{ tally: Tally; readyMs: number }> {
  const port = service === 'agent' ? 0 : await stack.port(service);
  const client =
    service === 'dns'
      ? dnsClient(port)
      : service === 'reporter'
        ? reporterClient(port)
        : service === 'web'
          ? webClient(port)
          : agentClient(agentPorts);
  await sleep(1_500);
  const [victim] = await stack.pids(service);
  process.kill(victim!, 'SIGKILL');
  // Requests count as "after the kill" once the process is gone (a signal is not instantaneous).
  while (alive(victim!)) await sleep(1);
  client.tally.killAt = Date.now();
  let readyMs = NaN;
  for (;;) {
    const s = (await stack.status()).services.find((x) => x.name === service)!;
    const replacement = s.processes.find((p) => p.pid !== victim && p.state === 'running');
    if (replacement) {
      readyMs = Date.now() - client.tally.killAt;
      break;
    }
    await sleep(20);
  }
  await sleep(2_000);
  await client.stop();
  return { tally: client.tally, readyMs };
}

/** True while the pid exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function round(mode: Mode): Promise<Array<(string | number)[]>> {
  const agentPorts = await freeUdpPorts(3);
  const ini = stackIni(agentPorts);
  const stack = await startBenchStack(ini, mode === 'cluster' ? { LARS_NATIVE: 'off' } : {});
  const rows: Array<(string | number)[]> = [];
  try {
    // Warm the agent (route known, cache written) before its turn.
    const warm = new LarsClient({ ports: agentPorts });
    for (let i = 0; i < 200 && (await warm.tryGetHost(1, 1)).retcode !== 0; i++) await sleep(25);
    await warm.close();
    await sleep(1_200);
    for (const service of SERVICES) {
      const { tally, readyMs } = await measure(stack, service, agentPorts);
      rows.push([
        mode,
        service,
        tally.sent,
        tally.failed,
        tally.describe(),
        Number.isFinite(tally.firstOkAfterKill) ? tally.firstOkAfterKill : '-',
        readyMs,
      ]);
    }
  } finally {
    await stack.stop();
  }
  return rows;
}

const rows: Array<(string | number)[]> = [];
for (let r = 0; r < rounds; r++) for (const mode of modes) rows.push(...(await round(mode)));
process.stdout.write(`restart gap after SIGKILL of the only worker (${machineLine()})\n`);
process.stdout.write(
  formatTable(
    ['mode', 'service', 'requests', 'failed', 'failures', 'serves after ms', 'ready after ms'],
    rows,
  ) + '\n',
);
