import type { Command } from 'commander';
import type { FlagOverride } from '../../config/index.js';
import { withListenErrors } from '../../service/listen-error.js';
import { redact } from '../../store/url.js';
import { notifyReady } from '../../supervisor/child-ipc.js';
import type { WebService } from '../../web/index.js';
import {
  loadServiceConfig,
  parsePorts,
  processIo,
  resolveDbUrl,
  untilSignal,
  withConfigOption,
  withDbOption,
} from '../options.js';

/**
 * `lars web`: the operators' console (issue 6) over one database. On a database without any console
 * user it creates `admin` with a random password (or LARS_ADMIN_PASSWORD) and prints it once.
 */

interface WebFlags {
  db?: string;
  config?: string;
  host?: string;
  port?: string;
}

export function webFlags(o: WebFlags): FlagOverride[] {
  const flags: FlagOverride[] = [];
  if (o.host) flags.push({ section: 'web', key: 'ip', value: o.host, flag: '--host' });
  if (o.port)
    flags.push({
      section: 'web',
      key: 'port',
      value: parsePorts(o.port, '--port')[0] as number,
      flag: '--port',
    });
  return flags;
}

export async function runWeb(o: WebFlags): Promise<void> {
  // Loaded here, not at start-up: every other command starts faster without them.
  const [{ createServiceLogger }, { openStore }, { ADMIN_USER_NAME, ensureAdminUser, WebService }] =
    await Promise.all([
      import('../../log/logger.js'),
      import('../../store/index.js'),
      import('../../web/index.js'),
    ]);
  const { config } = loadServiceConfig(o.config, webFlags(o));
  const log = createServiceLogger('web');
  const url = resolveDbUrl(o.db, process.env, config);
  const store = await openStore(url, { logger: log });
  let web: WebService | undefined;
  try {
    await store.migrate();
    const fromEnv = process.env.LARS_ADMIN_PASSWORD || undefined;
    const password = await ensureAdminUser(store, { password: fromEnv });
    web = new WebService({
      store,
      host: config.web.ip,
      port: config.web.port,
      logger: log.child({ db: redact(url) }),
    });
    const started = web;
    const { url: consoleUrl, port } = await withListenErrors(
      [
        {
          what: 'the console',
          proto: 'tcp',
          host: config.web.ip,
          port: config.web.port,
          setting: '--port or [web] port',
          hostSetting: '--host or [web] ip',
        },
      ],
      () => started.start(),
    );
    notifyReady({ http: port });
    processIo.out(`lars web console: ${consoleUrl}`);
    if (password !== undefined && fromEnv !== undefined) {
      // Never echo a password the operator gave (issue 11): it would land in logs.
      processIo.out(`created console user "${ADMIN_USER_NAME}" with the password from LARS_ADMIN_PASSWORD`);
    } else if (password !== undefined) {
      processIo.out(`created console user "${ADMIN_USER_NAME}" with password: ${password}`);
      processIo.out('(shown only this once; change it with `lars user passwd admin --password-stdin`)');
    }
  } catch (err) {
    await web?.close();
    await store.close();
    throw err;
  }
  const sig = await untilSignal();
  log.info({ signal: sig }, 'web console shutting down');
  await web.close();
  await store.close();
}

export function register(program: Command): void {
  withDbOption(
    withConfigOption(
      program
        .command('web')
        .description(
          'run the web console: routes, module/command ids, change log, call health, JSON API (docs/api.md)',
        ),
    ),
  )
    .option('--host <ip>', 'listen address (default [web] ip, 127.0.0.1)')
    .option('--port <port>', 'listen port (default [web] port, 8080; 0 = any free port)')
    .action((o: WebFlags) => runWeb(o));
}
