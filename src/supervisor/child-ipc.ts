import type { Socket } from 'node:net';

/**
 * The IPC contract between the `lars up` master and the service processes it starts (node:cluster
 * workers running `lars dns|agent|reporter|web`). Service commands use these helpers; each is a
 * no-op when the process was not started by a supervisor, so the commands behave the same when run
 * by hand.
 *
 * Environment names deliberately do not start with `LARS_`: that prefix is reserved for settings
 * (`LARS_<SECTION>_<KEY>`), and an unknown one stops a service at start.
 */
export const SUPERVISOR_ENV = {
  /** Service name (dns, agent, reporter, web) of a supervised child. */
  SERVICE: 'LARSUP_SERVICE',
  /** Slot index of the worker within its service. */
  SLOT: 'LARSUP_SLOT',
  /** "1" when dns runs in handoff mode: connections arrive over IPC, not from its own listener. */
  HANDOFF: 'LARSUP_HANDOFF',
} as const;

export const SupervisorMsg = {
  /** child -> master: started and serving; carries the bound ports. */
  READY: 'lars:ready',
  /** master -> dns child (handoff mode): an accepted connection, passed as the message's handle. */
  CONN: 'lars:conn',
  /** master -> agent: write the route cache now (a replacement is about to load it). */
  FLUSH_CACHE: 'lars:flush-cache',
  /** agent -> master: the cache is written. */
  CACHE_FLUSHED: 'lars:cache-flushed',
} as const;

export interface ReadyMessage {
  type: typeof SupervisorMsg.READY;
  /** Bound ports by role: tcp, udp, http. */
  ports: Record<string, number | number[]>;
}

export interface SupervisorMessage {
  type: string;
  [k: string]: unknown;
}

/** True in a process started by `lars up` (with an IPC channel to the master). */
export function isSupervised(): boolean {
  return typeof process.send === 'function' && process.env[SUPERVISOR_ENV.SERVICE] !== undefined;
}

/** True when this dns process gets its connections from the master (handoff mode). */
export function isHandoffChild(): boolean {
  return isSupervised() && process.env[SUPERVISOR_ENV.HANDOFF] === '1';
}

/** Sends a message to the master; silently skipped when unsupervised or the master is gone. */
export function tellSupervisor(message: SupervisorMessage): void {
  if (!isSupervised() || !process.connected) return;
  process.send?.(message, undefined, {}, () => {});
}

/** Tells the master this service is serving, with its bound ports. */
export function notifyReady(ports: ReadyMessage['ports']): void {
  tellSupervisor({ type: SupervisorMsg.READY, ports });
}

/**
 * Calls `handler` for each master message of `type` (with the passed handle, if any). Returns the
 * unsubscribe function; call it at shutdown. No-op when unsupervised.
 */
export function onSupervisorMessage(
  type: string,
  handler: (message: SupervisorMessage, handle: unknown) => void,
): () => void {
  if (!isSupervised()) return () => {};
  const listener = (message: unknown, handle: unknown): void => {
    if (message && typeof message === 'object' && (message as SupervisorMessage).type === type) {
      handler(message as SupervisorMessage, handle);
    }
  };
  process.on('message', listener);
  return () => void process.off('message', listener);
}

/**
 * Handoff mode: hands every connection the master passes to `adopt` (which must treat it as freshly
 * accepted). Returns the unsubscribe function.
 */
export function onHandedConnection(adopt: (socket: Socket) => void): () => void {
  return onSupervisorMessage(SupervisorMsg.CONN, (_m, handle) => {
    if (handle && typeof (handle as Socket).write === 'function') adopt(handle as Socket);
  });
}
