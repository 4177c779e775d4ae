import { createSocket, type Socket } from 'node:dgram';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { AgentService } from '../src/agent/agent-service.js';
import { encodeFrame, encodeMessage, ipToWire, MsgId } from '../src/protocol/index.js';
import { waitFor } from './helpers/latch.js';
import { startSeededAgent } from './helpers/seeded-agent.js';

const ROUTES = [
  // Plain rotation.
  { modid: 1, cmdid: 1, hosts: [1, 2, 3].map((h) => ({ ip: ipToWire(`10.0.0.${h}`), port: 9000 + h })) },
  // Weighted (issue 15): smooth weighted round robin, not the rotation.
  {
    modid: -7,
    cmdid: 2,
    hosts: [1, 2, 3].map((h) => ({ ip: ipToWire(`192.168.0.${h}`), port: 8000 + h, weight: h })),
  },
];

async function startAgent(hotPath: boolean) {
  const { agent, ports } = await startSeededAgent(ROUTES, { hotPath });
  return { agent, port: ports[0]! };
}

async function udpClient(): Promise<{ socket: Socket; next: () => Promise<Buffer> }> {
  const socket = createSocket('udp4');
  onTestFinished(() => void socket.close());
  const queue: Buffer[] = [];
  socket.on('message', (m) => queue.push(m));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  return {
    socket,
    next: async () => {
      await waitFor(() => queue.length > 0, 5_000, 'agent reply');
      return queue.shift()!;
    },
  };
}

/** A script of requests: get_host on both routes, failure reports that overload a host, more get_host. */
async function play(port: number): Promise<string[]> {
  const { socket, next } = await udpClient();
  const answers: string[] = [];
  const getHost = async (seq: number, modid: number, cmdid: number) => {
    socket.send(
      encodeFrame(MsgId.GetHostRequest, encodeMessage(MsgId.GetHostRequest, { seq, modid, cmdid })),
      port,
      '127.0.0.1',
    );
    answers.push((await next()).toString('hex'));
  };
  const report = (modid: number, cmdid: number, host: { ip: number; port: number }, retcode: number) =>
    socket.send(
      encodeFrame(MsgId.ReportRequest, encodeMessage(MsgId.ReportRequest, { modid, cmdid, host, retcode })),
      port,
      '127.0.0.1',
    );
  let seq = 0;
  for (let i = 0; i < 12; i++) for (const r of ROUTES) await getHost(++seq, r.modid, r.cmdid);
  // contin_err_limit failures in a row overload the first host of each route; then probes appear.
  for (const r of ROUTES) for (let i = 0; i < 10; i++) report(r.modid, r.cmdid, r.hosts[0]!, 1);
  for (let i = 0; i < 25; i++) for (const r of ROUTES) await getHost(++seq, r.modid, r.cmdid);
  // Unknown route: NOEXIST.
  await getHost(++seq, 55, 55);
  return answers;
}

describe('agent hot path (issue 17)', () => {
  it('answers get_host and report exactly as the generic path, weighted routes included', async () => {
    const hot = await startAgent(true);
    const generic = await startAgent(false);
    const a = await play(hot.port);
    const b = await play(generic.port);
    expect(a).toEqual(b);
    // The script really went through each path.
    const requests = (svc: AgentService) => svc.registry.getSingleMetricAsString('lars_agent_requests_total');
    expect(await requests(hot.agent)).toContain('lars_agent_requests_total{msg="GetHostRequest"} 75');
    expect(await requests(hot.agent)).toContain('lars_agent_requests_total{msg="ReportRequest"} 20');
    expect(await requests(generic.agent)).toContain('lars_agent_requests_total{msg="ReportRequest"} 20');
    expect(hot.agent.core.stats.probes).toBeGreaterThan(0);
    expect(hot.agent.core.stats.probes).toBe(generic.agent.core.stats.probes);
    expect(hot.agent.core.balancer(1, 1)!.overloadCount).toBe(1);
    expect(hot.agent.core.balancer(-7, 2)!.overloadCount).toBe(1);
  });
});
