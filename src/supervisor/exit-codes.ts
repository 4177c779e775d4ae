/**
 * Exit status of `lars up` (the master): tells a process manager or a script what happened. The table
 * is documented in docs/operations.md; keep both in step.
 */
export const ExitCode = {
  /** Stopped on request (SIGINT, SIGTERM, `lars stop`); every child finished by itself in time. */
  STOPPED: 0,
  /** Could not start: bad configuration, data directory or database, another master on the data
   * directory, or a service that gave up (or never became ready) before the stack was up. */
  START_FAILED: 1,
  /** Stopped on request, but some children were still running at drain_timeout and were SIGKILLed
   * (or a second SIGINT/SIGTERM asked for an immediate stop). */
  STOPPED_KILLED: 3,
  /** Stopped on request after running degraded: at least one service had given up (crash loop). */
  STOPPED_DEGRADED: 4,
  /** Every service gave up: nothing left to supervise, so the master stopped by itself. */
  ALL_FAILED: 5,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Exit status of `lars status`: 0 all running, 1 running with a service failed or not serving, 3 not running. */
export const StatusExitCode = { OK: 0, DEGRADED: 1, NOT_RUNNING: 3 } as const;

/** Exit status of `lars stop`: 0 stopped (or was not running), 1 the master did not exit in time. */
export const StopExitCode = { OK: 0, TIMEOUT: 1 } as const;
