import type { Command } from 'commander';
import { busSocketIn } from '../bus/socket-path.js';
import { shmSocketFor } from '../shm/socket-path.js';
import { SCHEMA, type Config } from '../config/index.js';
import { SUPERVISOR_ENV } from './child-ipc.js';
import type { ListenSpec } from './listen-sockets.js';
import type { PortBook } from './ports.js';
import type { SupervisorSettings } from './settings.js';

export type ServiceName = 'shm' | 'bus' | 'dns' | 'reporter' | 'web' | 'agent';

/** Where a service can be reached, for the `lars up` banner and `lars status`. */
export interface Endpoint {
  /** 'unix': a Unix socket; `host` is its path and `port` is 0. */
  proto: 'tcp' | 'udp' | 'http' | 'unix';
  host: string;
  /** 0 for `unix`. */
  port: number;
}

/** Ports of the whole stack for one configuration, 0 settings already replaced by real ports. */
export interface StackPorts {
  dns: { host: string; port: number; httpPort: number };
  reporter: { host: string; port: number; httpPort: number | undefined; enabled: boolean };
  web: { host: string; port: number };
  agent: { host: string; ports: number[]; httpPort: number };
  bus: { socket: string; httpPort: number };
  shm: { socket: string; host: string; httpPort: number };
}

/** Everything a launch needs; rebuilt on every (re)load of the configuration. */
export interface LaunchContext {
  config: Config;
  /** Sections present in the file (a [reporter] section names a remote reporter). */
  fileSections: ReadonlySet<string>;
  configFile: string | undefined;
  settings: SupervisorSettings;
  dataDir: string;
  dbUrl: string;
  ports: StackPorts;
  /** Whether a service runs under this master (available and workers > 0). */
  runsHere(name: ServiceName): boolean;
  /** Whether the registered CLI command has a long option, e.g. ('reporter', '--db'). */
  hasOption(command: string, flag: string): boolean;
  book: PortBook;
}

/** How to start one worker process. */
export interface WorkerLaunch {
  /** `lars` command line after the script: the command and its flags. */
  args: string[];
  env: Record<string, string>;
  /** Ports this worker serves (by role), for status. */
  ports: Record<string, number | number[]>;
  /** GET this for the worker's health. */
  healthUrl: string | undefined;
  /**
   * For services that do not send READY over IPC: the worker is ready once it listens on this port
   * (node:cluster reports every listen of a worker to the master).
   */
  readyPort: number | undefined;
  /** Extra Node flags for this worker's process. */
  nodeFlags?: string[];
  /**
   * The public sockets the worker serves, which the master holds across restarts and passes to it
   * (listen-sockets.ts, issue 11). A worker listening on a held socket does not go through
   * node:cluster, so such services report READY over IPC.
   */
  listen: ListenSpec[];
}

/**
 * lars shm runs for the host's lifetime with a tiny live heap: a 1 MiB young generation keeps its
 * RSS flat under any request mix (V8 otherwise grows the young generation under allocation pressure
 * and keeps it: +30 % RSS after 600,000 fuzzed commands with an unchanged live heap; bench:shm).
 */
export const SHM_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/**
 * dns and the agent get the same cap (issue 17, bench:footprint): their live heaps are small and
 * steady, and a young generation V8 grew during a burst (an agent fetching 10,000 routes, dns
 * loading 100,000 rows) would otherwise stay resident for good. `--optimize-for-size` makes V8 grow
 * the old generation less eagerly and give memory back sooner: dns with 100,000 rows 91 -> 78 MB,
 * the agent with 10,000 routes 126 -> 115 MB, with no loss of agent throughput in
 * bench:contention (37.7k vs 34.1k calls/s in the same run, within noise).
 */
export const LEAN_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--optimize-for-size'];

/**
 * One row of the service table. Adding a service = one entry in SERVICES: its command, worker
 * count, where it listens, and how to launch a worker.
 */
export interface ServiceSpec {
  name: ServiceName;
  /** The `lars` sub-command that runs it; the service is skipped when the build has no such command. */
  command: string;
  /** Sends READY over IPC (src/supervisor/child-ipc.ts) once serving; otherwise see readyPort. */
  readyMessage: boolean;
  /**
   * A reload (SIGHUP) keeps its running worker instead of replacing it: a second instance cannot run
   * beside it, and replacing it would cost every client its state (shm: every buffer). Its settings
   * apply when it next starts.
   */
  keepOnReload?: boolean;
  workers(settings: SupervisorSettings): number;
  listen(ctx: LaunchContext): Endpoint[];
  launch(ctx: LaunchContext, slot: number): Promise<WorkerLaunch>;
}

