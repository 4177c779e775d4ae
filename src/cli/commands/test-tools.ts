import { Command } from 'commander';
import { RetcodeError } from '../../errors.js';
import { ipToNumber, parsePort } from '../../protocol/ip.js';
import { RetCode, retCodeName } from '../../protocol/retcode.js';
import { parseId } from '../../store/validate.js';
import { clientFrom, fmtHost, intArg, withClientOptions, type ClientFlags } from './test-client.js';
import { registerLoadTools } from './test-load.js';

/** Exit status of gethost/getroute when the agent answered but has no host (docs/errors.md). */
export const EXIT_NO_HOST = 2;

export function register(program: Command): void {
  const test = program
    .command('test')
    .description('test tools against a running agent (as the original run script offered)');

  withClientOptions(
    test
      .command('gethost <modid> <cmdid>')
      .description(
        'ask the agent for one host of a route (exit 0 a host, 2 no host: OVERLOAD/NOEXIST, 1 an error such as LARS_ERR_NOT_CONNECTED)',
      ),
  )
    .option('--once', 'a single request: do not retry while the agent is still fetching the route (NOEXIST)')
    .action(async (m: string, c: string, o: ClientFlags & { once?: boolean }) => {
      const client = await clientFrom(o);
      try {
        const modid = parseId(m, 'modid');
        const cmdid = parseId(c, 'cmdid');
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
          process.exitCode = EXIT_NO_HOST;
        }
      } finally {
        await client.close();
      }
    });

  withClientOptions(
    test
      .command('getroute <modid> <cmdid>')
      .description(
        'ask the agent for every host of a route (exit 0 hosts, 2 route unknown: NOEXIST, 1 an error such as LARS_ERR_NOT_CONNECTED)',
      ),
  ).action(async (m: string, c: string, o: ClientFlags) => {
    const client = await clientFrom(o);
    try {
      const modid = parseId(m, 'modid');
      const cmdid = parseId(c, 'cmdid');
      // Only "the agent answered, the route is unknown" is exit 2; no agent, a timeout and the rest
      // are errors of their own (issue 16: they used to read as NOEXIST).
      const hosts = await client.regInit(modid, cmdid).catch((err: unknown) => {
        if (err instanceof RetcodeError && err.retcode === RetCode.NOEXIST) return [];
        throw err;
      });
      if (hosts.length === 0) {
        console.log(`route unknown: retcode ${RetCode.NOEXIST} NOEXIST (modid ${modid} cmdid ${cmdid})`);
        process.exitCode = EXIT_NO_HOST;
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
        const client = await clientFrom(o);
        try {
          ipToNumber(ip);
          const retcode = intArg(rc, 'retcode', 0, 1);
          client.report(
            parseId(m, 'modid'),
            parseId(c, 'cmdid'),
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

  registerLoadTools(test);

  withClientOptions(
    test
      .command('example <modid> <cmdid>')
      .description('end-to-end example: regInit, then call() a few times against the route'),
  )
    .option('--calls <n>', 'number of calls', '5')
    .action(async (m: string, c: string, o: ClientFlags & { calls: string }) => {
      const client = await clientFrom(o);
      const modid = parseId(m, 'modid');
      const cmdid = parseId(c, 'cmdid');
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
