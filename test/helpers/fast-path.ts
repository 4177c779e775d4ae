import { fork } from 'node:child_process';
import { onTestFinished } from 'vitest';
import { AgentCore } from '../../src/agent/agent-core.js';
import { AgentFastPath, type FastPathSettings } from '../../src/agent/agent-fast-path.js';
import type { LoadBalanceConfig } from '../../src/agent/lb-config.js';
import { silentLogger } from '../../src/log/silent.js';
import { loadNative, nativeStatus } from '../../src/native/index.js';
import { ipToWire } from '../../src/protocol/index.js';
import {
  fastPathSegmentName,
  H_HOSTS_PER_ROUTE,
  H_INDEX_OFFSET,
  H_INDEX_SLOTS,
  H_ROUTES_OFFSET,
  slotWords,
  type SlotPlace,
} from '../../src/protocol/shm-table.js';
import { tsBootstrap } from './shm.js';

/** Under CI the addon must be there (a skip would hide a broken build); elsewhere skip without it. */
export const skipNoAddon = !nativeStatus().loaded && process.env.CI !== 'true';

export interface Peer {
  pid: number;
  /** Resolves when the peer says it is ready (jobs with `sync: true`, 'hammer', 'stuck'). */
  ready: Promise<Record<string, unknown>>;
  go(): void;
  result: Promise<unknown>;
  kill(): void;
  exited: Promise<void>;
}

/** A child process running test/fixtures/fast-path-peer.ts on one job; killed when the test ends. */
export function startPeer(job: Record<string, unknown>): Peer {
  const proc = fork(
    new URL('../fixtures/fast-path-peer.ts', import.meta.url).pathname,
    [JSON.stringify(job)],
    {
      execArgv: ['--import', tsBootstrap],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  onTestFinished(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  let readyResolve!: (m: Record<string, unknown>) => void;
  const ready = new Promise<Record<string, unknown>>((r) => (readyResolve = r));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const result = new Promise<unknown>((resolve, reject) => {
    proc.on('message', (m: { ready?: boolean; reserved?: number; result?: unknown; error?: string }) => {
      if (m.error) reject(new Error(m.error));
      else if ('result' in m) resolve(m.result);
      else readyResolve(m);
    });
    proc.once('exit', (code, signal) =>
      reject(new Error(`peer exited (${code ?? signal}) without a result`)),
    );
  });
  result.catch(() => {});
  return {
    pid: proc.pid!,
    ready,
    go: () => proc.send('go'),
    result,
    kill: () => proc.kill('SIGKILL'),
    exited,
  };
}

/**
 * The agent's routing core and its fast path without sockets: routes are given with `route()`,
 * time is `clock.ms`, and `fast.drainNow()` applies ring results and rewrites slots at once.
 */
export function coreWithFastPath(
  ports: number[],
  config: LoadBalanceConfig,
  settings: FastPathSettings = {},
): {
  core: AgentCore;
  fast: AgentFastPath;
  clock: { ms: number };
  route(m: number, c: number, hosts: Array<[string, number]>): void;
} {
  const clock = { ms: 1_000_000 };
  const box: { fast?: AgentFastPath } = {};
  const core = new AgentCore({
    config,
    reportIntervalS: 1,
    callerIp: ipToWire('127.0.0.1'),
    now: () => clock.ms,
    links: { pull: () => false, report: () => {}, balancerChanged: (m, c) => box.fast?.markDirty(m, c) },
  });
  const fast = (box.fast = AgentFastPath.start({
    ...settings,
    core,
    ports,
    bindHost: '127.0.0.1',
    probeNum: config.probeNum,
    logger: silentLogger,
  }));
  if (!fast) throw new Error('fast path did not start');
  const f = fast;
  onTestFinished(() => f.close());
  return {
    core,
    fast: f,
    clock,
    route: (modid, cmdid, hosts) => {
      core.applyRoute({ modid, cmdid, host: hosts.map(([ip, port]) => ({ ip: ipToWire(ip), port })) });
      f.drainNow();
    },
  };
}

/** The words of the agent's segment for `port`, mapped separately (as another process would). */
export function segmentWords(port: number): Int32Array {
  const addon = loadNative()!;
  const ab = addon.map(fastPathSegmentName(process.getuid?.() ?? 0, port), 0, false);
  onTestFinished(() => void addon.unmap(ab));
  return new Int32Array(ab);
}

/** Where a segment's route slots are, read from its header (what findSlot needs). */
export function slotPlace(w: Int32Array): SlotPlace {
  return {
    indexOffset: w[H_INDEX_OFFSET] as number,
    indexMask: (w[H_INDEX_SLOTS] as number) - 1,
    routesOffset: w[H_ROUTES_OFFSET] as number,
    slotLen: slotWords(w[H_HOSTS_PER_ROUTE] as number),
  };
}
