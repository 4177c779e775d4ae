import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import { encodeFrame, encodeMessage, MsgId } from '../src/protocol/index.js';
import { drainBudgetMs, ReporterService, type ReporterServiceOptions } from '../src/reporter/index.js';
import { openStore, type Store } from '../src/store/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';
import { stretch, waitFor } from './helpers/latch.js';
import { unusedPort } from './helpers/ports.js';
import { sqliteWorkerScript } from './helpers/worker-scripts.js';
import { CLI, CLI_BUILT, eventually } from './supervisor-harness.js';

/**
 * Issue 11, item 2: on SIGTERM the reporter stops accepting, reads what its connections already
 * sent, writes every queued row, and only then exits, within its drain budget; `received =
 * written + dropped` exactly. Under load, on every database.
 */

const ROWS_PER_FRAME = 10;
const realSetInterval = globalThis.setInterval;

/**
 * Agents' reporter links as raw sockets, each sending `framesPerTick` ReportStatusRequests of 10
 * rows every 10 ms. Every row has its own key (ip = a global counter), so the rows in
 * ServerCallStatus are exactly the rows written. A link counts the rows it wrote before the
 * reporter ended the connection; then it stops writing and closes its side, as the agent does.
 */
class ReportLoad {
  rows = 0;
  private next = 1;
  private readonly ended: Promise<void>[] = [];
  private readonly sockets: Socket[] = [];

  constructor(port: number, connections: number, framesPerTick: number) {
    for (let i = 0; i < connections; i++) this.ended.push(this.link(port, framesPerTick));
  }

  /** Resolves once the reporter has ended every connection and each has closed. */
  allEnded(): Promise<void> {
    return Promise.all(this.ended).then(() => undefined);
  }

  destroy(): void {
    for (const s of this.sockets) s.destroy();
  }

  private link(port: number, framesPerTick: number): Promise<void> {
    return new Promise((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      this.sockets.push(socket);
      socket.on('error', () => {});
      let open = false;
      let waiting = false;
      const timer = realSetInterval(() => {
        if (!open || waiting) return;
        for (let f = 0; f < framesPerTick; f++) {
          const results = [];
          for (let r = 0; r < ROWS_PER_FRAME; r++)
            results.push({ ip: this.next++, port: 1, succ: 5, err: 1, overload: false });
          const msg = { modid: 1 + (this.next % 97), cmdid: 1, caller: 7, results, ts: 1_700_000_000 };
          const ok = socket.write(
            encodeFrame(MsgId.ReportStatusRequest, encodeMessage(MsgId.ReportStatusRequest, msg)),
          );
          this.rows += ROWS_PER_FRAME;
          if (!ok) {
            waiting = true;
            socket.once('drain', () => (waiting = false));
            break;
          }
        }
      }, 10);
      socket.once('connect', () => (open = true));
      // The reporter ended the connection: stop writing (the socket ends our side after what is queued).
      socket.once('end', () => {
        open = false;
        clearInterval(timer);
      });
      socket.once('close', () => {
        clearInterval(timer);
        resolve();
      });
    });
  }
}

async function statusRows(store: Store): Promise<number> {
  const r = await store.db
    .selectFrom('ServerCallStatus')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirst();
  return Number(r?.n ?? 0);
}

async function startReporter(
  dbUrl: string,
  extra: Partial<ReporterServiceOptions> = {},
): Promise<{ svc: ReporterService; port: number }> {
  const svc = new ReporterService({
    dbUrl,
    host: '127.0.0.1',
    port: 0,
    maxConnections: 100,
    maxOutboundBytes: 1 << 20,
    sqliteWorkerScript,
    ...extra,
  });
  onTestFinished(() => svc.destroy());
  const { port } = await svc.start();
  return { svc, port };
}

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'reporter drain'), () => {
    it('close() under load reads what agents already sent and writes every row: received = written, nothing dropped', async () => {
      const { store, url } = await freshStore(b);
      const { svc, port } = await startReporter(url);
      // ~20,000 rows/s over 4 connections.
      const load = new ReportLoad(port, 4, 5);
      onTestFinished(() => load.destroy());
      await waitFor(() => svc.stats.rowsReceived >= 20_000, 30_000, 'load running');

      const closing = svc.close(stretch(20_000));
      await load.allEnded();
      await closing;

      const rows = svc.accounting();
      // Nothing lost in socket buffers: every row a link wrote before the reporter ended it arrived.
      expect(rows.received).toBe(load.rows);
      expect(rows.received).toBe(rows.written + rows.dropped);
      expect(rows.dropped).toBe(0);
      expect(rows.pending).toBe(0);
      // And "written" is what the database holds (one row per key).
      expect(await statusRows(store)).toBe(rows.written);
      expect(svc.tcpStats.connectionsOpen).toBe(0);
    });
  });
});

