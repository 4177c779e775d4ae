import type { Command } from 'commander';
import { InvalidArgumentError } from '../../errors.js';
import { MAX_WEIGHT } from '../../protocol/lease-limits.js';
import { ipToNumber, numberToIp, parsePort } from '../../protocol/ip.js';
import type { DnsNotifier, HostMeta, OpenStoreOptions, RouteRow, Store } from '../../store/index.js';
import { parseId } from '../../store/validate.js';
import { processIo, resolveDbUrl, textTable, withDbOption, type CliIo } from '../options.js';
import { registerRouteRegisterCommand } from './route-register.js';

/**
 * `lars route add|rm|weight|ls|register`: edit and show routes in the database, and register a
 * host for as long as the command runs (route-register.ts). Every edit bumps the route version;
 * afterwards the running dns instances are asked for an immediate poll so agents get the change in
 * well under a second (a dns that cannot be reached sees it at its next poll anyway).
 */

export interface RouteCommandDeps {
  io?: CliIo;
  openStore?: (url: string, options?: OpenStoreOptions) => Promise<Store>;
  notifier?: DnsNotifier;
}

export interface HostArgs {
  modid: string;
  cmdid: string;
  ip: string;
  port: string;
}

const defaultNotifier: DnsNotifier = async (store) => {
  const { notifyDnsInstances, DEFAULT_NOTIFY_TIMEOUT_MS } = await import('../../store/notify-dns.js');
  return notifyDnsInstances(store, { timeoutMs: DEFAULT_NOTIFY_TIMEOUT_MS });
};

/** Validates the four positional arguments; each message names the argument. */
export function parseHostArgs(a: HostArgs): { modid: number; cmdid: number; ip: number; port: number } {
  return {
    modid: parseId(a.modid, 'modid'),
    cmdid: parseId(a.cmdid, 'cmdid'),
    ip: ipToNumber(a.ip.trim()),
    port: parsePort(a.port, 'port'),
  };
}

