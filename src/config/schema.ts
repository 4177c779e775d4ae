/**
 * Every configuration section and key Lars understands, with its type, range, default and meaning.
 * Section and key names of the original C++ Lars are kept (`[reactor] maxConn`, `[loadbalance]
 * probe_num`, ...); sections of our own are added beside them. Anything not listed here is an
 * error at start (the original silently ignored a misspelled `[repoter]`).
 *
 * docs/config.md documents the same keys; test/config.test.ts checks that every key below is there.
 */

import {
  DEFAULT_CONTIN_ERR_LIMIT,
  DEFAULT_CONTIN_SUCC_LIMIT,
  DEFAULT_ERR_RATE,
  DEFAULT_IDLE_TIMEOUT_S,
  DEFAULT_INIT_ERR_CNT,
  DEFAULT_INIT_SUCC_CNT,
  DEFAULT_OVERLOAD_TIMEOUT_S,
  DEFAULT_PROBE_NUM,
  DEFAULT_SUCC_RATE,
  DEFAULT_UPDATE_TIMEOUT_S,
  DEFAULT_WINDOW_ERR_RATE,
} from '../agent/lb-config.js';
import {
  DEFAULT_BUS_HEARTBEAT_MS,
  DEFAULT_BUS_LINGER_MS,
  DEFAULT_BUS_MAX_CONNS,
  DEFAULT_BUS_MAX_PAYLOAD,
  DEFAULT_BUS_MAX_PENDING_BYTES,
  DEFAULT_BUS_MAX_PENDING_MSGS,
  DEFAULT_BUS_MAX_SUBS_PER_CONN,
  DEFAULT_BUS_OFFLINE_MS,
  DEFAULT_BUS_WRITE_DEADLINE_MS,
} from '../bus/defaults.js';
import { DEFAULT_CLASSES_SPEC } from '../shm/size-classes.js';
import {
  DEFAULT_FAST_PATH_HOSTS,
  DEFAULT_FAST_PATH_RING,
  DEFAULT_FAST_PATH_ROUTES,
} from '../agent/fast-path-segment.js';
import { DEFAULT_LEASE_BRAKE_MAX_MS, DEFAULT_LEASE_GRACE_MS } from '../dns/lease-guard.js';

export type KeyType = 'int' | 'number' | 'bool' | 'string' | 'host' | 'port' | 'ports';

interface BaseSpec {
  type: KeyType;
  description: string;
}
export interface IntSpec extends BaseSpec {
  type: 'int' | 'port';
  default: number;
  min?: number;
  max?: number;
}
export interface NumberSpec extends BaseSpec {
  type: 'number';
  default: number;
  min?: number;
  max?: number;
  /** Exclusive lower bound (e.g. a rate that must be > 0). */
  gt?: number;
}
export interface BoolSpec extends BaseSpec {
  type: 'bool';
  default: boolean;
}
export interface StringSpec extends BaseSpec {
  type: 'string' | 'host';
  default: string;
}
export interface PortsSpec extends BaseSpec {
  type: 'ports';
  default: readonly number[];
}
export type KeySpec = IntSpec | NumberSpec | BoolSpec | StringSpec | PortsSpec;

// Defaults as named constants with units (STYLE §8).
export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_DNS_PORT = 7778;
export const DEFAULT_REPORTER_PORT = 7779;
export const DEFAULT_AGENT_PORTS = [8888, 8889, 8890] as const;
/** Room for bursts (and junk that gets past the filter) in front of the agent's API (issue 11). */
export const DEFAULT_AGENT_RECV_BUFFER_KB = 4096;
export const DEFAULT_WEB_PORT = 8080;
export const DEFAULT_MAX_CONN = 10_000;
export const DEFAULT_THREAD_NUM = 1;
export const DEFAULT_MAX_OUTBOUND_BYTES = 4 * 1024 * 1024;
/** Local registrations one agent carries (issue 15). */
export const DEFAULT_MAX_REGISTRATIONS = 10_000;
// Hostile clients (issue 11); the TCP server's own defaults are the same (src/net/tcp-server.ts).
export const DEFAULT_HEADER_TIMEOUT_S = 10;
export const DEFAULT_HANDSHAKE_TIMEOUT_S = 30;
export const DEFAULT_MAX_CONN_PER_IP = 1024;

