import { Command } from 'commander';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isLarsError } from '../../errors.js';
import { redact } from '../../store/url.js';
import type { StatusSnapshot } from '../../supervisor/index.js';
import { loadServiceConfig, withConfigOption } from '../options.js';

interface UpFlags {
  dataDir: string;
  config?: string;
  db?: string;
  demo?: boolean;
}

/** Default data directory of up/status/stop: --data-dir > env LARS_DATA_DIR > ./lars-data. */
export function defaultDataDir(): string {
  return process.env.LARS_DATA_DIR ?? './lars-data';
}

/**
 * `lars up`: the whole stack under a master process (issue 7, docs/operations.md). The master only
 * manages; dns, reporter, console and agent run as child processes of the compiled CLI, with the
 * worker counts of `[supervisor]`. On embedded SQLite at DIR/lars.db unless --db says otherwise.
 */
export function register(program: Command): void {
  withConfigOption(
    program
      .command('up')
      .description(
        'run the whole stack under a supervising master: dns, reporter, console and agent as worker processes ' +
          '(SIGHUP reloads, SIGINT/SIGTERM or `lars stop` drains; see docs/operations.md)',
      ),
  )
    .option(
      '--data-dir <dir>',
      'data directory (database, agent cache, control socket); env LARS_DATA_DIR',
      defaultDataDir(),
    )
    .option('--db <url>', 'database URL shared by the services (default sqlite:DIR/lars.db)')
    .option('--demo', 'add a few demo routes on first start')
    .action(async (o: UpFlags) => {
      const code = await runUp(o, program);
      process.exit(code);
    });
}

export async function runUp(o: UpFlags, program: Command): Promise<number> {
  const [{ JsonLogger, isLogLevel }, { openStore }, { ExitCode, Supervisor }, { addDemoRoutes }] =
    await Promise.all([
      import('../../log/json-logger.js'),
      import('../../store/index.js'),
      import('../../supervisor/index.js'),
      import('../../up/demo-routes.js'),
    ]);
  const dataDir = resolve(o.dataDir);
  makePrivateDir(dataDir);
  const configArg = o.config ?? process.env.LARS_CONFIG;
  const configFile = configArg ? resolve(configArg) : undefined;
  const loaded = loadServiceConfig(configFile, []);
  const dbUrl = o.db ?? `sqlite:${join(dataDir, 'lars.db')}`;
  const log = masterLogger(JsonLogger, isLogLevel);

  const supervisor = new Supervisor({
    program,
    dataDir,
    dbUrl,
    configFile,
    loaded,
    reloadConfig: () => loadServiceConfig(configFile, []),
    logger: log,
    notify: (line) => void process.stderr.write(`${line}\n`),
    logSink: (label, line, stream) => {
      (stream === 'out' ? process.stdout : process.stderr).write(`${label} | ${line}\n`);
    },
  });
  const busyPid = await supervisor.claim();
  if (busyPid !== undefined) {
    process.stderr.write(
      `lars: LARS_ERR_ADDRESS_IN_USE: another lars up (pid ${busyPid}) is running on ${dataDir}; ` +
        `see \`lars status --data-dir ${o.dataDir}\`, stop it with \`lars stop --data-dir ${o.dataDir}\`, or use another --data-dir\n`,
    );
    return ExitCode.START_FAILED;
  }

  // Schema and demo routes are set up once here, before any service opens the database.
  try {
    const store = await openStore(dbUrl, { logger: log });
    try {
      const migrated = await store.migrate();
      if (migrated.applied.length) log.info({ applied: migrated.applied }, 'database schema created');
      if (o.demo) {
        const n = await addDemoRoutes(store);
        if (n) log.info({ hosts: n }, 'demo routes added');
      }
    } finally {
      await store.close();
    }
  } catch (err) {
    await supervisor.release();
    throw err;
  }

  process.on('SIGINT', () => supervisor.requestStop('SIGINT'));
  process.on('SIGTERM', () => supervisor.requestStop('SIGTERM'));
  process.on('SIGHUP', () => supervisor.requestReload());

  try {
    await supervisor.start();
  } catch (err) {
    const what = isLarsError(err) ? `${err.code}: ${err.message}` : (err as Error).message;
    process.stderr.write(`lars: ${what}\nlars up: could not start; stopped.\n`);
    return supervisor.finished;
  }
  const snapshot = await supervisor.snapshot(false);
  if (snapshot.master.state === 'running')
    process.stdout.write(banner(snapshot, o.dataDir, redact(dbUrl)) + '\n');
  return supervisor.finished;
}

