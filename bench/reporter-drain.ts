/**
 * The reporter's drain on SIGTERM under load (issue 11, item 2): rows sent, received, written and
 * dropped, and how long the drain took.
 *
 *   npm run bench:reporter-drain                       # SQLite, 25,000 rows/s for 5 s
 *   node dist/bench/reporter-drain.js --db mysql --rate 25000 --duration 5 --drain-timeout 10
 *
 * A real `lars reporter` process (compiled CLI) on a throw-away database (sqlite, mysql or postgres,
 * bench/lib/databases.ts); 4 agent-like connections send ReportStatusRequests of 10 rows, each row
 * with its own key, at `--rate` rows/s; after `--duration` s the reporter gets SIGTERM while the load
 * goes on. A connection stops sending when the reporter ends it (as the agent does). Printed: rows
 * sent, the reporter's last line (received = written + dropped), the rows in ServerCallStatus, and
 * the time from SIGTERM to exit.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeFrame, encodeMessage, MsgId } from '../src/protocol/index.js';
import { openStore } from '../src/store/index.js';
import { numberArg, parseArgs } from './lib/args.js';
import { BACKEND_LABEL, benchBackend, createBenchDatabase } from './lib/databases.js';
import { machineLine } from './lib/proc.js';
import { freeTcpPort } from '../src/supervisor/ports.js';
import { CLI } from './lib/stack.js';
import { formatTable } from './lib/table.js';

const args = parseArgs(process.argv.slice(2));
const kind = benchBackend(args.get('db') ?? 'sqlite');
const rate = numberArg(args, 'rate', 25_000);
const durationS = numberArg(args, 'duration', 5);
const drainTimeoutS = numberArg(args, 'drain-timeout', 10);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), 'lars-drain-bench-'));
const db = await createBenchDatabase(kind);
const setup = await openStore(db.url);
await setup.migrate();
await setup.close();
const port = await freeTcpPort('127.0.0.1');
const config = join(dir, 'reporter.ini');
writeFileSync(config, `[reactor]\nport = ${port}\n[supervisor]\ndrain_timeout = ${drainTimeoutS}\n`);
const env: NodeJS.ProcessEnv = { ...process.env, LARS_LOG_LEVEL: 'info' };
for (const k of Object.keys(env)) if (k.startsWith('LARS_') && k !== 'LARS_LOG_LEVEL') delete env[k];
const child = spawn(process.execPath, [CLI, 'reporter', '--config', config, '--db', db.url], {
  env,
  stdio: ['ignore', 'pipe', 'inherit'],
});
let out = '';
child.stdout.on('data', (c: Buffer) => (out += c.toString()));
const exited = new Promise<void>((r) => child.once('exit', () => r()));
while (!out.includes('"reporter listening"')) await sleep(50);

let sent = 0;
let nextIp = 1;
const links: Promise<void>[] = [];
const sockets: Socket[] = [];
for (let c = 0; c < 4; c++) {
  links.push(
    new Promise((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      sockets.push(s);
      s.on('error', () => {});
      let open = false;
      let credit = 0;
      const timer = setInterval(() => {
        if (!open || s.writableNeedDrain) return;
        credit += rate / 4 / 100;
        while (credit >= 10) {
          credit -= 10;
          const results = Array.from({ length: 10 }, () => ({
            ip: nextIp++,
            port: 1,
            succ: 1,
            err: 0,
            overload: false,
          }));
          const msg = { modid: 1 + (nextIp % 97), cmdid: 1, caller: 1, ts: 1, results };
          s.write(encodeFrame(MsgId.ReportStatusRequest, encodeMessage(MsgId.ReportStatusRequest, msg)));
          sent += 10;
        }
      }, 10);
      s.once('connect', () => (open = true));
      s.once('end', () => {
        open = false;
        clearInterval(timer);
      });
      s.once('close', () => {
        clearInterval(timer);
        resolve();
      });
    }),
  );
}
await sleep(durationS * 1000);
const termAt = performance.now();
child.kill('SIGTERM');
await Promise.all(links);
await exited;
const drainMs = Math.round(performance.now() - termAt);
const line = out.split('\n').find((l) => l.includes('received = written + dropped'));
const rec = line ? (JSON.parse(line) as { received: number; written: number; dropped: number }) : undefined;
const check = await openStore(db.url);
const n = await check.db
  .selectFrom('ServerCallStatus')
  .select((eb) => eb.fn.countAll().as('n'))
  .executeTakeFirst();
await check.close();
await db.drop();
rmSync(dir, { recursive: true, force: true });

process.stdout.write(
  `reporter SIGTERM under ${rate.toLocaleString('en-US')} rows/s after ${durationS} s, drain_timeout ${drainTimeoutS} s, ${kind} (${machineLine()})\n`,
);
process.stdout.write(
  formatTable(
    ['database', 'rows sent', 'received', 'written', 'dropped', 'rows in table', 'SIGTERM to exit ms'],
    [
      [
        BACKEND_LABEL[kind],
        sent,
        rec?.received ?? NaN,
        rec?.written ?? NaN,
        rec?.dropped ?? NaN,
        Number(n?.n ?? 0),
        drainMs,
      ],
    ],
  ) + '\n',
);
