import type { Config } from '../config/index.js';

/** The `[supervisor]` section in the units the master works with (ms), frozen. */
export interface SupervisorSettings {
  readonly workers: Readonly<Record<'bus' | 'dns' | 'reporter' | 'web' | 'agent' | 'shm', number>>;
  readonly dnsHandoff: boolean;
  readonly restartMax: number;
  readonly restartWindowMs: number;
  readonly restartDelayMs: number;
  readonly restartDelayMaxMs: number;
  readonly drainTimeoutMs: number;
  readonly startTimeoutMs: number;
}

export function supervisorSettings(config: Config): SupervisorSettings {
  const s = config.supervisor;
  return Object.freeze({
    workers: Object.freeze({
      bus: s.bus_workers,
      dns: s.dns_workers,
      reporter: s.reporter_workers,
      web: s.web_workers,
      agent: s.agent_workers,
      shm: s.shm_workers,
    }),
    dnsHandoff: s.dns_handoff,
    restartMax: s.restart_max,
    restartWindowMs: s.restart_window * 1000,
    restartDelayMs: s.restart_delay * 1000,
    // A cap below the first delay would be rejected by the policy; the first delay wins.
    restartDelayMaxMs: Math.max(s.restart_delay, s.restart_delay_max) * 1000,
    drainTimeoutMs: s.drain_timeout * 1000,
    startTimeoutMs: s.start_timeout * 1000,
  });
}
