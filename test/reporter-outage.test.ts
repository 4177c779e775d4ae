import BetterSqlite3 from 'better-sqlite3';
import { connect, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { Logger } from '../src/log/logger.js';
import { encodeFrame, encodeMessage, MsgId, type ReportStatusRequest } from '../src/protocol/index.js';
import { ReporterService } from '../src/reporter/index.js';
import type { Store } from '../src/store/index.js';
import {
  backends,
  freshStore,
  skipBackend,
  suiteTitle,
  type BackendDescriptor,
} from './helpers/databases.js';
import { sqliteWorkerScript } from './helpers/worker-scripts.js';
import { waitFor } from './helpers/latch.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

interface LogLine {
  level: string;
  msg: string | undefined;
}

function memoryLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: string) =>
    (_obj: object, msg?: string): void => {
      lines.push({ level, msg });
    };
  const logger: Logger = {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: () => logger,
  };
  return { logger, lines };
}

function agent(port: number): Promise<{ report(msg: ReportStatusRequest): void }> {
  return new Promise((resolve, reject) => {
    const s: Socket = connect({ host: '127.0.0.1', port }, () => {
      s.off('error', reject);
      s.on('error', () => {});
      onTestFinished(() => void s.destroy());
      resolve({
        report: (msg) =>
          s.write(encodeFrame(MsgId.ReportStatusRequest, encodeMessage(MsgId.ReportStatusRequest, msg))),
      });
    });
    s.once('error', reject);
  });
}

/**
 * Takes the reporter's database away and brings it back:
 * - MariaDB/PostgreSQL: the reporter talks to the server through a TcpProxy; pause() cuts every
 *   connection and refuses new ones.
 * - SQLite: another connection holds the write lock (BEGIN IMMEDIATE) so the writer thread's
 *   transactions fail with SQLITE_BUSY after its (short) busy timeout. Only that thread waits:
 *   the test and the reporter share the main thread, which must stay free.
 */
async function outage(
  b: BackendDescriptor,
  url: string,
): Promise<{ dbUrl: string; down(): void; up(): void }> {
  if (b.kind === 'sqlite') {
    const path = url.slice('sqlite:'.length);
    const locker = new BetterSqlite3(path);
    onTestFinished(() => {
      if (locker.inTransaction) locker.exec('rollback');
      locker.close();
    });
    return { dbUrl: url, down: () => locker.exec('begin immediate'), up: () => locker.exec('rollback') };
  }
  const u = new URL(url);
  const proxy = await TcpProxy.start({
    host: u.hostname,
    port: Number(u.port || (b.kind === 'mysql' ? 3306 : 5432)),
  });
  onTestFinished(() => proxy.close());
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return { dbUrl: u.toString(), down: () => proxy.pause(), up: () => proxy.resume() };
}

async function hostsOf(store: Store, modid: number, cmdid: number): Promise<number[]> {
  const rows = await store.db
    .selectFrom('ServerCallStatus')
    .select(['ip', 'succ_cnt'])
    .where('modid', '=', modid)
    .where('cmdid', '=', cmdid)
    .orderBy('ip')
    .execute();
  for (const r of rows) expect(Number(r.succ_cnt)).toBe(Number(r.ip));
  return rows.map((r) => Number(r.ip));
}

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'reporter database outage'), () => {
    it('keeps accepting with bounded queues, drops the oldest rows (counted, logged once), recovers', async () => {
      const { store, url } = await freshStore(b);
      const db = await outage(b, url);
      const { logger, lines } = memoryLogger();
      const CAP = 200;
      const BATCH = 50;
      const svc = new ReporterService({
        dbUrl: db.dbUrl,
        host: '127.0.0.1',
        port: 0,
        maxConnections: 10,
        maxOutboundBytes: 1 << 20,
        writers: 3,
        queueMaxRows: CAP,
        batchMaxRows: BATCH,
        retryBackoff: { initialMs: 20, maxMs: 100, jitter: 0 },
        sqliteWorkerScript,
        sqliteBusyTimeoutMs: 10,
        logger,
      });
      onTestFinished(() => svc.destroy());
      const { port, httpPort } = await svc.start();
      const lane = svc.writerOf(7, 7);
      const a = await agent(port);
      const hosts = (from: number, to: number): ReportStatusRequest => ({
        modid: 7,
        cmdid: 7,
        caller: 1,
        ts: 1,
        results: range(from, to).map((ip) => ({ ip, port: 80, succ: ip, err: 0, overload: false })),
      });

      // Healthy: rows are written.
      a.report(hosts(1, 10));
      await waitFor(() => svc.stats.rowsReceived === 10);
      await svc.drained();
      expect(await hostsOf(store, 7, 7)).toEqual(range(1, 10));

      // Down: 1000 more rows of the route arrive. The first report's first BATCH rows go into a
      // batch that fails and is kept for the retry; of the rest the queue keeps the newest CAP.
      db.down();
      a.report(hosts(101, 300));
      await waitFor(() => svc.health().database === 'failing', 10_000, 'database failing');
      for (let i = 1; i < 5; i++) a.report(hosts(101 + i * 200, 300 + i * 200));
      await waitFor(() => svc.stats.rowsReceived === 1010, 10_000, 'rows received while down');
      expect(svc.queueDepths()[lane]).toBe(CAP + BATCH);
      expect(svc.laneStats()[lane]!.dropped).toBe(1000 - BATCH - CAP);
      // Still accepting: a new agent connects and reports during the outage.
      const late = await agent(port);
      late.report(hosts(5000, 5000));
      await waitFor(() => svc.stats.rowsReceived === 1011);
      expect(svc.queueDepths()[lane]).toBe(CAP + BATCH);
      expect(svc.laneStats()[lane]!.dropped).toBe(1000 - BATCH - CAP + 1);
      expect(svc.health()).toMatchObject({ status: 'degraded', database: 'failing' });
      // Several failed retries, one warning each for the outage and the overflow.
      await waitFor(() => svc.laneStats()[lane]!.failures >= 3, 10_000, 'three failed writes');
      expect(lines.filter((l) => l.msg?.startsWith('writer queue full'))).toHaveLength(1);
      expect(lines.filter((l) => l.msg?.startsWith('database write failed'))).toHaveLength(1);

      // Back: the retry writes the kept batch, then the newest rows; the ones in between are gone.
      db.up();
      await svc.drained();
      expect(await hostsOf(store, 7, 7)).toEqual([
        ...range(1, 10),
        ...range(101, 150),
        ...range(902, 1100),
        5000,
      ]);
      const stats = svc.laneStats()[lane]!;
      expect(stats.rowsCommitted + stats.dropped).toBe(stats.rowsIn);
      expect(svc.health()).toMatchObject({ status: 'ok', database: 'ok' });
      expect(lines.filter((l) => l.msg === 'database writes resumed')).toHaveLength(1);
      expect(lines.filter((l) => l.msg === 'writer queue below half capacity again')).toHaveLength(1);
      const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      expect(text).toMatch(new RegExp(`^lars_reporter_rows_dropped_total ${1000 - BATCH - CAP + 1}$`, 'm'));
      expect(text).toMatch(/^lars_reporter_database_up 1$/m);
      expect(Number(/^lars_reporter_db_write_failures_total (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(
        3,
      );

      // And keeps writing afterwards.
      a.report(hosts(6000, 6000));
      await waitFor(() => svc.stats.rowsReceived === 1012);
      await svc.drained();
      expect((await hostsOf(store, 7, 7)).at(-1)).toBe(6000);
    });
  });
});