/**
 * The data directory holds the database (password and session hashes) and the control socket
 * (issue 11): created 0700, and an existing one of ours loses group/other access.
 */
function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) chmodSync(dir, 0o700);
}

/** The master's own log: JSON lines like the services', each prefixed like theirs. */
function masterLogger(
  Logger: typeof import('../../log/json-logger.js').JsonLogger,
  isLevel: typeof import('../../log/json-logger.js').isLogLevel,
) {
  const prefix = `supervisor[${process.pid}] | `;
  const env = process.env.LARS_LOG_LEVEL;
  return new Logger({
    base: { component: 'supervisor', pid: process.pid },
    level: isLevel(env) ? env : 'info',
    write: (s: string) => void process.stdout.write(prefix + s),
  });
}

/** Where a service's admin HTTP answers: its listen address, or loopback for a wildcard or a Unix socket. */
function healthHost(first: { proto: string; host: string } | undefined): string {
  if (!first || first.proto === 'unix' || first.host === '0.0.0.0') return '127.0.0.1';
  return first.host.includes(':') ? `[${first.host}]` : first.host;
}

/** "Lars is up": where each service listens, and how to operate the master. */
function banner(s: StatusSnapshot, dataDirArg: string, db: string): string {
  const lines = [`Lars is up (master pid ${s.master.pid}, data: ${s.master.dataDir}, database: ${db})`];
  const missing: string[] = [];
  for (const svc of s.services) {
    if (svc.state === 'unavailable') {
      missing.push(svc.name);
      continue;
    }
    if (svc.state === 'disabled') {
      lines.push(`  ${svc.name.padEnd(9)} not run here ([supervisor] ${svc.name}_workers = 0)`);
      continue;
    }
    const first = svc.listen[0];
    const where =
      svc.name === 'web' && first
        ? `http://${first.host}:${first.port}/`
        : first?.proto === 'unix'
          ? `unix ${first.host}`
          : svc.name === 'agent'
            ? `udp ${first?.host}:${svc.listen.map((e) => e.port).join(',')}`
            : `tcp ${first?.host}:${first?.port}`;
    const n = svc.workers.wanted;
    const mode =
      svc.name === 'dns' ? (s.master.dnsHandoff ? ', handoff by the master' : ', shared socket') : '';
    const health = svc.processes
      .map((p) => p.ports.http)
      .filter((p): p is number => typeof p === 'number' && svc.name !== 'web')
      .map((p) => `http://${healthHost(first)}:${p}/healthz`);
    lines.push(
      `  ${svc.name.padEnd(9)} ${where.padEnd(32)} ${n} worker${n === 1 ? '' : 's'}${mode}${health.length ? `   health ${[...new Set(health)].join(' ')}` : ''}`,
    );
  }
  if (missing.length) lines.push(`  (not in this build: ${missing.join(', ')})`);
  const dd = dataDirArg === './lars-data' ? '' : ` --data-dir ${dataDirArg}`;
  lines.push(
    '  (health ports are per worker and change when a worker is replaced: lars status shows the current ones)',
  );
  lines.push(
    `Status: lars status${dd}   Stop: lars stop${dd} (or Ctrl-C)   Reload config: kill -HUP ${s.master.pid}`,
  );
  lines.push('Try: lars test gethost 1 1');
  return lines.join('\n');
}