const loopbackFor = (host: string): string =>
  host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
const healthUrl = (host: string, port: number): string =>
  `http://${urlHost(loopbackFor(host))}:${port}/healthz`;
const urlHost = (host: string): string => (host.includes(':') ? `[${host}]` : host);

/** Flags every service takes the same way: --config (when the master has one). */
function common(
  ctx: LaunchContext,
  name: ServiceName,
  slot: number,
): { args: string[]; env: Record<string, string> } {
  return {
    args: ctx.configFile ? ['--config', ctx.configFile] : [],
    env: {
      [SUPERVISOR_ENV.SERVICE]: name,
      [SUPERVISOR_ENV.SLOT]: String(slot),
      // Every service resolves the database as --db > LARS_DB > [store] url: the stack shares one.
      LARS_DB: ctx.dbUrl,
      LARS_DATA_DIR: ctx.dataDir,
      // Services that hand buffers around (the bus) find lars shm where the stack runs it.
      ...(ctx.runsHere('shm') ? { LARS_SHM_SOCKET: ctx.ports.shm.socket } : {}),
    },
  };
}

/**
 * Sets a value through a flag when the command has it, else through its `LARS_<SECTION>_<KEY>`
 * variable (only when the setting exists in this build's schema). Services written by other
 * issues get their ports this way whatever flags they chose.
 */
function setting(
  ctx: LaunchContext,
  command: string,
  out: { args: string[]; env: Record<string, string> },
  flag: string,
  section: string,
  key: string,
  value: string,
): void {
  if (ctx.hasOption(command, flag)) {
    out.args.push(flag, value);
    return;
  }
  const keys = (SCHEMA as Record<string, Record<string, unknown>>)[section];
  if (keys && Object.prototype.hasOwnProperty.call(keys, key))
    out.env[`LARS_${section.toUpperCase()}_${key.toUpperCase()}`] = value;
}

const dns: ServiceSpec = {
  name: 'dns',
  command: 'dns',
  readyMessage: true,
  workers: (s) => s.workers.dns,
  listen: (ctx) => [{ proto: 'tcp', host: ctx.ports.dns.host, port: ctx.ports.dns.port }],
  async launch(ctx, slot) {
    const p = ctx.ports.dns;
    const c = common(ctx, 'dns', slot);
    // Each worker gets its own admin port (unless one is configured) so that immediate polls from
    // the CLI and console, sent to every registered dns instance, reach every worker.
    const httpPort = p.httpPort !== 0 ? p.httpPort : await ctx.book.fresh('tcp', p.host);
    // Handoff: the master owns the public port; the worker's own listener is private.
    const listenPort = ctx.settings.dnsHandoff ? await ctx.book.fresh('tcp', p.host) : p.port;
    if (ctx.settings.dnsHandoff) c.env[SUPERVISOR_ENV.HANDOFF] = '1';
    const ports: Record<string, number> = ctx.settings.dnsHandoff
      ? { tcp: p.port, internal: listenPort, http: httpPort }
      : { tcp: p.port, http: httpPort };
    return {
      args: [
        'dns',
        ...c.args,
        '--host',
        p.host,
        '--port',
        String(listenPort),
        '--http-port',
        String(httpPort),
      ],
      env: c.env,
      ports,
      healthUrl: healthUrl(p.host, httpPort),
      readyPort: undefined,
      // Handoff: the master's own listener holds connections while no worker is ready.
      listen: ctx.settings.dnsHandoff ? [] : [{ proto: 'tcp', host: p.host, port: p.port }],
      nodeFlags: [...LEAN_NODE_FLAGS],
    };
  },
};

const reporter: ServiceSpec = {
  name: 'reporter',
  command: 'reporter',
  readyMessage: true,
  workers: (s) => s.workers.reporter,
  listen: (ctx) => [{ proto: 'tcp', host: ctx.ports.reporter.host, port: ctx.ports.reporter.port }],
  async launch(ctx, slot) {
    const p = ctx.ports.reporter;
    const c = common(ctx, 'reporter', slot);
    setting(ctx, 'reporter', c, '--host', 'reporter', 'ip', p.host);
    setting(ctx, 'reporter', c, '--port', 'reporter', 'port', String(p.port));
    // A configured admin port is shared by the workers; otherwise each gets its own (as dns).
    const httpPort =
      p.httpPort ??
      (ctx.hasOption('reporter', '--http-port') ? await ctx.book.fresh('tcp', p.host) : undefined);
    if (httpPort !== undefined)
      setting(ctx, 'reporter', c, '--http-port', 'reporter', 'http_port', String(httpPort));
    if (ctx.hasOption('reporter', '--db')) c.args.push('--db', ctx.dbUrl);
    const ports: Record<string, number> = { tcp: p.port };
    if (httpPort !== undefined) ports.http = httpPort;
    return {
      args: ['reporter', ...c.args],
      env: c.env,
      ports,
      healthUrl: httpPort !== undefined ? healthUrl(p.host, httpPort) : undefined,
      readyPort: p.port,
      listen: [{ proto: 'tcp', host: p.host, port: p.port }],
    };
  },
};

