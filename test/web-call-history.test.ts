import { connect, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LoadBalancer } from '../src/agent/load-balancer.js';
import { encodeFrame, encodeMessage, ipToWire, MsgId } from '../src/protocol/index.js';
import { ReporterService } from '../src/reporter/index.js';
import { callHistory } from '../src/web/call-health.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';
import { waitFor } from './helpers/latch.js';
import { sqliteWorkerScript } from './helpers/worker-scripts.js';

/**
 * Issue 16: the console's call-health chart shows the calls each route really had per minute. A
 * real load balancer (the agent's) serves 150 calls a second to two hosts for a few minutes of
 * simulated time, with its windows resetting as they do; every second it reports to a real reporter,
 * which stores the rows; the chart's series come from those stored rows. Before, the chart plotted
 * the latest window counters of each minute: ~2,000 for a route carrying 9,000 calls a minute.
 */
const CALLS_PER_S = 150;
const MINUTES = 3;
const T0_MS = 1_700_000_040_000; // the start of a minute

function connectAgent(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
    onTestFinished(() => void s.destroy());
  });
}

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'call history per minute'), () => {
    it('9,000 calls a minute plot as 9,000 a minute, from rows the reporter stored', async () => {
      const { store, url } = await freshStore(b);
      let nowMs = T0_MS;
      const svc = new ReporterService({
        dbUrl: url,
        host: '127.0.0.1',
        port: 0,
        maxConnections: 10,
        maxOutboundBytes: 1 << 20,
        sqliteWorkerScript,
        now: () => nowMs,
      });
      onTestFinished(() => svc.destroy());
      const { port } = await svc.start();
      const agent = await connectAgent(port);

      const lb = new LoadBalancer(1, 2, {});
      lb.updateRoute(
        [
          { ip: ipToWire('10.0.0.1'), port: 8001 },
          { ip: ipToWire('10.0.0.2'), port: 8002 },
        ],
        nowMs,
      );
      const caller = ipToWire('192.168.0.10');
      let reports = 0;
      for (let s = 0; s < MINUTES * 60; s++) {
        nowMs = T0_MS + s * 1000;
        for (let i = 0; i < CALLS_PER_S; i++) {
          const a = lb.getHost(nowMs);
          lb.report(a.host!.ip, a.host!.port, 0, 1, nowMs);
        }
        // The agent's report of this second, received at this second (the reporter's clock).
        const msg = { modid: 1, cmdid: 2, caller, results: lb.snapshotForReport(), ts: nowMs / 1000 };
        agent.write(encodeFrame(MsgId.ReportStatusRequest, encodeMessage(MsgId.ReportStatusRequest, msg)));
        reports++;
        await waitFor(() => svc.stats.reports >= reports, 10_000, `report ${reports} received`);
      }
      await svc.close(10_000);

      const nowS = nowMs / 1000;
      const h = await callHistory(store, { modid: 1, cmdid: 2, range: 'hour', nowS });
      const at = (m: number) => h.minutes.indexOf(T0_MS / 1000 + m * 60);
      // Minute 0 has no earlier totals to count from: left out, not guessed.
      expect(h.succ[at(0)]).toBeNull();
      for (let m = 1; m < MINUTES; m++) {
        expect({ minute: m, calls: h.succ[at(m)] }).toEqual({ minute: m, calls: CALLS_PER_S * 60 });
        expect(h.err[at(m)]).toBe(0);
      }
      expect(h.exact).toBe(true);

      // What the chart showed before: the latest window counters of the minute, far below.
      const latest = await store.db
        .selectFrom('lars_call_history')
        .select((eb) => eb.fn.sum<number>('succ_cnt').as('succ'))
        .where('minute', '=', T0_MS / 1000 + 60)
        .executeTakeFirst();
      expect(Number(latest?.succ)).toBeLessThan((CALLS_PER_S * 60) / 2);
    });
  });
});
