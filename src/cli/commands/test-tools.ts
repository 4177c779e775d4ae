import { Command } from 'commander';
import { LarsClient, type Host } from '../../api/index.js';
import { InvalidArgumentError } from '../../errors.js';
import { ipToNumber, parsePort } from '../../protocol/ip.js';
import { RetCode, retCodeName } from '../../protocol/retcode.js';
import { parseHostPort, parsePorts } from '../options.js';

interface ClientFlags {
  agent: string;
  ports: string;
  timeout: string;
}

function intArg(value: string, name: string, min = -0x80000000, max = 0x7fffffff): number {
  if (!/^-?\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new InvalidArgumentError(`${name} must be an integer ${min}..${max}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

function clientFrom(o: ClientFlags): LarsClient {
  ipToNumber(o.agent === 'localhost' ? '127.0.0.1' : o.agent);
  if (parsePorts(o.ports, '--ports').includes(0))
    throw new InvalidArgumentError('--ports: port 0 is not an agent port');
  return new LarsClient({
    host: o.agent === 'localhost' ? '127.0.0.1' : o.agent,
    ports: parsePorts(o.ports, '--ports'),
    timeoutMs: intArg(o.timeout, '--timeout', 1, 600_000),
  });
}

function withClientOptions(cmd: Command): Command {
  return cmd
    .option('--agent <ip>', 'agent address', '127.0.0.1')
    .option('--ports <list>', 'agent UDP ports', '8888,8889,8890')
    .option('--timeout <ms>', 'per-request timeout in ms', '1000');
}

const fmtHost = (h: Host) => `${h.ip}:${h.port}`;

export function register(program: Command): void {
  const test = program
    .command('test')
    .description('test tools against a running agent (as the original run script offered)');

  withClientOptions(
    test.command('gethost <modid> <cmdid>').description('ask the agent for one host of a route'),
  )
    .option('--once', 'a single request: do not retry while the agent is still fetching the route (NOEXIST)')
    .action(async (m: string, c: string, o: ClientFlags & { once?: boolean }) => {
      const client = clientFrom(o);
      try {
        const modid = intArg(m, 'modid');
        const cmdid = intArg(c, 'cmdid');
        let a = await client.tryGetHost(modid, cmdid);
        // A route the agent has not fetched yet answers NOEXIST once; ask again like regInit does.
        for (let i = 0; !o.once && a.retcode === RetCode.NOEXIST && i < 3; i++) {
          await new Promise((r) => setTimeout(r, 50));
          a = await client.tryGetHost(modid, cmdid);
        }
        if (a.host) console.log(`${fmtHost(a.host)}  (retcode 0 SUCC, modid ${modid} cmdid ${cmdid})`);
        else {
          console.log(
            `no host: retcode ${a.retcode} ${retCodeName(a.retcode)} (modid ${modid} cmdid ${cmdid})`,
          );
          process.exitCode = 2;
        }
      } finally {
        await client.close();
      }
    });

  withClientOptions(
    test.command('getroute <modid> <cmdid>').description('ask the agent for every host of a route'),
  ).action(async (m: string, c: string, o: ClientFlags) => {
    const client = clientFrom(o);
    try {
      const hosts = await client.regInit(intArg(m, 'modid'), intArg(c, 'cmdid')).catch(() => [] as Host[]);
      if (hosts.length === 0) {
        console.log('route unknown (NOEXIST)');
        process.exitCode = 2;
      }
      for (const h of hosts) console.log(fmtHost(h));
    } finally {
      await client.close();
    }
  });

  withClientOptions(
    test
      .command('report <modid> <cmdid> <ip> <port> <retcode>')
      .description('report one call result: retcode 0 = success, 1 = failure'),
  )
    .option('--timecost <ms>', 'duration of the call (slow failures count more)')
    .action(
      async (
        m: string,
        c: string,
        ip: string,
        port: string,
        rc: string,
        o: ClientFlags & { timecost?: string },
      ) => {
        const client = clientFrom(o);
        try {
          ipToNumber(ip);
          const retcode = intArg(rc, 'retcode', 0, 1);
          client.report(
            intArg(m, 'modid'),
            intArg(c, 'cmdid'),
            ip,
            parsePort(port),
            retcode,
            o.timecost ? intArg(o.timecost, '--timecost', 0) : undefined,
          );
          console.log(`reported ${retcode === 0 ? 'success' : 'failure'} of ${ip}:${port}`);
        } finally {
          await client.close();
        }
      },
    );

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
        const client = clientFrom(o);
        const modid = intArg(m, 'modid');
        const cmdid = intArg(c, 'cmdid');
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
      await clientFrom(o).close();
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

  withClientOptions(
    test
      .command('example <modid> <cmdid>')
      .description('end-to-end example: regInit, then call() a few times against the route'),
  )
    .option('--calls <n>', 'number of calls', '5')
    .action(async (m: string, c: string, o: ClientFlags & { calls: string }) => {
      const client = clientFrom(o);
      const modid = intArg(m, 'modid');
      const cmdid = intArg(c, 'cmdid');
      try {
        const hosts = await client.regInit(modid, cmdid);
        console.log(`route ${modid}/${cmdid}: ${hosts.map(fmtHost).join(', ')}`);
        for (let i = 0; i < intArg(o.calls, '--calls', 1); i++) {
          const out = await client.call(modid, cmdid, async (h) => `called ${fmtHost(h)}`);
          console.log(out);
        }
      } finally {
        await client.close();
      }
    });
}
