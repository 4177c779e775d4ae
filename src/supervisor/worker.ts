import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import { TimeoutError, WorkerError } from '../errors.js';
import { LISTEN_FDS_ENV, listenKey } from '../net/inherited-sockets.js';
import { SupervisorMsg, type SupervisorMessage } from './child-ipc.js';
import type { ListenSpec } from './listen-sockets.js';
import { LineSplitter } from './line-splitter.js';
import type { ServiceName, WorkerLaunch } from './services.js';

/** The compiled CLI every child runs (`node dist/src/cli/main.js <command> ...`). */
export const CLI_SCRIPT = fileURLToPath(new URL('../cli/main.js', import.meta.url));
/** Preloaded into every child; see child-hook.ts. */
export const CHILD_HOOK_URL = new URL('./child-hook.js', import.meta.url).href;

export type WorkerState = 'starting' | 'running' | 'stopping' | 'exited';

export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Where children's output lines go, already split; `stream` tells stdout from stderr. */
export type LogSink = (label: string, line: string, stream: 'out' | 'err') => void;

export interface SpawnOptions {
  service: ServiceName;
  slot: number;
  launch: WorkerLaunch;
  /** READY comes as an IPC message (true) or as a listen on launch.readyPort (false). */
  readyMessage: boolean;
  startTimeoutMs: number;
  log: LogSink;
  /** Held listening sockets (listen-sockets.ts) to pass on as descriptors 4, 5, ... of the child. */
  inherit?: ReadonlyArray<{ spec: ListenSpec; fd: number }>;
}

/** The child's first descriptor after stdin, stdout, stderr and the IPC channel. */
const FIRST_INHERITED_FD = 4;

/**
 * One child process of a service, started with node:cluster so that every listen()/bind() it makes
 * goes through the master: TCP workers of a service share one listening socket and UDP sockets are
 * shared handles (the agent's replacement binds the same ports while the old one still serves).
 *
 * Lifecycle (explicit states, STYLE §13): starting -> running (READY, or the listen on readyPort)
 * -> stopping (stop() sent SIGTERM) -> exited. A child may exit from any state; `stopRequested`
 * tells an asked-for exit from a crash. Node reaps the process (waitpid on SIGCHLD): no zombies.
 */
export class ManagedWorker extends EventEmitter {
  readonly service: ServiceName;
  readonly slot: number;
  readonly worker: Worker;
  readonly pid: number;
  readonly startedAt = Date.now();
  readonly ports: Record<string, number | number[]>;
  readonly healthUrl: string | undefined;
  /** The public sockets this worker serves (what the master must keep holding for it). */
  readonly listen: readonly ListenSpec[];
  readyAt: number | undefined;
  exitInfo: WorkerExit | undefined;
  /** Set when the master asked this worker to go (stop, replacement): its exit is not a crash. */
  stopRequested = false;
  /** Set when the master had to SIGKILL it. */
  killed = false;
  private _state: WorkerState = 'starting';
  readonly ready: Promise<void>;
  readonly exited: Promise<WorkerExit>;
  private startTimer: NodeJS.Timeout | undefined;