export const DEFAULT_POLL_INTERVAL_S = 1;
export const DEFAULT_RELOAD_INTERVAL_S = 10;
export const DEFAULT_CHANGE_RETENTION_S = 24 * 3600;
export const DEFAULT_UNKNOWN_ROUTE_TTL_S = 60;
export const DEFAULT_UNKNOWN_ROUTE_MAX = 1_000;
export const DEFAULT_REPORT_INTERVAL_S = 1;
export const DEFAULT_DB_THREAD_CNT = 3;
export const DEFAULT_QUEUE_MAX_ROWS = 100_000;
export const DEFAULT_HISTORY_RETENTION_DAYS = 7;
// Self-registration (issue 15).
export const DEFAULT_LEASE_GRACE_S = DEFAULT_LEASE_GRACE_MS / 1000;
export const DEFAULT_LEASE_BRAKE_S = DEFAULT_LEASE_BRAKE_MAX_MS / 1000;

// [supervisor] (`lars up`, issue 7).
export const DEFAULT_DNS_WORKERS = 2;
export const DEFAULT_REPORTER_WORKERS = 1;
export const DEFAULT_WEB_WORKERS = 1;
export const DEFAULT_AGENT_WORKERS = 1;
export const DEFAULT_BUS_WORKERS = 1;
export const DEFAULT_RESTART_MAX = 5;
export const DEFAULT_RESTART_WINDOW_S = 60;
export const DEFAULT_RESTART_DELAY_S = 0.1;
export const DEFAULT_RESTART_DELAY_MAX_S = 10;
export const DEFAULT_DRAIN_TIMEOUT_S = 10;
export const DEFAULT_START_TIMEOUT_S = 30;
export const DEFAULT_SHM_WORKERS = 1;

// [shm] (`lars shm`, issue 12).
export const DEFAULT_SHM_CLASSES = DEFAULT_CLASSES_SPEC;
export const DEFAULT_SHM_QUOTA_PERCENT = 25;
export const DEFAULT_SHM_MAX_BATCHES_PER_PROC = 1024;
export const DEFAULT_SHM_BATCH_TTL_S = 30;
export const DEFAULT_SHM_MAX_BATCH_TTL_S = 600;
export const DEFAULT_SHM_MAX_CONNS = 1024;

const int = (d: number, description: string, min?: number, max?: number): IntSpec => ({
  type: 'int',
  default: d,
  description,
  ...(min !== undefined ? { min } : {}),
  ...(max !== undefined ? { max } : {}),
});
const num = (
  d: number,
  description: string,
  bounds: { min?: number; max?: number; gt?: number },
): NumberSpec => ({
  type: 'number',
  default: d,
  description,
  ...bounds,
});
const port = (d: number, description: string): IntSpec => ({
  type: 'port',
  default: d,
  description,
  min: 0,
  max: 65535,
});
const host = (d: string, description: string): StringSpec => ({ type: 'host', default: d, description });
const str = (d: string, description: string): StringSpec => ({ type: 'string', default: d, description });

