/**
 * Preloaded (`node --import`) into every process `lars up` starts, before the service command runs.
 * It adds, without touching the services' code, what a supervised child needs:
 *
 * - Once asked to stop (SIGTERM/SIGINT), the IPC channel must not keep the process alive. A
 *   node:cluster worker's channel is ref'd (the cluster module listens for 'disconnect'), so a
 *   service that closed gracefully would otherwise never exit and be SIGKILLed at drain_timeout.
 *   Not earlier: while starting, a worker's listen() waits for the master's answer over that very
 *   channel, and an unref'd channel would let the process exit in the middle. An explicit unref()
 *   sticks, even when 'message' listeners are added later. A signal that arrives before the
 *   service installed its own handler keeps its default meaning: the process exits. Signals after
 *   the first are ignored: the close they would interrupt is the graceful one.
 * - No orphans: node:cluster already exits a worker whose IPC channel closes unexpectedly (the master
 *   died, even by SIGKILL). As a second line, the parent pid is checked every second: a child that
 *   was re-parented exits.
 * - SIGHUP belongs to the master (reload). A terminal hang-up sends it to the whole process group;
 *   children ignore it instead of dying from its default action.
 */
import { SUPERVISOR_ENV } from './child-ipc.js';

/** How often a supervised child checks that its master is still its parent. */
export const PARENT_CHECK_MS = 1_000;
/** Exit status of a child that found itself orphaned. */
export const ORPHAN_EXIT_CODE = 70;

/** Exit status of a child stopped by a signal before its service handled signals (128 + signal). */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

if (process.env[SUPERVISOR_ENV.SERVICE] !== undefined && process.channel) {
  // Ctrl-C in a terminal signals the whole process group: the child gets SIGINT from the terminal
  // and SIGTERM from the master. The first starts the graceful close; later ones are ignored here
  // (the master SIGKILLs what is left at drain_timeout, or at once on a second Ctrl-C).
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      process.channel?.unref();
      if (stopping) return;
      stopping = true;
      if (process.listenerCount(sig) === 1) process.exit(SIGNAL_EXIT[sig]);
    });
  }
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      process.stderr.write(
        `lars ${process.env[SUPERVISOR_ENV.SERVICE]}: master (pid ${parent}) is gone; exiting\n`,
      );
      process.exit(ORPHAN_EXIT_CODE);
    }
  }, PARENT_CHECK_MS);
  timer.unref();
  process.on('SIGHUP', () => {});
}
