import type { Command } from 'commander';
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
        "load generator: each thread loops get_host + report lockstep (like the original qps); thread i uses modid i+1, cmdid 1; prints each second's rate with p50/p99 latency",
      ),
  )
    .option('--duration <s>', 'seconds to run (after a warm-up that is not counted)', '10')
    .option('--json', 'print the totals as one JSON line')
    .action(async (t: string, o: ClientFlags & { duration: string; json?: boolean }) => {
      const threads = intArg(t, 'threads', 1, 256);
      const duration = intArg(o.duration, '--duration', 1, 86_400);
      // Validated here, in the parent: a bad value must be one clear message, not a worker's crash.
      await (await clientFrom(o)).close();
      const { runQps } = await import('../qps-load.js');
      const fmt = (n: number) => n.toLocaleString('en-US');
      const summary = await runQps({
        threads,
        durationS: duration,
        agent: o.agent === 'localhost' ? '127.0.0.1' : o.agent,
        ports: parsePorts(o.ports, '--ports'),
        timeoutMs: intArg(o.timeout, '--timeout', 1, 600_000),
        modidBase: 1,
        cmdid: 1,
        onSecond: (s) => {
          if (!o.json)
            console.log(
              `${String(s.second).padStart(4)} s  ${fmt(s.calls).padStart(9)} calls/s   p50 ${s.p50Us} µs   p99 ${s.p99Us} µs`,
            );
        },
      });
      if (o.json) console.log(JSON.stringify(summary));
      else
        console.log(
          `total ${fmt(summary.calls)} calls in ${summary.seconds} s: ${fmt(summary.rate)} calls/s, p50 ${summary.p50Us} µs, p99 ${summary.p99Us} µs (${threads} threads, ${summary.timeouts} timeouts, ${summary.noHost} answers without a host)`,
        );
      if (summary.calls === 0) process.exitCode = 1;
    });
}
