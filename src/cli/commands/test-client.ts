import type { Command } from 'commander';
import type { Host, LarsClient } from '../../api/index.js';
import { InvalidArgumentError } from '../../errors.js';
import { ipToNumber } from '../../protocol/ip.js';
import { parsePorts } from '../options.js';

/** Flags and helpers shared by the `lars test` tools (test-tools.ts, test-load.ts). */

export interface ClientFlags {
  agent: string;
  ports: string;
  timeout: string;
}

export function intArg(value: string, name: string, min = -0x80000000, max = 0x7fffffff): number {
  if (!/^-?\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new InvalidArgumentError(`${name} must be an integer ${min}..${max}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** A client for the flags; the SDK (protobuf, sockets) is loaded only by the commands that use it. */
export async function clientFrom(o: ClientFlags): Promise<LarsClient> {
  ipToNumber(o.agent === 'localhost' ? '127.0.0.1' : o.agent);
  if (parsePorts(o.ports, '--ports').includes(0))
    throw new InvalidArgumentError('--ports: port 0 is not an agent port');
  const { LarsClient } = await import('../../api/index.js');
  return new LarsClient({
    host: o.agent === 'localhost' ? '127.0.0.1' : o.agent,
    ports: parsePorts(o.ports, '--ports'),
    timeoutMs: intArg(o.timeout, '--timeout', 1, 600_000),
  });
}

export function withClientOptions(cmd: Command): Command {
  return cmd
    .option('--agent <ip>', 'agent address', '127.0.0.1')
    .option('--ports <list>', 'agent UDP ports', '8888,8889,8890')
    .option('--timeout <ms>', 'per-request timeout in ms', '1000');
}

export const fmtHost = (h: Host) => `${h.ip}:${h.port}`;