async function withStore<T>(
  db: string | undefined,
  deps: RouteCommandDeps,
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  // The store (and its database drivers) is loaded only by the commands that use it.
  const open = deps.openStore ?? (await import('../../store/index.js')).openStore;
  const store = await open(resolveDbUrl(db), { createIfMissing: false });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Asks the dns instances to poll; never fails the command (the edit is already committed). */
async function notify(store: Store, deps: RouteCommandDeps, io: CliIo): Promise<void> {
  try {
    const r = await (deps.notifier ?? defaultNotifier)(store);
    if (r.acknowledged > 0)
      io.out(`notified ${r.acknowledged} dns instance${r.acknowledged === 1 ? '' : 's'}`);
    if (r.failures.length > 0) {
      const detail = r.failures.map((f) => `${f.url}: ${f.reason}`).join('; ');
      io.err(
        `note: ${r.failures.length} of ${r.attempted} dns instances did not acknowledge (${detail}); they will see the change at their next poll`,
      );
    }
  } catch (err) {
    io.err(
      `note: could not notify dns instances (${(err as Error).message}); dns will see the change at its next poll`,
    );
  }
}

/** Parses a weight typed by a user: an integer 1..MAX_WEIGHT. */
export function parseWeight(text: string, field = '--weight'): number {
  const n = /^\d{1,6}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_WEIGHT) {
    throw new InvalidArgumentError(
      `${field}: expected an integer from 1 to ${MAX_WEIGHT}, got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

export async function runRouteAdd(
  args: HostArgs,
  options: { db?: string | undefined; weight?: string | undefined },
  deps: RouteCommandDeps = {},
): Promise<void> {
  const io = deps.io ?? processIo;
  const h = parseHostArgs(args);
  const weight = options.weight === undefined ? undefined : parseWeight(options.weight);
  await withStore(options.db, deps, async (store) => {
    const { id, version } = await store.addHost(h.modid, h.cmdid, h.ip, h.port, weight ? { weight } : {});
    io.out(
      `added ${numberToIp(h.ip)}:${h.port} to route ${h.modid}/${h.cmdid} (id ${id}${weight ? `, weight ${weight}` : ''}); version ${version}`,
    );
    await notify(store, deps, io);
  });
}

/** `lars route weight MODID CMDID IP PORT WEIGHT|clear`: a host's manual weight. */
export async function runRouteWeight(
  args: HostArgs & { weight: string },
  options: { db?: string | undefined },
  deps: RouteCommandDeps = {},
): Promise<void> {
  const io = deps.io ?? processIo;
  const h = parseHostArgs(args);
  const weight = args.weight === 'clear' ? null : parseWeight(args.weight, 'weight');
  await withStore(options.db, deps, async (store) => {
    const row = (await store.getRoute(h.modid, h.cmdid)).find((r) => r.ip === h.ip && r.port === h.port);
    if (!row) {
      const { NotFoundError } = await import('../../errors.js');
      throw new NotFoundError(`host ${numberToIp(h.ip)}:${h.port} is not in route ${h.modid}/${h.cmdid}`);
    }
    const { version } = await store.setHostWeight(row.id, weight);
    io.out(
      `${weight === null ? 'cleared the weight of' : `set weight ${weight} on`} ${numberToIp(h.ip)}:${h.port} in route ${h.modid}/${h.cmdid}; version ${version}`,
    );
    await notify(store, deps, io);
  });
}

export async function runRouteRm(
  args: HostArgs,
  options: { db?: string | undefined },
  deps: RouteCommandDeps = {},
): Promise<void> {
  const io = deps.io ?? processIo;
  const h = parseHostArgs(args);
  await withStore(options.db, deps, async (store) => {
    const { version } = await store.removeHost(h.modid, h.cmdid, h.ip, h.port);
    io.out(`removed ${numberToIp(h.ip)}:${h.port} from route ${h.modid}/${h.cmdid}; version ${version}`);
    await notify(store, deps, io);
  });
}

/** "in 7 s", "3 s ago" for a lease expiry. */
function expiryText(expiresAt: number, now: number): string {
  const s = Math.round((expiresAt - now) / 1000);
  return s >= 0 ? `in ${s} s` : `${-s} s ago`;
}

function table(rows: RouteRow[], meta: Map<number, HostMeta>, now: number): string[] {
  const header = ['ID', 'MODID', 'CMDID', 'IP', 'PORT', 'WEIGHT', 'ORIGIN', 'OWNER', 'EXPIRES'];
  const cells = rows.map((r) => {
    const m = meta.get(r.id);
    return [
      String(r.id),
      String(r.modid),
      String(r.cmdid),
      numberToIp(r.ip),
      String(r.port),
      String(m?.weight ?? 1),
      m?.origin ?? 'manual',
      m?.lease?.agent ?? '-',
      m?.lease ? expiryText(m.lease.expiresAt, now) : '-',
    ];
  });
  return textTable(header, cells);
}

export async function runRouteLs(
  modid: string | undefined,
  cmdid: string | undefined,
  options: { db?: string | undefined; json?: boolean | undefined },
  deps: RouteCommandDeps = {},
): Promise<void> {
  const io = deps.io ?? processIo;
  const filter = {
    ...(modid !== undefined ? { modid: parseId(modid, 'modid') } : {}),
    ...(cmdid !== undefined ? { cmdid: parseId(cmdid, 'cmdid') } : {}),
  };
  await withStore(options.db, deps, async (store) => {
    const version = await store.getVersion();
    const rows = await store.listRoutes(filter);
    const meta = await store.describeHosts(rows);
    if (options.json) {
      io.out(
        JSON.stringify({
          version,
          routes: rows.map((r) => {
            const m = meta.get(r.id);
            return {
              id: r.id,
              modid: r.modid,
              cmdid: r.cmdid,
              ip: numberToIp(r.ip),
              ipNumber: r.ip,
              port: r.port,
              weight: m?.weight ?? 1,
              origin: m?.origin ?? 'manual',
              ...(m?.lease
                ? { agent: m.lease.agent, expiresAt: m.lease.expiresAt, ttlS: m.lease.ttlMs / 1000 }
                : {}),
            };
          }),
        }),
      );
      return;
    }
    io.out(`version ${version}`);
    for (const l of table(rows, meta, Date.now())) io.out(l);
    io.out(`${rows.length} host${rows.length === 1 ? '' : 's'}`);
  });
}

export function registerRouteCommands(program: Command, deps: RouteCommandDeps = {}): void {
  const route = program
    .command('route')
    .description('add, remove and list the hosts of routes (modid, cmdid) in the database');

  const hostArgs = (cmd: Command): Command =>
    cmd
      .argument('<modid>', 'module id (integer, int32)')
      .argument('<cmdid>', 'command id (integer, int32)')
      .argument('<ip>', 'host IPv4 address, e.g. 192.168.1.177')
      .argument('<port>', 'host port (1-65535)');

  withDbOption(
    hostArgs(
      route
        .command('add')
        .description(
          'add host IP:PORT to route MODID/CMDID, bump the version and ask running dns instances to poll',
        ),
    ),
  )
    .option(
      '--weight <n>',
      `the host's share of calls relative to the route's other hosts (1-${MAX_WEIGHT}, default 1)`,
    )
    .addHelpText(
      'after',
      '\nExamples:\n  lars route add 1 1 192.168.1.177 7777\n  lars route add 1 1 192.168.1.178 7777 --weight 3',
    )
    .action(
      async (
        modid: string,
        cmdid: string,
        ip: string,
        port: string,
        opts: { db?: string; weight?: string },
      ) => runRouteAdd({ modid, cmdid, ip, port }, opts, deps),
    );

  withDbOption(
    hostArgs(
      route
        .command('weight')
        .description(
          "set (or with `clear`, remove) a host's manual weight; it wins over the weight a registered instance declares",
        ),
    ).argument('<weight>', `1-${MAX_WEIGHT}, or clear`),
  )
    .addHelpText('after', '\nExample:\n  lars route weight 1 1 192.168.1.177 7777 3')
    .action(
      async (modid: string, cmdid: string, ip: string, port: string, weight: string, opts: { db?: string }) =>
        runRouteWeight({ modid, cmdid, ip, port, weight }, opts, deps),
    );

  withDbOption(
    hostArgs(
      route
        .command('rm')
        .description(
          'remove host IP:PORT from route MODID/CMDID, bump the version and ask running dns instances to poll',
        ),
    ),
  )
    .addHelpText('after', '\nExample:\n  lars route rm 1 1 192.168.1.177 7777')
    .action(async (modid: string, cmdid: string, ip: string, port: string, opts: { db?: string }) =>
      runRouteRm({ modid, cmdid, ip, port }, opts, deps),
    );

  withDbOption(
    route
      .command('ls')
      .description(
        'list hosts (all, one module, or one route) with the current route version: weight, origin (manual or registered), owner agent and lease expiry of each',
      )
      .argument('[modid]', 'only this module id')
      .argument('[cmdid]', 'only this command id (needs MODID)'),
  )
    .option(
      '--json',
      'print {"version", "routes": [{id, modid, cmdid, ip, ipNumber, port, weight, origin, agent?, expiresAt?, ttlS?}]} instead of a table',
    )
    .action(
      async (modid: string | undefined, cmdid: string | undefined, opts: { db?: string; json?: boolean }) =>
        runRouteLs(modid, cmdid, opts, deps),
    );

  registerRouteRegisterCommand(route);
}