const web: ServiceSpec = {
  name: 'web',
  command: 'web',
  readyMessage: true,
  workers: (s) => s.workers.web,
  listen: (ctx) => [{ proto: 'http', host: ctx.ports.web.host, port: ctx.ports.web.port }],
  async launch(ctx, slot) {
    const p = ctx.ports.web;
    const c = common(ctx, 'web', slot);
    setting(ctx, 'web', c, '--host', 'web', 'ip', p.host);
    setting(ctx, 'web', c, '--port', 'web', 'port', String(p.port));
    if (ctx.hasOption('web', '--db')) c.args.push('--db', ctx.dbUrl);
    return {
      args: ['web', ...c.args],
      env: c.env,
      ports: { http: p.port },
      healthUrl: healthUrl(p.host, p.port),
      readyPort: p.port,
      listen: [{ proto: 'tcp', host: p.host, port: p.port }],
    };
  },
};

const agent: ServiceSpec = {
  name: 'agent',
  command: 'agent',
  readyMessage: true,
  workers: (s) => s.workers.agent,
  listen: (ctx) => ctx.ports.agent.ports.map((port) => ({ proto: 'udp', host: ctx.ports.agent.host, port })),
  async launch(ctx, slot) {
    const p = ctx.ports.agent;
    const c = common(ctx, 'agent', slot);
    const d = ctx.ports.dns;
    const r = ctx.ports.reporter;
    const reporterArgs = r.enabled ? ['--reporter', `${loopbackFor(r.host)}:${r.port}`] : ['--no-reporter'];
    return {
      args: [
        'agent',
        ...c.args,
        '--dns',
        `${loopbackFor(d.host)}:${d.port}`,
        ...reporterArgs,
        '--host',
        p.host,
        '--ports',
        p.ports.join(','),
        '--http-port',
        String(p.httpPort),
        '--data-dir',
        ctx.dataDir,
      ],
      env: c.env,
      ports: { udp: [...p.ports], http: p.httpPort },
      healthUrl: healthUrl(p.host, p.httpPort),
      readyPort: undefined,
      listen: p.ports.map((port) => ({ proto: 'udp' as const, host: p.host, port })),
      nodeFlags: [...LEAN_NODE_FLAGS],
    };
  },
};

/** The shared-memory manager: one process (it owns the pool and every reference count). */
const shm: ServiceSpec = {
  name: 'shm',
  command: 'shm',
  readyMessage: true,
  keepOnReload: true,
  workers: (s) => s.workers.shm,
  listen: (ctx) => [{ proto: 'unix', host: ctx.ports.shm.socket, port: 0 }],
  async launch(ctx, slot) {
    const p = ctx.ports.shm;
    const c = common(ctx, 'shm', slot);
    return {
      args: ['shm', ...c.args, '--socket', p.socket, '--http-port', String(p.httpPort)],
      env: c.env,
      ports: { http: p.httpPort },
      healthUrl: healthUrl(p.host, p.httpPort),
      readyPort: undefined,
      // Its Unix socket is its own (not held by the master): clients reconnect across a restart.
      listen: [],
      nodeFlags: [...SHM_NODE_FLAGS],
    };
  },
};

/**
 * The same-host message bus (issue 13): one process owns every connection, on a Unix socket in the
 * data directory (or `[bus] socket`), with its admin HTTP port for /healthz.
 */
const bus: ServiceSpec = {
  name: 'bus',
  command: 'bus',
  readyMessage: true,
  workers: (s) => s.workers.bus,
  listen: (ctx) => [{ proto: 'unix', host: ctx.ports.bus.socket, port: 0 }],
  async launch(ctx, slot) {
    const p = ctx.ports.bus;
    const c = common(ctx, 'bus', slot);
    return {
      // --replace: on SIGHUP the new bus takes the socket path over while the old one still
      // serves; the old one is then stopped (lame duck), and its clients reconnect to the new one.
      args: ['bus', ...c.args, '--socket', p.socket, '--http-port', String(p.httpPort), '--replace'],
      env: c.env,
      ports: { http: p.httpPort },
      healthUrl: healthUrl('127.0.0.1', p.httpPort),
      readyPort: undefined,
      // Its Unix socket is its own (not held by the master): clients reconnect across a restart.
      listen: [],
    };
  },
};

