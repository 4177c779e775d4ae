import type { Command } from 'commander';
import { InvalidArgumentError } from '../../errors.js';
import {
  DEFAULT_LEASE_TTL_S,
  MAX_LEASE_TTL_S,
  MAX_WEIGHT,
  MIN_LEASE_TTL_S,
} from '../../protocol/lease-limits.js';
import { isValidIpv4, parsePort } from '../../protocol/ip.js';
import { parseId } from '../../store/validate.js';
import { parsePorts, processIo, untilSignal, type CliIo } from '../options.js';

/**
 * `lars route register MODID CMDID PORT`: registers a host through the local agent (issue 15) and
 * keeps the registration alive until interrupted; Ctrl-C or SIGTERM deregisters it. A handy way to
 * put a test server in a route, and the CLI face of `lars.register()`.
 */

export interface RouteRegisterFlags {
  ip?: string;
  weight?: string;
  ttl: string;
  agent: string;
  ports: string;
  timeout: string;
}

export interface RouteRegisterDeps {
  io?: CliIo;
  /** Resolves when the registration should end (default: SIGINT or SIGTERM). */
  until?: () => Promise<string>;
}

function intFlag(text: string, flag: string, min: number, max: number): number {
  const n = /^\d{1,9}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(
      `${flag}: expected an integer from ${min} to ${max}, got ${JSON.stringify(text)}`,
    );
  return n;
}

export async function runRouteRegister(
  args: { modid: string; cmdid: string; port: string },
  flags: RouteRegisterFlags,
  deps: RouteRegisterDeps = {},
): Promise<void> {
  const io = deps.io ?? processIo;
  const modid = parseId(args.modid, 'modid');
  const cmdid = parseId(args.cmdid, 'cmdid');
  const port = parsePort(args.port, 'port');
  if (flags.ip !== undefined && !isValidIpv4(flags.ip))
    throw new InvalidArgumentError(`--ip: invalid IPv4 address ${JSON.stringify(flags.ip)}`);
  const weight = flags.weight === undefined ? 1 : intFlag(flags.weight, '--weight', 1, MAX_WEIGHT);
  const ttlS = intFlag(flags.ttl, '--ttl', MIN_LEASE_TTL_S, MAX_LEASE_TTL_S);
  const agentHost = flags.agent === 'localhost' ? '127.0.0.1' : flags.agent;
  if (!isValidIpv4(agentHost))
    throw new InvalidArgumentError(`--agent: invalid IPv4 address ${JSON.stringify(flags.agent)}`);
  const ports = parsePorts(flags.ports, '--ports');
  if (ports.includes(0)) throw new InvalidArgumentError('--ports: port 0 is not an agent port');
  const timeoutMs = intFlag(flags.timeout, '--timeout', 1, 600_000);

  const { LarsClient } = await import('../../api/lars-client.js');
  const client = new LarsClient({ host: agentHost, ports, timeoutMs });
  // The SDK's timers never keep a process alive; this command lives until it is told to stop.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  try {
    const reg = await client.register({
      modid,
      cmdid,
      port,
      weight,
      ttlS,
      ...(flags.ip !== undefined ? { ip: flags.ip } : {}),
    });
    const what = `${reg.ip}:${reg.port} in route ${modid}/${cmdid}`;
    // Listen for the stop signal before saying "registered": a signal sent right after that line
    // must deregister, not kill the process with the lease still alive.
    const stopped = (deps.until ?? untilSignal)();
    io.out(
      `registered ${what} (weight ${reg.weight}, ttl ${reg.ttlS} s, renewed every ${(reg.ttlS / 3).toFixed(1)} s` +
        `${reg.watched ? '; the agent watches this process' : ''}); Ctrl-C deregisters`,
    );
    // One line when renewals start failing (agent restarting, say) and one when they work again.
    let failing = false;
    reg.on('renewFailed', (err) => {
      if (failing) return;
      failing = true;
      io.err(`note: renewal failed (${err.message}); retrying every ${(reg.ttlS / 3).toFixed(1)} s`);
    });
    reg.on('renewed', () => {
      if (!failing) return;
      failing = false;
      io.err('note: renewed again');
    });
    const signal = await stopped;
    await reg.deregister();
    io.out(`deregistered ${what} (${signal})`);
  } finally {
    clearInterval(keepAlive);
    await client.close();
  }
}

export function registerRouteRegisterCommand(route: Command): void {
  route
    .command('register')
    .description(
      "register host PORT (at --ip, default the agent's address) in route MODID/CMDID through the local agent and keep it registered until interrupted; Ctrl-C or SIGTERM deregisters it",
    )
    .argument('<modid>', 'module id (integer, int32)')
    .argument('<cmdid>', 'command id (integer, int32)')
    .argument('<port>', 'the port this host serves on (1-65535)')
    .option('--ip <ip>', "the host's IPv4 address (default: the agent's own address)")
    .option('--weight <n>', `share of calls relative to the route's other hosts (1-${MAX_WEIGHT})`, '1')
    .option(
      '--ttl <s>',
      `seconds the registration outlives its last renewal (${MIN_LEASE_TTL_S}-${MAX_LEASE_TTL_S}); renewed every ttl/3`,
      String(DEFAULT_LEASE_TTL_S),
    )
    .option('--agent <ip>', 'agent address', '127.0.0.1')
    .option('--ports <list>', 'agent UDP ports', '8888,8889,8890')
    .option('--timeout <ms>', 'per-request timeout in ms', '1000')
    .addHelpText(
      'after',
      '\nExamples:\n  lars route register 1 1 9000\n  lars route register 1 1 9000 --ip 10.0.0.5 --weight 3 --ttl 5\n\nSee docs/registration.md.',
    )
    .action(async (modid: string, cmdid: string, port: string, flags: RouteRegisterFlags) =>
      runRouteRegister({ modid, cmdid, port }, flags),
    );
}