  constructor(opts: SpawnOptions) {
    super();
    this.service = opts.service;
    this.slot = opts.slot;
    this.ports = { ...opts.launch.ports };
    this.healthUrl = opts.launch.healthUrl;
    this.listen = opts.launch.listen;
    const inherit = opts.inherit ?? [];
    const env = { ...opts.launch.env };
    if (inherit.length > 0) {
      const fds: Record<string, number> = {};
      inherit.forEach(
        (h, i) => (fds[listenKey(h.spec.proto, h.spec.host, h.spec.port)] = FIRST_INHERITED_FD + i),
      );
      env[LISTEN_FDS_ENV] = JSON.stringify(fds);
    }
    cluster.setupPrimary({
      exec: CLI_SCRIPT,
      args: opts.launch.args,
      // Debugger flags of the master would make every child fight for the inspector port.
      execArgv: [
        ...process.execArgv.filter((a) => !a.startsWith('--inspect')),
        ...(opts.launch.nodeFlags ?? []),
        '--import',
        CHILD_HOOK_URL,
      ],
      silent: true,
      // The held sockets follow the IPC channel as descriptors 4, 5, ... (see LISTEN_FDS_ENV).
      stdio: ['pipe', 'pipe', 'pipe', 'ipc', ...inherit.map((h) => h.fd)],
    });
    this.worker = cluster.fork(env);
    this.pid = this.worker.process.pid ?? 0;
    const label = `${opts.service}[${this.pid}]`;
    pipeLines(this.worker.process.stdout, (line) => opts.log(label, line, 'out'));
    pipeLines(this.worker.process.stderr, (line) => opts.log(label, line, 'err'));

    this.exited = new Promise((resolve) => {
      this.worker.process.once('exit', (code, signal) => {
        if (this.startTimer) clearTimeout(this.startTimer);
        this.exitInfo = { code, signal };
        this.transition('exited');
        resolve(this.exitInfo);
      });
    });
    // A failed spawn or send on a dying channel must not crash the master; exit follows.
    this.worker.on('error', () => {});

    this.ready = new Promise<void>((resolve, reject) => {
      const done = (): void => {
        if (this._state !== 'starting') return;
        if (this.startTimer) clearTimeout(this.startTimer);
        this.readyAt = Date.now();
        this.transition('running');
        resolve();
      };
      if (opts.readyMessage) {
        this.worker.on('message', (m: SupervisorMessage) => {
          if (m?.type !== SupervisorMsg.READY) return;
          const ports = (m as { ports?: Record<string, number | number[]> }).ports;
          // The master chose the ports; what the child reports only fills in roles it did not know.
          if (ports) for (const [k, v] of Object.entries(ports)) if (!(k in this.ports)) this.ports[k] = v;
          done();
        });
      } else {
        this.worker.on('listening', (address: { port?: number }) => {
          if (address.port === opts.launch.readyPort) done();
        });
      }
      const timeoutErr = new TimeoutError(
        `${opts.service} worker ${this.pid} did not become ready within ${opts.startTimeoutMs} ms`,
      );
      this.startTimer = setTimeout(() => {
        if (this._state !== 'starting') return;
        reject(timeoutErr);
        // A worker that never became ready is a crash: kill it, the exit handler counts it.
        this.kill();
      }, opts.startTimeoutMs);
      this.startTimer.unref();
      void this.exited.then((e) => {
        reject(
          new WorkerError(
            `${opts.service} worker ${this.pid} exited before it was ready (${describeExit(e)})`,
          ),
        );
      });
    });
    // Callers that do not wait for readiness must not see an unhandled rejection.
    this.ready.catch(() => {});
  }

  get state(): WorkerState {
    return this._state;
  }

  /**
   * Sends a message (and a handle, which leaves this process). False only when it could not be
   * queued (channel gone). node's own `false` means "backlog is long", not failure: handles are
   * sent one at a time, so a busy handoff always has a backlog; ignoring it is what keeps a socket
   * from being sent twice.
   */
  send(message: SupervisorMessage, handle?: unknown, callback?: (err: Error | null) => void): boolean {
    if (!this.worker.isConnected()) return false;
    try {
      this.worker.send(message, handle as never, { keepOpen: false } as never, callback ?? (() => {}));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Asks the child to finish (SIGTERM: services close gracefully) and resolves when it exited;
   * SIGKILLs it when it is still there at `deadline` (ms since epoch). Idempotent.
   */
  async stop(deadline: number): Promise<WorkerExit> {
    this.stopRequested = true;
    if (this._state === 'exited') return this.exitInfo as WorkerExit;
    if (this._state !== 'stopping') {
      this.transition('stopping');
      this.signal('SIGTERM');
    }
    const timer = setTimeout(() => this.kill(), Math.max(0, deadline - Date.now()));
    timer.unref();
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL now (the exit event still follows). */
  kill(): void {
    if (this._state === 'exited') return;
    this.killed = true;
    this.signal('SIGKILL');
  }

  /** Asks an agent to write its route cache, waiting at most `timeoutMs`. */
  flushCache(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), timeoutMs);
      timer.unref();
      const onMessage = (m: SupervisorMessage): void => {
        if (m?.type === SupervisorMsg.CACHE_FLUSHED) finish(true);
      };
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        this.worker.off('message', onMessage);
        resolve(ok);
      };
      this.worker.on('message', onMessage);
      if (!this.send({ type: SupervisorMsg.FLUSH_CACHE })) finish(false);
    });
  }

  private signal(sig: NodeJS.Signals): void {
    try {
      this.worker.process.kill(sig);
    } catch {
      // Already gone: the exit event follows.
    }
  }

  private transition(to: WorkerState): void {
    if (this._state === to || this._state === 'exited') return;
    this._state = to;
    this.emit('state', to);
  }
}

export function describeExit(e: WorkerExit): string {
  return e.signal ? `killed by ${e.signal}` : `exit code ${e.code}`;
}

function pipeLines(stream: NodeJS.ReadableStream | null | undefined, onLine: (line: string) => void): void {
  if (!stream) return;
  const splitter = new LineSplitter();
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    for (const line of splitter.push(chunk)) onLine(line);
  });
  stream.on('end', () => {
    for (const line of splitter.flush()) onLine(line);
  });
  stream.on('error', () => {});
}