/**
 * The service table, in start order: the shared-memory manager first (services that use it, the bus
 * among them, connect at start), the bus (local processes may use it at once; it needs no
 * database), dns before the agent (which connects to it at once), the reporter before the agent
 * (its statistics), the console beside them.
 */
export const SERVICES: readonly ServiceSpec[] = [shm, bus, dns, reporter, web, agent];

/**
 * Stop order on SIGINT/SIGTERM: the agent first (it flushes its statistics to a reporter that is
 * still up and writes its route cache), then dns and the console, the reporter (it flushes its
 * queues to the database), the bus (it tells its clients and lingers for queued messages), the
 * shared-memory manager last (its clients are gone by then).
 */
export const STOP_GROUPS: readonly (readonly ServiceName[])[] = [
  ['agent'],
  ['dns', 'web'],
  ['reporter'],
  ['bus'],
  ['shm'],
];

/** The bus socket of a stack: `[bus] socket`, else DIR/bus/bus.sock (see busSocketIn). */
export function stackBusSocket(config: Config, dataDir: string): string {
  return config.bus.socket || busSocketIn(dataDir);
}

/** Whether this build registers `command` (reporter and web arrive with their own issues). */
export function commandAvailable(program: Command, command: string): boolean {
  return program.commands.some((c) => c.name() === command);
}

export function commandHasOption(program: Command, command: string, flag: string): boolean {
  const cmd = program.commands.find((c) => c.name() === command);
  return cmd?.options.some((o) => o.long === flag) ?? false;
}

/**
 * Resolves the stack's ports from the configuration: every port a service run here listens on
 * becomes concrete (see ports.ts for why); addresses of services not run here stay as configured.
 */
export async function resolveStackPorts(
  config: Config,
  fileSections: ReadonlySet<string>,
  runsHere: (name: ServiceName) => boolean,
  book: PortBook,
  dataDir: string,
): Promise<StackPorts> {
  const dnsHost = config.dnsserver.ip;
  const dnsPort = runsHere('dns')
    ? await book.resolve('dnsserver.port', 'tcp', dnsHost, config.dnsserver.port)
    : config.dnsserver.port;
  const repHost = config.reporter.ip;
  const repHere = runsHere('reporter');
  const repPort = repHere
    ? await book.resolve('reporter.port', 'tcp', repHost, config.reporter.port)
    : config.reporter.port;
  // A `[reporter] http_port` setting, where the schema has one, is shared by the workers; otherwise each
  // reporter worker gets its own admin port through --http-port (see the reporter entry).
  const repHttpSetting = (config.reporter as Record<string, unknown>).http_port;
  const repHttp =
    repHere && typeof repHttpSetting === 'number'
      ? await book.resolve('reporter.http_port', 'tcp', repHost, repHttpSetting)
      : undefined;
  const agentHost = config.agent.ip;
  const agentHere = runsHere('agent');
  const agentPorts: number[] = [];
  for (let i = 0; i < config.agent.ports.length; i++) {
    const configured = config.agent.ports[i] as number;
    agentPorts.push(
      agentHere ? await book.resolve(`agent.ports.${i}`, 'udp', agentHost, configured) : configured,
    );
  }
  return {
    dns: { host: dnsHost, port: dnsPort, httpPort: config.dns.http_port },
    reporter: {
      host: repHost,
      port: repPort,
      httpPort: repHttp,
      // A local reporter, or a remote one named by a [reporter] section; none otherwise.
      enabled: config.reporter.enabled && (repHere || (fileSections.has('reporter') && repPort !== 0)),
    },
    web: {
      host: config.web.ip,
      port: runsHere('web')
        ? await book.resolve('web.port', 'tcp', config.web.ip, config.web.port)
        : config.web.port,
    },
    agent: {
      host: agentHost,
      ports: agentPorts,
      httpPort: agentHere
        ? await book.resolve('agent.http_port', 'tcp', agentHost, config.agent.http_port)
        : config.agent.http_port,
    },
    bus: {
      socket: stackBusSocket(config, dataDir),
      httpPort: runsHere('bus')
        ? await book.resolve('bus.http_port', 'tcp', '127.0.0.1', config.bus.http_port)
        : config.bus.http_port,
    },
    shm: {
      socket: config.shm.socket || shmSocketFor(dataDir),
      host: config.shm.ip,
      httpPort: runsHere('shm')
        ? await book.resolve('shm.http_port', 'tcp', config.shm.ip, config.shm.http_port)
        : config.shm.http_port,
    },
  };
}
