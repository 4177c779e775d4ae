/**
 * Entry of one agent shard thread (started by agent-threads.ts). It runs an AgentService on the
 * ports it owns, forwards requests for routes owned by sibling shards over MessagePorts, answers
 * theirs, reports route changes and statistics to the parent, and closes on request.
 */
import { isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { isLogLevel, JsonLogger } from '../log/json-logger.js';
import {
  AgentService,
  type AgentServiceOptions,
  type ForwardedAnswer,
  type ForwardedRequest,
} from './agent-service.js';
import { ownerShard } from './agent-shards.js';

export interface ShardWorkerData {
  shard: number;
  shardCount: number;
  portCount: number;
  /** Global indexes of the ports this shard binds, and the ports themselves. */
  portIndexes: number[];
  options: Omit<AgentServiceOptions, 'shard' | 'onRouteChanged' | 'logger' | 'http' | 'now'>;
  logLevel: string;
}

/** Parent -> shard. */
export type ToShard =
  | { t: 'siblings'; ports: Array<MessagePort | null> }
  | { t: 'seed'; routes: Array<{ modid: number; cmdid: number; hosts: Array<{ ip: number; port: number }> }> }
  | { t: 'stats' }
  | { t: 'close'; graceful: boolean };

/** Shard -> parent. */
export type FromShard =
  | { t: 'ready'; ports: number[] }
  | { t: 'route'; modid: number; cmdid: number; hosts: Array<{ ip: number; port: number }> | null }
  | { t: 'stats'; shard: number; health: Record<string, unknown>; metrics: unknown[] }
  | { t: 'closed' };

/** Shard -> shard. */
type Sibling =
  | { t: 'fwd'; from: number; req: ForwardedRequest }
  | { t: 'reply'; endpoint: number; address: string; port: number; answer: ForwardedAnswer };

async function main(data: ShardWorkerData, parent: MessagePort): Promise<void> {
  let siblings: Array<MessagePort | null> = [];
  const send = (m: FromShard) => parent.postMessage(m);
  const logger = new JsonLogger({
    level: isLogLevel(data.logLevel) ? data.logLevel : 'info',
    base: { component: 'agent', shard: data.shard },
  });
  const agent: AgentService = new AgentService({
    ...data.options,
    // The fast path's segment of a port holds the routes whose original port it is (issue 18).
    ...(data.options.fastPath
      ? { fastPath: { ...data.options.fastPath, portIndexes: data.portIndexes, portCount: data.portCount } }
      : {}),
    logger,
    http: false,
    shard: {
      owns: (modid, cmdid) => ownerShard(modid, cmdid, data.portCount, data.shardCount) === data.shard,
      ownsRegistrations: data.shard === 0,
      forward: (req) => {
        // Registrations all live in shard 0 (one lease batch per interval for the whole agent).
        const owner =
          req.kind === 'register' || req.kind === 'deregister'
            ? 0
            : ownerShard(req.msg.modid, req.msg.cmdid, data.portCount, data.shardCount);
        siblings[owner]?.postMessage({ t: 'fwd', from: data.shard, req } satisfies Sibling);
      },
    },
    onRouteChanged: (modid, cmdid, hosts) =>
      send({ t: 'route', modid, cmdid, hosts: hosts ? [...hosts] : null }),
  });

  const onSibling = (m: Sibling): void => {
    try {
      serveSibling(m);
    } catch (err) {
      // A reply that cannot be sent (shutting down) must not kill the shard.
      logger.warn({ err }, 'forwarded request failed');
    }
  };
  const serveSibling = (m: Sibling): void => {
    if (m.t === 'fwd') {
      const answer = agent.answer(m.req);
      if (answer) {
        siblings[m.from]?.postMessage({
          t: 'reply',
          endpoint: m.req.endpoint,
          address: m.req.address,
          port: m.req.port,
          answer,
        } satisfies Sibling);
      }
    } else {
      agent.replyVia(m.endpoint, m.address, m.port, m.answer);
    }
  };

  parent.on('message', (m: ToShard) => {
    switch (m.t) {
      case 'siblings':
        siblings = m.ports;
        for (const p of siblings) p?.on('message', onSibling);
        break;
      case 'seed':
        agent.seed(m.routes);
        break;
      case 'stats':
        void agent.registry
          .getMetricsAsJSON()
          .then((metrics) => send({ t: 'stats', shard: data.shard, health: agent.health(), metrics }));
        break;
      case 'close':
        void (m.graceful ? agent.close() : agent.destroy()).then(() => {
          for (const p of siblings) p?.close();
          send({ t: 'closed' });
          parent.close();
        });
        break;
    }
  });
  const { ports } = await agent.start();
  send({ t: 'ready', ports });
}

if (!isMainThread && parentPort && (workerData as { larsAgentShard?: ShardWorkerData })?.larsAgentShard) {
  void main((workerData as { larsAgentShard: ShardWorkerData }).larsAgentShard, parentPort);
}
