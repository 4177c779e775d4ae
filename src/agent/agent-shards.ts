import { agentPortIndex } from '../protocol/agent-port.js';

/**
 * Which shard owns a route when the agent runs on several threads. The original client sends a
 * route's requests to port `ports[agentPortIndex(modid, cmdid, ports.length)]`; the shard that
 * binds that port owns the route, so requests from such clients (ours included) never cross
 * threads. Requests that arrive on another port are forwarded to the owner.
 */

export function shardOfPort(portIndex: number, shardCount: number): number {
  return portIndex % shardCount;
}

export function ownerShard(modid: number, cmdid: number, portCount: number, shardCount: number): number {
  return shardOfPort(agentPortIndex(modid, cmdid, portCount), shardCount);
}

/** The (global) port indexes a shard binds. */
export function portsOfShard(shard: number, portCount: number, shardCount: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < portCount; i++) if (shardOfPort(i, shardCount) === shard) out.push(i);
  return out;
}
