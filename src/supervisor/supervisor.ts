import cluster from 'node:cluster';
import { EventEmitter } from 'node:events';
import type { Command } from 'commander';
import type { LoadedConfig } from '../config/index.js';
import { ClosedError, WorkerError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import {
  ControlServer,
  controlPaths,
  writeStateFile,
  type ControlReply,
  type ControlRequest,
} from './control.js';
import { ExitCode } from './exit-codes.js';
import { nativeSockets } from '../native/index.js';
import { HandoffServer } from './handoff.js';
import { ListenSockets, type ListenSpec } from './listen-sockets.js';
import { PortBook } from './ports.js';
import { checkPublicPorts } from './preflight.js';
import { RestartPolicy, type RestartDecision } from './restart-policy.js';
import {
  commandAvailable,
  commandHasOption,
  resolveStackPorts,
  SERVICES,
  STOP_GROUPS,
  type LaunchContext,
  type ServiceName,
  type ServiceSpec,
} from './services.js';
import { supervisorSettings, type SupervisorSettings } from './settings.js';
import {
  fetchHealth,
  type MasterPhase,
  type ServiceState,
  type ServiceStatus,
  type StatusSnapshot,
} from './status.js';
import { describeExit, ManagedWorker, type LogSink, type WorkerExit } from './worker.js';

/** How long an agent may take to write its route cache before its replacement starts anyway. */
const CACHE_FLUSH_TIMEOUT_MS = 1_000;
/** Per-worker /healthz timeout of `lars status`. */
const HEALTH_TIMEOUT_MS = 1_000;

export interface SupervisorOptions {
  /** The CLI program: which service commands this build has, and their flags. */
  program: Command;
  dataDir: string;
  dbUrl: string;
  configFile: string | undefined;
  loaded: LoadedConfig;
  /** Re-reads the configuration (file and environment) on SIGHUP; throws ConfigError when invalid. */
  reloadConfig: () => LoadedConfig;
  /** The master's own structured log. */
  logger: Logger;
  /** Human-facing lines for the operator's terminal (give-up notices). */
  notify: (line: string) => void;
  /** Children's output, one line at a time, labelled with the service. */
  logSink: LogSink;
}

/** Per-service bookkeeping of the master. */
class ServiceRuntime {
  /** Current serving (or starting) worker of each slot. */
  slots: Array<ManagedWorker | undefined> = [];
  /** Every live process of the service: slot holders, replacements still starting, retiring ones. */
  readonly live = new Set<ManagedWorker>();
  readonly restartTimers = new Map<number, NodeJS.Timeout>();
  restarts = 0;
  gaveUp: ServiceStatus['gaveUp'];
  lastExit: string | undefined;

  constructor(
    readonly spec: ServiceSpec,
    readonly available: boolean,
    public wanted: number,
    public policy: RestartPolicy,
  ) {}

  get running(): number {
    return this.slots.filter((w) => w?.state === 'running').length;
  }
}

/**
 * The master of `lars up` (issue 7). It only manages: starts each service's workers as node:cluster
 * children running the compiled CLI, restarts crashed ones with exponential backoff and gives up
 * after restart_max crashes within restart_window, replaces workers one at a time on SIGHUP, drains
 * on SIGINT/SIGTERM, answers `lars status`/`lars stop` on its control socket, and in dns handoff
 * mode accepts dns connections and passes each to a worker.
 *
 * Phases: starting -> running <-> reloading -> stopping -> stopped. `finished` resolves with the
 * exit status (exit-codes.ts) once every child is gone.
 */
export class Supervisor extends EventEmitter {
  readonly startedAt = new Date();
  readonly finished: Promise<ExitCode>;
  private readonly opts: SupervisorOptions;
  private readonly log: Logger;
  private readonly services = new Map<ServiceName, ServiceRuntime>();
  private readonly book = new PortBook();
  /** Public sockets held across worker restarts (issue 11). */
  private readonly sockets: ListenSockets;
  private readonly paths: { socket: string; state: string };
  private readonly control: ControlServer;
  private phase: MasterPhase = 'starting';
  private ctx!: LaunchContext;
  private handoff: HandoffServer | undefined;
  private lastReload: StatusSnapshot['master']['lastReload'];
  private reloadQueued = false;
  private reloading: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private forced = false;
  private exitCode: ExitCode | undefined;
  private resolveFinished!: (code: ExitCode) => void;
  private stateWrite: NodeJS.Immediate | undefined;

  constructor(options: SupervisorOptions) {
    super();
    this.opts = options;
    this.log = options.logger;
    this.sockets = new ListenSockets(nativeSockets(), this.log);
    this.paths = controlPaths(options.dataDir);
    this.control = new ControlServer(this.paths.socket, (req) => this.onControl(req));
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
    // Every TCP worker accepts on the shared listening socket itself (the kernel spreads
    // connections); the master never touches connections except in dns handoff mode. An explicit
    // NODE_CLUSTER_SCHED_POLICY (e.g. "rr", for comparisons) wins.
    if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_NONE;
  }

  get controlSocket(): string {
    return this.paths.socket;
  }

  get context(): LaunchContext {
    return this.ctx;
  }

  /** Claims the data directory's control socket; resolves with the pid of a master already there. */
  async claim(): Promise<number | undefined> {
    return (await this.control.listen()).busyPid;
  }

  /** Releases the control socket when start() is never called (e.g. the database could not be opened). */
  async release(): Promise<void> {
    await this.control.close();
  }

  /**
   * Starts every service and waits until each is serving. Rejects (after stopping what started)
   * when a service gives up before the stack is up; the exit status is then START_FAILED.
   */
  async start(): Promise<void> {
    const { loaded } = this.opts;
    const settings = supervisorSettings(loaded.config);
    this.ctx = await this.buildContext(loaded, settings);
    for (const spec of SERVICES) {
      const available = commandAvailable(this.opts.program, spec.command);
      this.services.set(
        spec.name,
        new ServiceRuntime(spec, available, available ? spec.workers(settings) : 0, this.policy(settings)),
      );
    }
    this.changed();
    try {
      await checkPublicPorts(this.ctx, this.sockets);
      if (settings.dnsHandoff && this.ctx.runsHere('dns')) await this.openHandoff();
      for (const spec of SERVICES) {
        const rt = this.runtime(spec.name);
        if (rt.wanted === 0) continue;
        // One worker at a time: each opens the database at start (SQLite allows one writer, and a
        // start that races another one's schema check fails with "database is locked").
        for (let slot = 0; slot < rt.wanted; slot++) {
          await this.spawn(rt, slot, true);
          await this.until(
            () => rt.slots[slot]?.state === 'running',
            () => (rt.gaveUp ? new WorkerError(rt.gaveUp.message) : undefined),
          );
        }
      }
    } catch (err) {
      if (this.stopping) return;
      this.log.error({ err: (err as Error).message }, 'could not start the stack; stopping');
      this.stopping = this.shutdown('start-failed');
      await this.stopping;
      throw err;
    }
    if (this.phase === 'starting') {
      this.phase = 'running';
      this.changed();
      if (this.reloadQueued) {
        this.reloadQueued = false;
        this.requestReload();
      }
    }
  }

  /** SIGINT/SIGTERM or `lars stop`: drain. A second request while draining kills what is left. */
  requestStop(reason: string): void {
    if (this.stopping) {
      if (!this.forced) {
        this.forced = true;
        this.log.warn({ reason }, 'second stop request: killing every child now');
        for (const rt of this.services.values()) for (const w of rt.live) w.kill();
      }
      return;
    }
    this.log.info({ reason }, 'stopping: draining every service');
    this.stopping = this.shutdown('stop');
  }

  /** SIGHUP: re-read the configuration and replace workers one at a time. Queued while one runs. */
  requestReload(): void {
    if (this.phase === 'stopping' || this.phase === 'stopped') return;
    if (this.phase === 'starting' || this.reloading) {
      this.reloadQueued = true;
      return;
    }
    this.reloading = this.reload().finally(() => {
      this.reloading = undefined;
      if (this.reloadQueued && this.phase === 'running') {
        this.reloadQueued = false;
        this.requestReload();
      }
    });
  }

  /** The state of the master and of every service, with each worker's /healthz when asked. */
  async snapshot(withHealth: boolean): Promise<StatusSnapshot> {
    const services: ServiceStatus[] = [];
    for (const rt of this.services.values()) {
      const processes = [...rt.live].sort((a, b) => a.slot - b.slot || a.startedAt - b.startedAt);
      const health = withHealth
        ? await Promise.all(
            processes.map((w) =>
              w.healthUrl && w.state !== 'exited' ? fetchHealth(w.healthUrl, HEALTH_TIMEOUT_MS) : undefined,
            ),
          )
        : [];
      services.push({
        name: rt.spec.name,
        state: this.serviceState(rt),
        workers: { wanted: rt.wanted, running: rt.running },
        restarts: rt.restarts,
        recentCrashes: rt.policy.crashesInWindow(Date.now()),
        ...(rt.gaveUp ? { gaveUp: rt.gaveUp } : {}),
        listen: this.ctx && this.ctx.runsHere(rt.spec.name) ? rt.spec.listen(this.ctx) : [],
        processes: processes.map((w, i) => ({
          pid: w.pid,
          role: 'worker' as const,
          slot: w.slot,
          state: w.state,
          ports: w.ports,
          startedAt: new Date(w.startedAt).toISOString(),
          ...(health[i] ? { health: health[i] } : {}),
        })),
      });
    }
    return {
      master: {
        pid: process.pid,
        state: this.phase,
        startedAt: this.startedAt.toISOString(),
        updatedAt: new Date().toISOString(),
        dataDir: this.opts.dataDir,
        database: this.opts.dbUrl,
        configFile: this.opts.configFile ?? null,
        controlSocket: this.paths.socket,
        dnsHandoff: this.ctx?.settings.dnsHandoff ?? false,
        ...(this.exitCode !== undefined ? { exitCode: this.exitCode } : {}),
        ...(this.lastReload ? { lastReload: this.lastReload } : {}),
      },
      services,
    };
  }

  // ---------------------------------------------------------------------------------------------

  private runtime(name: ServiceName): ServiceRuntime {
    return this.services.get(name) as ServiceRuntime;
  }

  private policy(s: SupervisorSettings): RestartPolicy {
    return new RestartPolicy({
      maxCrashes: s.restartMax,
      windowMs: s.restartWindowMs,
      initialDelayMs: s.restartDelayMs,
      maxDelayMs: s.restartDelayMaxMs,
    });
  }

  private async buildContext(loaded: LoadedConfig, settings: SupervisorSettings): Promise<LaunchContext> {
    const program = this.opts.program;
    const runsHere = (name: ServiceName): boolean => {
      const spec = SERVICES.find((s) => s.name === name) as ServiceSpec;
      return commandAvailable(program, spec.command) && spec.workers(settings) > 0;
    };
    return {
      config: loaded.config,
      fileSections: loaded.fileSections,
      configFile: this.opts.configFile,
      settings,
      dataDir: this.opts.dataDir,
      dbUrl: this.opts.dbUrl,
      ports: await resolveStackPorts(
        loaded.config,
        loaded.fileSections,
        runsHere,
        this.book,
        this.opts.dataDir,
      ),
      runsHere,
      hasOption: (command, flag) => commandHasOption(program, command, flag),
      book: this.book,
    };
  }

  private async openHandoff(): Promise<void> {
    const rt = this.runtime('dns');
    const { host, port } = this.ctx.ports.dns;
    const server = new HandoffServer({
      host,
      port,
      slots: () => rt.slots.map((w) => (w?.state === 'running' ? w : undefined)),
      logger: this.log.child({ component: 'handoff' }),
    });
    await server.listen();
    const old = this.handoff;
    this.handoff = server;
    old?.close();
    this.log.info(
      { host, port },
      'dns handoff: the master accepts dns connections and hands them to workers',
    );
  }

  /**
   * Starts a worker for `slot`. `intoSlot`: it takes the slot at once (start, restart, filling an
   * empty slot); otherwise it is a replacement that takes the slot once ready (reload).
   */
  private async spawn(
    rt: ServiceRuntime,
    slot: number,
    intoSlot: boolean,
  ): Promise<ManagedWorker | undefined> {
    const launch = await rt.spec.launch(this.ctx, slot);
    if (this.stopping) return undefined;
    const inherit = launch.listen.flatMap((spec) => {
      const fd = this.sockets.fdFor(spec);
      return fd === undefined ? [] : [{ spec, fd }];
    });
    const w = new ManagedWorker({
      service: rt.spec.name,
      slot,
      launch,
      readyMessage: rt.spec.readyMessage,
      startTimeoutMs: this.ctx.settings.startTimeoutMs,
      log: this.opts.logSink,
      inherit,
    });
    rt.live.add(w);
    if (intoSlot) rt.slots[slot] = w;
    w.on('state', (state) => {
      if (state === 'running') this.handoff?.drainPending();
      this.changed();
    });
    void w.exited.then((exit) => this.onExit(rt, w, exit));
    this.log.info({ service: rt.spec.name, slot, pid: w.pid, args: launch.args }, 'worker started');
    this.changed();
    return w;
  }

  private onExit(rt: ServiceRuntime, w: ManagedWorker, exit: WorkerExit): void {
    rt.live.delete(w);
    const inSlot = rt.slots[w.slot] === w;
    if (inSlot) rt.slots[w.slot] = undefined;
    this.changed();
    if (w.stopRequested || this.stopping) {
      this.log.info({ service: rt.spec.name, pid: w.pid, exit: describeExit(exit) }, 'worker exited');
      return;
    }
    rt.lastExit = describeExit(exit);
    const decision = rt.policy.recordCrash(Date.now());
    if (decision.action === 'give-up') return this.giveUp(rt, decision);
    this.log.error(
      {
        service: rt.spec.name,
        pid: w.pid,
        exit: rt.lastExit,
        crashesInWindow: decision.crashesInWindow,
        restartInMs: decision.delayMs,
      },
      inSlot ? 'worker exited unexpectedly; restarting it' : 'replacement worker exited before it was ready',
    );
    // A replacement that never served is not restarted here: the reload that started it gives up on it.
    if (inSlot) this.scheduleRestart(rt, w.slot, decision.delayMs);
  }

  private scheduleRestart(rt: ServiceRuntime, slot: number, delayMs: number): void {
    this.cancelRestart(rt, slot);
    const timer = setTimeout(() => {
      rt.restartTimers.delete(slot);
      if (this.stopping || rt.gaveUp || rt.slots[slot] !== undefined || slot >= rt.wanted) return;
      rt.restarts++;
      void this.spawn(rt, slot, true);
    }, delayMs);
    rt.restartTimers.set(slot, timer);
  }

  private cancelRestart(rt: ServiceRuntime, slot: number): void {
    const t = rt.restartTimers.get(slot);
    if (t) clearTimeout(t);
    rt.restartTimers.delete(slot);
  }

  private giveUp(rt: ServiceRuntime, d: Extract<RestartDecision, { action: 'give-up' }>): void {
    for (const slot of [...rt.restartTimers.keys()]) this.cancelRestart(rt, slot);
    const windowS = d.windowMs / 1000;
    // While starting, giving up stops the whole master: a SIGHUP would reach nobody.
    const next =
      this.phase === 'starting'
        ? 'lars up stops. Fix the cause (see its log lines above) and run lars up again.'
        : `Fix the cause (see its log lines above), then send SIGHUP to the master (pid ${process.pid}) to try again, or restart lars up.`;
    const message = `${rt.spec.name} gave up: ${d.crashesInWindow} crashes within ${windowS} s (last: ${rt.lastExit}); not restarting it. ${next}`;
    rt.gaveUp = {
      at: new Date().toISOString(),
      crashes: d.crashesInWindow,
      windowS,
      lastExit: rt.lastExit ?? '',
      message,
    };
    this.log.error(
      { service: rt.spec.name, crashes: d.crashesInWindow, windowS, lastExit: rt.lastExit },
      'gave up restarting the service',
    );
    this.opts.notify(`lars up: ${message}`);
    this.changed();
    if (this.phase === 'starting') return;
    const all = [...this.services.values()].filter((s) => s.wanted > 0);
    if (all.length > 0 && all.every((s) => s.gaveUp && s.live.size === 0)) {
      this.opts.notify('lars up: every service gave up; nothing left to supervise, stopping.');
      this.stopping = this.shutdown('all-failed');
    }
  }

  private async reload(): Promise<void> {
    this.phase = 'reloading';
    this.changed();
    const at = new Date().toISOString();
    let loaded: LoadedConfig;
    try {
      loaded = this.opts.reloadConfig();
    } catch (err) {
      this.lastReload = { at, ok: false, error: (err as Error).message };
      this.log.error(
        { err: (err as Error).message },
        'reload: configuration invalid; keeping the running configuration',
      );
      this.opts.notify(
        `lars up: reload failed, keeping the running configuration: ${(err as Error).message}`,
      );
      this.phase = 'running';
      this.changed();
      return;
    }
    let settings = supervisorSettings(loaded.config);
    if (settings.dnsHandoff !== this.ctx.settings.dnsHandoff) {
      // Shared and handoff mode cannot own the dns port at the same time: a switch needs a restart.
      this.log.warn(
        { dnsHandoff: settings.dnsHandoff },
        'reload: [supervisor] dns_handoff changes apply at the next start of lars up',
      );
      settings = { ...settings, dnsHandoff: this.ctx.settings.dnsHandoff };
    }
    this.log.info({ file: this.opts.configFile }, 'reload: replacing workers one at a time');
    const previous = this.ctx;
    const failures: string[] = [];
    try {
      this.ctx = await this.buildContext(loaded, settings);
      const dnsMoved =
        previous.ports.dns.port !== this.ctx.ports.dns.port ||
        previous.ports.dns.host !== this.ctx.ports.dns.host;
      if (settings.dnsHandoff && this.ctx.runsHere('dns') && (!this.handoff || dnsMoved))
        await this.openHandoff();
      for (const spec of SERVICES) {
        const ok = await this.rollout(this.runtime(spec.name));
        if (!ok) failures.push(spec.name);
        if (this.stopping) return;
      }
      if (!this.ctx.runsHere('dns') && this.handoff) {
        this.handoff.close();
        this.handoff = undefined;
      }
      // Sockets of ports no worker serves any more (a service moved or was switched off) are closed.
      this.sockets.retain(this.wantedSockets());
    } catch (err) {
      failures.push((err as Error).message);
    }
    this.lastReload =
      failures.length === 0
        ? { at, ok: true }
        : { at, ok: false, error: `not replaced: ${failures.join(', ')}` };
    this.log.info({ ok: failures.length === 0, failures }, 'reload finished');
    if (this.phase === 'reloading') this.phase = 'running';
    this.changed();
  }

  /**
   * Replaces the workers of one service one at a time: start the new worker of a slot, wait until
   * it serves, only then SIGTERM the old one (which drains). TCP: both accept on the shared socket
   * meanwhile (or, in handoff mode, the slot points at the new one). UDP (agent): the new agent
   * binds the same shared sockets while the old one still answers, after the old one wrote its
   * route cache for the new one to load. Returns false when a replacement failed (old kept).
   */
  private async rollout(rt: ServiceRuntime): Promise<boolean> {
    const settings = this.ctx.settings;
    const wanted = rt.available ? rt.spec.workers(settings) : 0;
    rt.policy = this.policy(settings);
    rt.gaveUp = undefined;
    const n = Math.max(wanted, rt.slots.length);
    rt.wanted = wanted;
    for (let slot = 0; slot < n; slot++) {
      if (this.stopping) return true;
      this.cancelRestart(rt, slot);
      const old = rt.slots[slot];
      if (slot >= wanted) {
        rt.slots[slot] = undefined;
        if (old) await this.retire(old);
        continue;
      }
      if (old && rt.spec.keepOnReload && old.state === 'running') {
        this.log.info(
          { service: rt.spec.name, pid: old.pid },
          'reload: keeping the running worker (its settings apply when it next starts)',
        );
        continue;
      }
      if (old && rt.spec.name === 'agent' && old.state === 'running') {
        const flushed = await old.flushCache(CACHE_FLUSH_TIMEOUT_MS);
        if (!flushed)
          this.log.warn(
            { pid: old.pid },
            'reload: agent did not confirm its cache write; starting the new one anyway',
          );
      }
      const w = await this.spawn(rt, slot, old === undefined);
      if (!w) return true;
      try {
        await w.ready;
      } catch (err) {
        this.log.error(
          { service: rt.spec.name, slot, err: (err as Error).message },
          'reload: the new worker did not start; keeping the old one',
        );
        if (w.state !== 'exited') await w.stop(Date.now() + settings.drainTimeoutMs);
        return false;
      }
      if (this.stopping) return true;
      rt.slots[slot] = w;
      this.changed();
      if (old) await this.retire(old);
    }
    rt.slots.length = wanted;
    this.changed();
    return true;
  }

  /** Sockets to keep holding: every service's public ports, and whatever a live worker still serves. */
  private wantedSockets(): ListenSpec[] {
    const out: ListenSpec[] = [];
    for (const rt of this.services.values()) {
      for (const w of rt.live) out.push(...w.listen);
      if (rt.wanted === 0 || (rt.spec.name === 'dns' && this.ctx.settings.dnsHandoff)) continue;
      for (const e of rt.spec.listen(this.ctx))
        out.push({ proto: e.proto === 'udp' ? 'udp' : 'tcp', host: e.host, port: e.port });
    }
    return out;
  }

  private async retire(w: ManagedWorker): Promise<void> {
    const exit = await w.stop(Date.now() + this.ctx.settings.drainTimeoutMs);
    if (w.killed)
      this.log.warn(
        { service: w.service, pid: w.pid, exit: describeExit(exit) },
        'old worker did not finish within drain_timeout: killed',
      );
  }

  private async shutdown(reason: 'stop' | 'start-failed' | 'all-failed'): Promise<void> {
    this.phase = 'stopping';
    this.changed();
    for (const rt of this.services.values())
      for (const slot of [...rt.restartTimers.keys()]) this.cancelRestart(rt, slot);
    this.handoff?.close();
    const deadline = Date.now() + (this.ctx?.settings.drainTimeoutMs ?? 10_000);
    let killed = false;
    // Workers started while stopping (a restart timer that had just fired) are caught by the loop.
    for (let pass = 0; pass < 3; pass++) {
      for (const group of STOP_GROUPS) {
        const workers = group.flatMap((name) => [...(this.services.get(name)?.live ?? [])]);
        await Promise.all(workers.map((w) => w.stop(deadline)));
        killed ||= workers.some((w) => w.killed);
      }
      if ([...this.services.values()].every((rt) => rt.live.size === 0)) break;
    }
    this.sockets.closeAll();
    const degraded = [...this.services.values()].some((rt) => rt.gaveUp);
    this.exitCode =
      reason === 'start-failed'
        ? ExitCode.START_FAILED
        : reason === 'all-failed'
          ? ExitCode.ALL_FAILED
          : killed || this.forced
            ? ExitCode.STOPPED_KILLED
            : degraded
              ? ExitCode.STOPPED_DEGRADED
              : ExitCode.STOPPED;
    this.phase = 'stopped';
    this.log.info({ exitCode: this.exitCode, killed }, 'every child has exited');
    await this.control.close();
    await this.writeState();
    this.resolveFinished(this.exitCode);
  }

  private async onControl(req: ControlRequest): Promise<ControlReply> {
    switch (req.cmd) {
      case 'status':
        return { ok: true, pid: process.pid, status: await this.snapshot(req.health !== false) };
      case 'stop':
        this.requestStop('lars stop');
        return { ok: true, pid: process.pid };
      case 'reload':
        this.requestReload();
        return { ok: true, pid: process.pid };
      default:
        return { ok: false, error: `unknown command ${JSON.stringify((req as { cmd?: unknown }).cmd)}` };
    }
  }

  private serviceState(rt: ServiceRuntime): ServiceState {
    if (!rt.available) return 'unavailable';
    if (rt.wanted === 0 && rt.live.size === 0) return 'disabled';
    if (this.phase === 'stopping') return rt.live.size > 0 ? 'stopping' : 'stopped';
    if (this.phase === 'stopped') return 'stopped';
    if (rt.gaveUp) return 'failed';
    if (rt.running >= rt.wanted) return 'running';
    if (this.phase === 'starting' && rt.restarts === 0 && rt.policy.crashesInWindow(Date.now()) === 0)
      return 'starting';
    return 'degraded';
  }

  /** Resolves when `done()` holds, re-checked on every change; rejects with `failed()` or on stop. */
  private until(done: () => boolean, failed: () => Error | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const err = this.stopping ? new ClosedError('lars up is stopping') : failed();
        if (err || done()) {
          this.off('change', check);
          if (err) reject(err);
          else resolve();
        }
      };
      this.on('change', check);
      check();
    });
  }

  private changed(): void {
    this.emit('change');
    this.stateWrite ??= setImmediate(() => {
      this.stateWrite = undefined;
      void this.writeState();
    });
  }

  private async writeState(): Promise<void> {
    writeStateFile(this.paths.state, await this.snapshot(false));
  }
}
