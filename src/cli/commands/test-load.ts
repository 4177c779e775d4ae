import type { Command } from 'commander';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { RetCode, retCodeName } from '../../protocol/retcode.js';
import { parseId } from '../../store/validate.js';
import { parseHostPort, parsePorts } from '../options.js';
import { clientFrom, fmtHost, intArg, withClientOptions, type ClientFlags } from './test-client.js';

/** `lars test simulator` and `lars test qps`: load against a running agent. */
export function registerLoadTools(test: Command): void {
  withClientOptions(
    test
      .command('simulator <modid> <cmdid> [errRate] [count]')
      .description(
        'simulate calls: get a host, succeed or fail (errRate 0-10 = tenths of calls failing), report; prints live progress and a per-host tally',
      ),
  )
    .option('--fail <host:port...>', 'only these hosts fail (at errRate); others always succeed')
    .option('--rate <n>', 'calls per second (0 = as fast as possible)', '2000')
    .action(
      async (
        m: string,
        c: string,
        err: string | undefined,
        cnt: string | undefined,
        o: ClientFlags & { fail?: string[]; rate: string },
      ) => {
        const client = await clientFrom(o);
        const modid = parseId(m, 'modid');
        const cmdid = parseId(c, 'cmdid');
        const errRate = intArg(err ?? '2', 'errRate', 0, 10);
        const count = intArg(cnt ?? '10000', 'count', 1);
        const rate = intArg(o.rate, '--rate', 0);
        const failing = new Set(
          (o.fail ?? []).map((f) => {
            const p = parseHostPort(f, '--fail');
            return `${p.host}:${p.port}`;
          }),
        );
        const tally = new Map<string, { succ: number; err: number }>();
        const answers = new Map<number, number>();
        try {
          await client.regInit(modid, cmdid).catch(() => undefined);
          const started = performance.now();
          let lastPrint = started;
          for (let i = 1; i <= count; i++) {
            const a = await client.tryGetHost(modid, cmdid);
            answers.set(a.retcode, (answers.get(a.retcode) ?? 0) + 1);
            if (a.host) {
              const key = fmtHost(a.host);
              const fails = (failing.size === 0 || failing.has(key)) && Math.random() * 10 < errRate;
              client.report(modid, cmdid, a.host.ip, a.host.port, fails ? 1 : 0);
              const t = tally.get(key) ?? { succ: 0, err: 0 };
              if (fails) t.err++;
              else t.succ++;
              tally.set(key, t);
            }
            if (rate > 0) {
              const due = started + (i * 1000) / rate;
              const wait = due - performance.now();
              if (wait > 1) await new Promise((r) => setTimeout(r, wait));
            }
            const now = performance.now();
            if (now - lastPrint >= 1000 || i === count) {
              lastPrint = now;
              process.stdout.write(`\r${i}/${count} calls  ${Math.round((i * 1000) / (now - started))}/s   `);
            }
          }
          process.stdout.write('\n');
          console.log('host                  calls    succ     err   share');
          const total = [...tally.values()].reduce((s, t) => s + t.succ + t.err, 0);
          for (const [host, t] of [...tally.entries()].sort()) {
            const n = t.succ + t.err;
            console.log(
              `${host.padEnd(21)} ${String(n).padStart(6)} ${String(t.succ).padStart(7)} ${String(t.err).padStart(7)}  ${((100 * n) / Math.max(1, total)).toFixed(1).padStart(5)}%${failing.has(host) ? '  (failing)' : ''}`,
            );
          }
          const other = [...answers.entries()].filter(([rc]) => rc !== RetCode.SUCC);
          if (other.length)
            console.log('no host: ' + other.map(([rc, n]) => `${retCodeName(rc)} ${n}`).join(', '));
        } finally {
          await client.close();
        }
      },
    );

  withClientOptions(
    test
      .command('qps <threads>')
      .description(
        'load generator: each thread loops get_host + report lockstep; thread i uses modid i+1, cmdid 1',
      ),
  )
    .option('--duration <s>', 'seconds to run', '10')
    .action(async (t: string, o: ClientFlags & { duration: string }) => {
      const threads = intArg(t, 'threads', 1, 256);
      const duration = intArg(o.duration, '--duration', 1, 86_400);
      // Validated here, in the parent: a bad value must be one clear message, not a worker's crash.
      (await clientFrom(o)).close();
      const counts = new Array<number>(threads).fill(0);
      const workers = Array.from({ length: threads }, (_, i) => {
        const w = new Worker(new URL(import.meta.url), {
          workerData: {
            larsQps: true,
            modid: i + 1,
            cmdid: 1,
            agent: o.agent,
            ports: o.ports,
            timeout: o.timeout,
            duration,
          },
        });
        w.on('message', (n: number) => {
          counts[i] = n;
        });
        w.on('error', (err) => {
          process.stderr.write(`lars: qps thread ${i + 1} failed: ${err.message}\n`);
          process.exitCode = 1;
        });
        return w;
      });
      const started = performance.now();
      let last = 0;
      const timer = setInterval(() => {
        const total = counts.reduce((a, b) => a + b, 0);
        const elapsed = (performance.now() - started) / 1000;
        console.log(
          `${elapsed.toFixed(0).padStart(4)} s  ${String(total - last).padStart(8)} qps   avg ${Math.round(total / elapsed)} qps`,
        );
        last = total;
      }, 1000);
      await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
      clearInterval(timer);
      const total = counts.reduce((a, b) => a + b, 0);
      console.log(
        `total ${total} calls in ${duration} s: average ${Math.round(total / duration)} qps (${threads} threads)`,
      );
    });
}

/** Body of one `lars test qps` thread: lockstep get_host + report until the duration ends. */
async function qpsWorker(d: {
  modid: number;
  cmdid: number;
  agent: string;
  ports: string;
  timeout: string;
  duration: number;
}): Promise<void> {
  const { LarsClient } = await import('../../api/index.js');
  const client = new LarsClient({
    host: d.agent,
    ports: parsePorts(d.ports, '--ports'),
    timeoutMs: Number(d.timeout),
  });
  const end = performance.now() + d.duration * 1000;
  let n = 0;
  let lastPost = performance.now();
  while (performance.now() < end) {
    try {
      const a = await client.tryGetHost(d.modid, d.cmdid);
      if (a.host) client.report(d.modid, d.cmdid, a.host.ip, a.host.port, 0);
      n++;
    } catch {
      // timeouts are not counted
    }
    if (performance.now() - lastPost >= 200) {
      parentPort?.postMessage(n);
      lastPost = performance.now();
    }
  }
  parentPort?.postMessage(n);
  await client.close();
}

if (!isMainThread && (workerData as { larsQps?: boolean } | undefined)?.larsQps) {
  void qpsWorker(workerData);
}