export const SCHEMA = {
  reactor: {
    ip: host(
      DEFAULT_HOST,
      'address the service listens on (dns, reporter); overrides [dnsserver]/[reporter] for that service',
    ),
    port: port(0, 'port the service listens on; 0 = the service default'),
    maxConn: int(
      DEFAULT_MAX_CONN,
      'maximum simultaneous TCP connections; excess connections are refused and counted',
      1,
      1_000_000,
    ),
    threadNum: int(
      DEFAULT_THREAD_NUM,
      'worker processes/threads serving the port (1 = single event loop)',
      1,
      64,
    ),
    maxOutboundKb: int(
      DEFAULT_MAX_OUTBOUND_BYTES / 1024,
      'per-connection outbound queue limit in KiB; a slower peer is cut',
      16,
      1_048_576,
    ),
    header_timeout: num(
      DEFAULT_HEADER_TIMEOUT_S,
      'seconds a started frame has to complete before its connection is cut (0 = never)',
      { min: 0, max: 86_400 },
    ),
    handshake_timeout: num(
      DEFAULT_HANDSHAKE_TIMEOUT_S,
      'seconds a new connection has to complete its first frame before it is cut (0 = never); a connection that has completed a frame is never cut for being quiet',
      { min: 0, max: 86_400 },
    ),
    max_conn_per_ip: int(
      DEFAULT_MAX_CONN_PER_IP,
      'simultaneous TCP connections from one address (per worker process); more are refused and counted',
      1,
      1_000_000,
    ),
  },
  mysql: {
    db_host: str(
      '',
      'MySQL/MariaDB host (original layout); used when no --db / LARS_DB / [store] url is given',
    ),
    db_port: port(3306, 'MySQL/MariaDB port'),
    db_user: str('root', 'MySQL/MariaDB user'),
    db_passwd: str('', 'MySQL/MariaDB password'),
    db_name: str('lars_dns', 'MySQL/MariaDB database name'),
  },
  store: {
    url: str(
      '',
      'database URL: sqlite:PATH, sqlite::memory:, mysql://user:pass@host:3306/db, postgres://user@host:5432/db',
    ),
  },
  loadbalance: {
    probe_num: int(
      DEFAULT_PROBE_NUM,
      'every probe_num-th request of a route goes to an overloaded host as a trial',
      1,
      1_000_000,
    ),
    init_succ_cnt: int(
      DEFAULT_INIT_SUCC_CNT,
      'virtual successes a host starts each idle window with (damps small samples)',
      0,
      1_000_000,
    ),
    init_err_cnt: int(
      DEFAULT_INIT_ERR_CNT,
      'virtual errors a host starts an overload period with',
      0,
      1_000_000,
    ),
    err_rate: num(DEFAULT_ERR_RATE, 'virtual error rate above which an idle host becomes overloaded', {
      gt: 0,
      max: 1,
    }),
    succ_rate: num(DEFAULT_SUCC_RATE, 'virtual success rate above which an overloaded host becomes idle', {
      gt: 0,
      max: 1,
    }),
    contin_err_limit: int(
      DEFAULT_CONTIN_ERR_LIMIT,
      'consecutive errors that overload an idle host',
      1,
      1_000_000,
    ),
    contin_succ_limit: int(
      DEFAULT_CONTIN_SUCC_LIMIT,
      'consecutive successes that return an overloaded host to idle',
      1,
      1_000_000,
    ),
    window_err_rate: num(
      DEFAULT_WINDOW_ERR_RATE,
      'real error rate over an idle window that overloads a host',
      { gt: 0, max: 1 },
    ),
    idle_timeout: int(DEFAULT_IDLE_TIMEOUT_S, 'idle window length in seconds', 1, 86_400),
    overload_timeout: int(
      DEFAULT_OVERLOAD_TIMEOUT_S,
      'seconds an overloaded host stays out before returning to idle',
      1,
      86_400,
    ),
    update_timeout: int(
      DEFAULT_UPDATE_TIMEOUT_S,
      'seconds after which a route is pulled from dns again',
      1,
      86_400,
    ),
  },
  dnsserver: {
    ip: host(DEFAULT_HOST, 'address of the route service (dns)'),
    port: port(DEFAULT_DNS_PORT, 'TCP port of the route service (dns)'),
  },
  reporter: {
    ip: host(DEFAULT_HOST, 'address of the reporter service'),
    port: port(DEFAULT_REPORTER_PORT, 'TCP port of the reporter service'),
    enabled: {
      type: 'bool',
      default: true,
      description: 'agent: send statistics to the reporter',
    } as BoolSpec,
    db_thread_cnt: int(
      DEFAULT_DB_THREAD_CNT,
      'reporter: number of writer queues (consistent hash of modid,cmdid)',
      1,
      64,
    ),
    queue_max_rows: int(
      DEFAULT_QUEUE_MAX_ROWS,
      'reporter: pending rows per writer queue before the oldest are dropped',
      100,
      100_000_000,
    ),
    history_retention_days: int(
      DEFAULT_HISTORY_RETENTION_DAYS,
      'reporter: days of per-minute history kept',
      1,
      3650,
    ),
  },
  dns: {
    poll_interval: num(DEFAULT_POLL_INTERVAL_S, 'seconds between RouteVersion polls', { gt: 0, max: 3600 }),
    reload_interval: num(DEFAULT_RELOAD_INTERVAL_S, 'seconds between full reloads of the route table', {
      gt: 0,
      max: 86_400,
    }),
    change_retention: int(
      DEFAULT_CHANGE_RETENTION_S,
      'seconds RouteChange rows are kept before pruning',
      60,
      365 * 86_400,
    ),
    http_port: port(0, 'port of the health/metrics/admin HTTP endpoint (0 = any free port)'),
    lease_grace: num(
      DEFAULT_LEASE_GRACE_S,
      'self-registration: seconds added to a lease ttl before a freshly started (or reconnected to its database) dns may expire it',
      { min: 0, max: 3600 },
    ),
    lease_brake: num(
      DEFAULT_LEASE_BRAKE_S,
      'self-registration: longest time leases are held when most agents stop renewing at once (registry-side problem suspected)',
      { min: 0, max: 86_400 },
    ),
    unknown_route_ttl: num(
      DEFAULT_UNKNOWN_ROUTE_TTL_S,
      'seconds a subscription to a route dns does not have lasts after it was last asked for (the agent asks again later)',
      { gt: 0, max: 86_400 },
    ),
    unknown_route_max: int(
      DEFAULT_UNKNOWN_ROUTE_MAX,
      'subscriptions to routes dns does not have that one connection holds; the oldest is dropped past it',
      1,
      1_000_000,
    ),
  },
  agent: {
    ip: host(DEFAULT_HOST, 'address the agent UDP API binds (the original bound 0.0.0.0)'),
    ports: {
      type: 'ports',
      default: DEFAULT_AGENT_PORTS,
      description: 'comma-separated UDP ports of the agent API',
    } as PortsSpec,
    threads: int(
      1,
      'threads serving the UDP API (at most one per port); each owns the routes of its ports',
      1,
      64,
    ),
    report_interval: num(DEFAULT_REPORT_INTERVAL_S, 'seconds between statistics reports of one route', {
      gt: 0,
      max: 3600,
    }),
    cache_dir: str('', 'directory of the last-known-good route cache (empty = <data-dir>/agent-cache)'),
    caller_ip: str(
      'interface',
      "the `caller` address of this agent's statistics: interface = the first non-loopback IPv4 address; hostname = the address the host name resolves to (the original agent's choice); or an IPv4 address",
    ),
    http_port: port(0, 'port of the health/metrics HTTP endpoint (0 = any free port)'),
    name: str(
      '',
      "self-registration: this agent's name, shown as the owner of its registrations (empty = <caller ip>:<first port>)",
    ),
    max_registrations: int(
      DEFAULT_MAX_REGISTRATIONS,
      'self-registration: local instances this agent registers at most (more are refused)',
      1,
      1_000_000,
    ),
    hot_path: {
      type: 'bool',
      default: true,
      description:
        'answer get_host and report datagrams on a lean path (hand-written decoder, no per-request objects); false = the generic dispatch for every datagram',
    } as BoolSpec,
    batch_receive: {
      type: 'bool',
      default: true,
      description:
        'with hot_path: read the UDP API in batches through the native addon (recvmmsg, no objects per datagram) when it is built; false = node:dgram',
    } as BoolSpec,
    recv_buffer_kb: int(
      DEFAULT_AGENT_RECV_BUFFER_KB,
      'receive buffer of each UDP API socket in KiB; with the native addon it is granted above net.core.rmem_max when the agent may (root)',
      64,
      1_048_576,
    ),
    fast_path: {
      type: 'bool',
      default: true,
      description:
        'publish routes in shared memory so local SDK clients pick hosts and report results without a system call (needs the native addon)',
    } as BoolSpec,
    fast_path_routes: int(
      DEFAULT_FAST_PATH_ROUTES,
      'fast path: routes each agent port publishes at most (more are served over UDP)',
      1,
      1_000_000,
    ),
    fast_path_hosts: int(
      DEFAULT_FAST_PATH_HOSTS,
      'fast path: hosts a published route may have (bigger routes are served over UDP)',
      1,
      65_536,
    ),
    fast_path_ring: int(
      DEFAULT_FAST_PATH_RING,
      'fast path: call results each agent port buffers between two drains (rounded up to a power of two; past it reports go over UDP)',
      16,
      1 << 24,
    ),
  },
  web: {
    ip: host(DEFAULT_HOST, 'address the console listens on'),
    port: port(DEFAULT_WEB_PORT, 'port the console listens on'),
  },
  supervisor: {
    dns_workers: int(
      DEFAULT_DNS_WORKERS,
      'lars up: dns worker processes sharing its port (0 = do not run dns here)',
      0,
      64,
    ),
    reporter_workers: int(
      DEFAULT_REPORTER_WORKERS,
      'lars up: reporter worker processes sharing its port (0 = do not run the reporter here)',
      0,
      64,
    ),
    web_workers: int(
      DEFAULT_WEB_WORKERS,
      'lars up: console worker processes sharing its port (0 = do not run the console here)',
      0,
      64,
    ),
    shm_workers: int(
      DEFAULT_SHM_WORKERS,
      'lars up: run the shared-memory manager (1) or not (0); started before and stopped after the other services',
      0,
      1,
    ),
    agent_workers: int(
      DEFAULT_AGENT_WORKERS,
      'lars up: run the agent (1) or not (0); one process owns all per-route state, so never more',
      0,
      1,
    ),
    bus_workers: int(
      DEFAULT_BUS_WORKERS,
      'lars up: run the same-host message bus (1) or not (0); one process owns every connection, so never more',
      0,
      1,
    ),
    dns_handoff: {
      type: 'bool',
      default: false,
      description:
        'lars up: the master accepts dns connections and hands each to a worker chosen by a hash of the peer address (false = workers accept on the shared socket; see docs/operations.md)',
    } as BoolSpec,
    restart_max: int(
      DEFAULT_RESTART_MAX,
      'crashes of one service within restart_window after which the supervisor stops restarting it',
      1,
      1000,
    ),
    restart_window: num(DEFAULT_RESTART_WINDOW_S, 'seconds over which crashes are counted for restart_max', {
      gt: 0,
      max: 86_400,
    }),
    restart_delay: num(
      DEFAULT_RESTART_DELAY_S,
      'seconds before restarting a crashed worker; doubles with each crash in the window',
      { gt: 0, max: 3600 },
    ),
    restart_delay_max: num(DEFAULT_RESTART_DELAY_MAX_S, 'cap of the restart delay in seconds', {
      gt: 0,
      max: 3600,
    }),
    drain_timeout: num(
      DEFAULT_DRAIN_TIMEOUT_S,
      'seconds children get to finish after SIGTERM (stop, or replacement on SIGHUP) before SIGKILL',
      { gt: 0, max: 3600 },
    ),
    start_timeout: num(
      DEFAULT_START_TIMEOUT_S,
      'seconds a starting worker has to report ready before it counts as failed',
      { gt: 0, max: 3600 },
    ),
  },
  bus: {
    socket: str(
      '',
      'Unix socket of the same-host bus (empty = <data-dir>/bus/bus.sock; directory 0700, socket 0600)',
    ),
    offline_ms: int(
      DEFAULT_BUS_OFFLINE_MS,
      'a proc not heard from (any frame or heartbeat) for this long is offline',
      100,
      3_600_000,
    ),
    kill_ms: int(
      0,
      'a proc not heard from for this long is removed with its subscriptions and served topics (0 = 3 x offline_ms)',
      0,
      86_400_000,
    ),
    heartbeat_ms: int(
      DEFAULT_BUS_HEARTBEAT_MS,
      'how often quiet clients send a heartbeat (at most offline_ms / 3)',
      10,
      600_000,
    ),
    max_pending_msgs: int(
      DEFAULT_BUS_MAX_PENDING_MSGS,
      'messages queued in the bus for one connection before further messages for it are dropped (counted, with a notice)',
      1,
      100_000_000,
    ),
    max_pending_bytes: int(
      DEFAULT_BUS_MAX_PENDING_BYTES,
      'bytes queued in the bus for one connection before further messages for it are dropped (counted, with a notice)',
      4096,
      4 * 1024 * 1024 * 1024,
    ),
    write_deadline_ms: int(
      DEFAULT_BUS_WRITE_DEADLINE_MS,
      'a connection that keeps dropping messages (queue full) for this long is cut (LARS_ERR_SLOW_PEER)',
      100,
      3_600_000,
    ),
    max_payload: int(
      DEFAULT_BUS_MAX_PAYLOAD,
      'largest message payload in bytes (frames may be 4 KiB larger for subject and headers)',
      1024,
      64 * 1024 * 1024,
    ),
    max_subs_per_conn: int(
      DEFAULT_BUS_MAX_SUBS_PER_CONN,
      'subscriptions plus served topics one connection may hold',
      1,
      1_000_000,
    ),
    max_conns: int(
      DEFAULT_BUS_MAX_CONNS,
      'client connections; more are refused (LARS_ERR_MAX_CONNECTIONS)',
      1,
      100_000,
    ),
    linger_ms: int(
      DEFAULT_BUS_LINGER_MS,
      'at shutdown, how long queued messages may take to reach their clients before connections are closed',
      0,
      60_000,
    ),
    http_port: port(0, 'port of the health/metrics/procs HTTP endpoint on 127.0.0.1 (0 = any free port)'),
  },
  // The bus's bridge to NATS between hosts (issue 14); off unless `url` is set.
  'bus.bridge': {
    url: str(
      '',
      'NATS server of the bridge, e.g. nats://127.0.0.1:4222 (empty = no bridge; the nats client is not even loaded)',
    ),
    prefix: str(
      '',
      'NATS subject = prefix + "." + local subject for what this bus exports and serves (empty = lars.<hostname>)',
    ),
    export: str(
      '',
      'local subjects (comma-separated; hierarchical, * and >) whose messages are copied to NATS',
    ),
    import: str(
      '',
      'NATS subjects (comma-separated) whose messages are published on this bus (this prefix stripped)',
    ),
    serve: str(
      '',
      'local topics (comma-separated) whose NATS requests (on prefix.topic) local servers answer',
    ),
    forward: str(
      '',
      'local topics (comma-separated; * and >) whose requests go to NATS when no local server is there',
    ),
  },
  shm: {
    socket: str('', 'Unix socket of lars shm (empty = <data-dir>/shm/shm.sock); clients use the same key'),
    classes: str(
      DEFAULT_SHM_CLASSES,
      'size classes SIZE:COUNT,... (sizes multiples of 64 bytes); the pool is their sum plus a 4 KiB header',
    ),
    mode: str(
      'auto',
      'auto (native addon when it loads, else /dev/shm file mode), addon (fail without the addon) or file',
    ),
    quota_percent: int(
      DEFAULT_SHM_QUOTA_PERCENT,
      'share of the pool one process may hold, counting batches it sent that are not yet received',
      1,
      100,
    ),
    max_batches_per_proc: int(
      DEFAULT_SHM_MAX_BATCHES_PER_PROC,
      'batches one process may have in flight (sent, not yet received)',
      1,
      1_000_000,
    ),
    batch_ttl: num(
      DEFAULT_SHM_BATCH_TTL_S,
      'seconds a batch waits for its recv when the sender gives no ttl',
      {
        gt: 0,
        max: 86_400,
      },
    ),
    max_batch_ttl: num(DEFAULT_SHM_MAX_BATCH_TTL_S, 'largest ttl in seconds a sender may ask for', {
      gt: 0,
      max: 86_400,
    }),
    max_conns: int(
      DEFAULT_SHM_MAX_CONNS,
      'simultaneous client connections; more are refused and counted',
      1,
      1_000_000,
    ),
    ip: host(DEFAULT_HOST, 'address of the health/metrics HTTP endpoint'),
    http_port: port(0, 'port of the health/metrics HTTP endpoint (0 = any free port)'),
  },
} as const satisfies Record<string, Record<string, KeySpec>>;

export type Schema = typeof SCHEMA;
export type SectionName = keyof Schema;

type ValueOf<S> = S extends { type: 'bool' }
  ? boolean
  : S extends { type: 'ports' }
    ? readonly number[]
    : S extends { type: 'string' | 'host' }
      ? string
      : number;

export type Config = {
  readonly [S in SectionName]: { readonly [K in keyof Schema[S]]: ValueOf<Schema[S][K]> };
};
