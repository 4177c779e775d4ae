import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  bucketLow,
  bucketOf,
  decodeReply,
  encodeGetHostRequest,
  encodeReportRequest,
  percentileOf,
  type QpsSummary,
} from '../src/cli/qps-load.js';
import {
  decodeMessage,
  encodeFrame,
  encodeMessage,
  ipToWire,
  MsgId,
  RetCode,
} from '../src/protocol/index.js';
import { waitFor } from './helpers/latch.js';
import { startSeededAgent } from './helpers/seeded-agent.js';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const CLI_BUILT = existsSync(CLI);

describe('lars test qps (issue 17)', () => {
  it('encodes requests as the generic codec reads them, and reads its replies', () => {
    for (const [seq, modid, cmdid] of [
      [1, 1, 1],
      [64, -5, 0x7fffffff],
      [0xffffffff, 0, -1],
    ] as const) {
      const g = encodeGetHostRequest(seq, modid, cmdid);
      expect(decodeMessage(MsgId.GetHostRequest, g.subarray(8))).toEqual({ seq, modid, cmdid });
      expect(g.readInt32LE(4)).toBe(g.length - 8);
    }
    const ip = ipToWire('192.168.1.177');
    const r = encodeReportRequest(-3, 9, ip, 7777);
    expect(decodeMessage(MsgId.ReportRequest, r.subarray(8))).toMatchObject({
      modid: -3,
      cmdid: 9,
      host: { ip, port: 7777 },
      retcode: 0,
    });
    const reply = encodeFrame(
      MsgId.GetHostResponse,
      encodeMessage(MsgId.GetHostResponse, {
        seq: 300,
        modid: 1,
        cmdid: 1,
        retcode: 0,
        host: { ip, port: 7777 },
      }),
    );
    expect(decodeReply(reply)).toBe(true);
    const none = encodeFrame(
      MsgId.GetHostResponse,
      encodeMessage(MsgId.GetHostResponse, { seq: 5, modid: 1, cmdid: 1, retcode: RetCode.OVERLOAD }),
    );
    expect(decodeReply(none)).toBe(true);
    expect(decodeReply(encodeFrame(MsgId.GetHostRequest, new Uint8Array()))).toBe(false);
  });

  it('keeps latencies within one bucket (1/32) and reads percentiles from them', () => {
    for (const us of [0, 5, 127, 128, 129, 1000, 12_345, 999_999]) {
      const low = bucketLow(bucketOf(us));
      expect(low).toBeLessThanOrEqual(us);
      expect(us - low).toBeLessThanOrEqual(Math.max(1, us / 32));
    }
    const hist = new Int32Array(bucketOf(1e9) + 1);
    for (let i = 0; i < 99; i++) hist[bucketOf(10)]! += 1;
    hist[bucketOf(5000)]! += 1;
    expect(percentileOf(hist, 0.5)).toBe(10);
    expect(percentileOf(hist, 0.99)).toBe(10);
    expect(percentileOf(hist, 0.999)).toBeGreaterThan(4800);
  });

  it.skipIf(!CLI_BUILT)(
    'drives a real agent from the first second and reports rate, p50 and p99',
    async () => {
      const hosts = [1, 2].map((h) => ({ ip: ipToWire(`10.0.0.${h}`), port: 9000 + h }));
      const { agent, ports } = await startSeededAgent(
        [1, 2].map((modid) => ({ modid, cmdid: 1, hosts })),
        { ports: [0, 0, 0] },
      );
      const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(
          process.execPath,
          [CLI, 'test', 'qps', '2', '--ports', ports.join(','), '--duration', '2', '--json'],
          { timeout: 60_000 },
          (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }),
        ),
      );
      expect(out).toMatchObject({ code: 0, stderr: '' });
      const s = JSON.parse(out.stdout) as QpsSummary;
      expect(s.threads).toBe(2);
      expect(s.perSecond).toHaveLength(2);
      expect(s.perSecond.every((n) => n > 0)).toBe(true);
      expect(s.calls).toBe(s.perSecond.reduce((a, b) => a + b, 0));
      expect(s.noHost).toBe(0);
      expect(s.p99Us).toBeGreaterThanOrEqual(s.p50Us);
      // Every counted call was a get_host the agent answered, each followed by a report.
      expect(agent.core.stats.getHost).toBeGreaterThanOrEqual(s.calls);
      // The last reports may still sit in the agent's socket when the tool exits.
      await waitFor(() => agent.core.stats.report >= s.calls, 5_000, 'every report read by the agent');
      expect(agent.core.stats.unknownHostReports).toBe(0);
    },
  );
});