describe.each(backends({ memory: false }).filter((b) => b.kind === 'sqlite'))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'reporter drain deadline'), () => {
    it('rows that cannot be written by the deadline are dropped and counted: received = written + dropped', async () => {
      const { store, url } = await freshStore(b);
      const { svc, port } = await startReporter(url, {
        sqliteBusyTimeoutMs: 10,
        retryBackoff: { initialMs: 50, maxMs: 50, jitter: 0 },
      });
      // Another process holds the database's write lock: every batch fails and waits to be retried.
      const file = url.replace(/^sqlite:/, '');
      const locker = new Database(file);
      onTestFinished(() => void locker.close());
      locker.exec('begin exclusive');
      const load = new ReportLoad(port, 2, 5);
      onTestFinished(() => load.destroy());
      await waitFor(() => svc.stats.rowsReceived >= 5_000, 30_000, 'rows queued');
      await waitFor(() => svc.laneStats().some((l) => l.failures > 0), 30_000, 'writes failing');

      const closing = svc.close(300);
      await load.allEnded();
      await closing;
      locker.exec('rollback');

      const rows = svc.accounting();
      expect(rows.received).toBe(load.rows);
      expect(rows.dropped).toBeGreaterThan(0);
      expect(rows.received).toBe(rows.written + rows.dropped);
      expect(rows.pending).toBe(0);
      expect(await statusRows(store)).toBe(rows.written);
    });
  });
});

const cliSuite = CLI_BUILT ? describe : describe.skip;

cliSuite('lars reporter SIGTERM (compiled CLI)', () => {
  it('drains under load within [supervisor] drain_timeout and logs received = written + dropped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lars-drain-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const db = join(dir, 'lars.db');
    const setup = await openStore(`sqlite:${db}`);
    await setup.migrate();
    await setup.close();
    const port = await unusedPort();
    const config = join(dir, 'reporter.ini');
    writeFileSync(config, `[reactor]\nport = ${port}\n[supervisor]\ndrain_timeout = ${stretch(15)}\n`);
    const env: NodeJS.ProcessEnv = { ...process.env, LARS_LOG_LEVEL: 'info' };
    for (const k of Object.keys(env)) if (k.startsWith('LARS_') && k !== 'LARS_LOG_LEVEL') delete env[k];
    const child = spawn(process.execPath, [CLI, 'reporter', '--config', config, '--db', `sqlite:${db}`], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: string[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(...c.toString().split('\n')));
    child.stderr.on('data', (c: Buffer) => out.push(...c.toString().split('\n')));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    onTestFinished(() => void child.kill('SIGKILL'));
    await eventually(
      () => (out.some((l) => l.includes('"reporter listening"')) ? true : undefined),
      30_000,
      'reporter up',
    );
    const load = new ReportLoad(port, 4, 5);
    onTestFinished(() => load.destroy());
    await eventually(() => (load.rows >= 20_000 ? true : undefined), 30_000, 'load running');
    child.kill('SIGTERM');
    await load.allEnded();
    expect(await exited).toBe(0);
    const line = out.find((l) => l.includes('received = written + dropped'));
    expect(line, out.join('\n')).toBeDefined();
    const rec = JSON.parse(line!) as { received: number; written: number; dropped: number; mode: string };
    expect(rec.mode).toBe('drain');
    expect(rec.received).toBe(load.rows);
    expect(rec.written).toBe(load.rows);
    expect(rec.dropped).toBe(0);
    const check = await openStore(`sqlite:${db}`);
    onTestFinished(() => check.close());
    expect(await statusRows(check)).toBe(load.rows);
  });

  it('drainBudgetMs keeps back a margin for exiting', () => {
    expect(drainBudgetMs(10)).toBe(9_000);
    expect(drainBudgetMs(1)).toBe(800);
  });
});
