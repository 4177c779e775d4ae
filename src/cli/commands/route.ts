import type { Command } from 'commander';
import { ipToNumber, numberToIp, parsePort } from '../../protocol/ip.js';
import type { DnsNotifier, OpenStoreOptions, RouteRow, Store } from '../../store/index.js';
import { parseInt32 } from '../../store/validate.js';
import { processIo, resolveDbUrl, textTable, withDbOption, type CliIo } from '../options.js';

/**
 * `lars route add|rm|ls`: edit and show routes in the database. Every edit bumps the route version;
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
    modid: parseInt32(a.modid, 'modid'),
    cmdid: parseInt32(a.cmdid, 'cmdid'),
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

export async function runRouteAdd(
  args: HostArgs,
  options: { db?: string | undefined },
  deps: RouteCommandDeps = {},
): Promise<void> {
  const io = deps.io ?? processIo;
  const h = parseHostArgs(args);
  await withStore(options.db, deps, async (store) => {
    const { id, version } = await store.addHost(h.modid, h.cmdid, h.ip, h.port);
    io.out(
      `added ${numberToIp(h.ip)}:${h.port} to route ${h.modid}/${h.cmdid} (id ${id}); version ${version}`,
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

function table(rows: RouteRow[]): string[] {
  const header = ['ID', 'MODID', 'CMDID', 'IP', 'PORT'];
  const cells = rows.map((r) => [
    String(r.id),
    String(r.modid),
    String(r.cmdid),
    numberToIp(r.ip),
    String(r.port),
  ]);
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
    ...(modid !== undefined ? { modid: parseInt32(modid, 'modid') } : {}),
    ...(cmdid !== undefined ? { cmdid: parseInt32(cmdid, 'cmdid') } : {}),
  };
  await withStore(options.db, deps, async (store) => {
    const version = await store.getVersion();
    const rows = await store.listRoutes(filter);
    if (options.json) {
      io.out(
        JSON.stringify({
          version,
          routes: rows.map((r) => ({
            id: r.id,
            modid: r.modid,
            cmdid: r.cmdid,
            ip: numberToIp(r.ip),
            ipNumber: r.ip,
            port: r.port,
          })),
        }),
      );
      return;
    }
    io.out(`version ${version}`);
    for (const l of table(rows)) io.out(l);
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
    .addHelpText('after', '\nExample:\n  lars route add 1 1 192.168.1.177 7777')
    .action(async (modid: string, cmdid: string, ip: string, port: string, opts: { db?: string }) =>
      runRouteAdd({ modid, cmdid, ip, port }, opts, deps),
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
      .description('list hosts (all, one module, or one route) with the current route version')
      .argument('[modid]', 'only this module id')
      .argument('[cmdid]', 'only this command id (needs MODID)'),
  )
    .option(
      '--json',
      'print {"version", "routes": [{id, modid, cmdid, ip, ipNumber, port}]} instead of a table',
    )
    .action(
      async (modid: string | undefined, cmdid: string | undefined, opts: { db?: string; json?: boolean }) =>
        runRouteLs(modid, cmdid, opts, deps),
    );
}
