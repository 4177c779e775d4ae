import { connect, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ClosedError } from '../src/errors.js';
import {
  encodeFrame,
  encodeMessage,
  HEADER_LEN,
  ipToWire,
  MsgId,
  type ReportStatusRequest,
} from '../src/protocol/index.js';
import { ReporterService, type ReporterServiceOptions } from '../src/reporter/index.js';
import type { Store } from '../src/store/index.js';
import { backends, freshStore, skipBackend, suiteTitle } from './helpers/databases.js';
import { sqliteWorkerScript } from './helpers/worker-scripts.js';
import { Latch, waitFor } from './helpers/latch.js';

// ---------- helpers ----------

const T0_MS = 1_700_000_040_000; // the start of a minute
const MINUTE0 = T0_MS / 1000;

/** An agent's reporter link, reduced to a raw socket writing frames. */
class Agent {
  private readonly closedLatch = new Latch(1, 'agent connection closed');
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.closedLatch.countDown();
    });
    socket.resume();
  }

  static connect(port: number): Promise<Agent> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.off('error', reject);
        const agent = new Agent(s);
        onTestFinished(() => void s.destroy());
        resolve(agent);
      });
      s.once('error', reject);
    });
  }

  report(msg: ReportStatusRequest): void {
    this.write(encodeFrame(MsgId.ReportStatusRequest, encodeMessage(MsgId.ReportStatusRequest, msg)));
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  waitClosed(): Promise<void> {
    return this.closedLatch.wait();
  }
}

async function startReporter(
  dbUrl: string,
  opts: Partial<ReporterServiceOptions> = {},
): Promise<{ svc: ReporterService; port: number; httpPort: number }> {
  const svc = new ReporterService({
    dbUrl,
    host: '127.0.0.1',
    port: 0,
    maxConnections: 100,
    maxOutboundBytes: 1 << 20,
    sqliteWorkerScript,
    ...opts,
  });
  onTestFinished(() => svc.destroy());
  const addr = await svc.start();
  return { svc, port: addr.port, httpPort: addr.httpPort };
}

interface StatusRow {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
  caller: number;
  succ_cnt: number;
  err_cnt: number;
  ts: number;
  overload: string;
}

async function statusRows(store: Store): Promise<StatusRow[]> {
  const rows = await store.db
    .selectFrom('ServerCallStatus')
    .selectAll()
    .orderBy('modid')
    .orderBy('cmdid')
    .orderBy('ip')
    .orderBy('port')
    .orderBy('caller')
    .execute();
  return rows.map((r) => ({
    modid: Number(r.modid),
    cmdid: Number(r.cmdid),
    ip: Number(r.ip),
    port: Number(r.port),
    caller: Number(r.caller),
    succ_cnt: Number(r.succ_cnt),
    err_cnt: Number(r.err_cnt),
    ts: Number(r.ts),
    overload: String(r.overload).trim(),
  }));
}

async function historyRows(store: Store) {
  const rows = await store.db
    .selectFrom('lars_call_history')
    .selectAll()
    .orderBy('modid')
    .orderBy('cmdid')
    .orderBy('ip')
    .orderBy('port')
    .orderBy('caller')
    .orderBy('minute')
    .execute();
  return rows.map((r) => ({
    modid: Number(r.modid),
    cmdid: Number(r.cmdid),
    ip: Number(r.ip),
    port: Number(r.port),
    caller: Number(r.caller),
    minute: Number(r.minute),
    succ_cnt: Number(r.succ_cnt),
    err_cnt: Number(r.err_cnt),
    overload: Number(r.overload),
  }));
}

async function settled(svc: ReporterService, rows: number): Promise<void> {
  await waitFor(() => svc.stats.rowsReceived >= rows, 10_000, `${rows} rows received`);
  await svc.drained();
}

function header(msgid: number, msglen: number): Buffer {
  const b = Buffer.alloc(HEADER_LEN);
  b.writeInt32LE(msgid, 0);
  b.writeInt32LE(msglen, 4);
  return b;
}

async function metrics(httpPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  return res.text();
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

// ---------- tests ----------

describe.each(backends({ memory: false }))('$name', (b) => {
  describe.skipIf(skipBackend(b))(suiteTitle(b, 'reporter service'), () => {
    it('stores the latest values of each host with unsigned IPs, plus a per-minute sample', async () => {
      const { store, url } = await freshStore(b);
      const { svc, port, httpPort } = await startReporter(url, { now: () => T0_MS + 5_000 });
      const agent = await Agent.connect(port);
      const caller = ipToWire('10.1.2.3');
      // 192.168.1.177 travels as the int32 -1062731343 and is stored as 3232235953 (INET_ATON).
      expect(ipToWire('192.168.1.177')).toBe(-1062731343);
      agent.report({
        modid: 1,
        cmdid: 2,
        caller,
        ts: 1_700_000_000,
        results: [
          { ip: -1062731343, port: 8080, succ: 5, err: 1, overload: false },
          { ip: ipToWire('10.0.0.9'), port: 9090, succ: 1, err: 9, overload: true },
        ],
      });
      agent.report({
        modid: 1,
        cmdid: 2,
        caller,
        ts: 1_700_000_001,
        results: [{ ip: -1062731343, port: 8080, succ: 7, err: 2, overload: true }],
      });
      // No ts: the reporter's clock. Extreme values: 255.255.255.255 and uint32 counters.
      agent.report({
        modid: -3,
        cmdid: 4,
        caller,
        ts: 0,
        results: [{ ip: ipToWire('255.255.255.255'), port: 1, succ: 4294967295, err: 0, overload: false }],
      });
      await settled(svc, 4);

      const callerU = 167838211; // 10.1.2.3
      expect(await statusRows(store)).toEqual([
        {
          modid: -3,
          cmdid: 4,
          ip: 4294967295,
          port: 1,
          caller: callerU,
          succ_cnt: 4294967295,
          err_cnt: 0,
          ts: MINUTE0 + 5,
          overload: '0',
        },
        {
          modid: 1,
          cmdid: 2,
          ip: 167772169,
          port: 9090,
          caller: callerU,
          succ_cnt: 1,
          err_cnt: 9,
          ts: 1_700_000_000,
          overload: '1',
        },
        {
          modid: 1,
          cmdid: 2,
          ip: 3232235953,
          port: 8080,
          caller: callerU,
          succ_cnt: 7,
          err_cnt: 2,
          ts: 1_700_000_001,
          overload: '1',
        },
      ]);
      expect(await historyRows(store)).toEqual([
        {
          modid: -3,
          cmdid: 4,
          ip: 4294967295,
          port: 1,
          caller: callerU,
          minute: MINUTE0,
          succ_cnt: 4294967295,
          err_cnt: 0,
          overload: 0,
        },
        {
          modid: 1,
          cmdid: 2,
          ip: 167772169,
          port: 9090,
          caller: callerU,
          minute: MINUTE0,
          succ_cnt: 1,
          err_cnt: 9,
          overload: 1,
        },
        {
          modid: 1,
          cmdid: 2,
          ip: 3232235953,
          port: 8080,
          caller: callerU,
          minute: MINUTE0,
          succ_cnt: 7,
          err_cnt: 2,
          overload: 1,
        },
      ]);

      const text = await metrics(httpPort);
      expect(metric(text, 'lars_reporter_reports_total')).toBe(3);
      expect(metric(text, 'lars_reporter_rows_received_total')).toBe(4);
      expect(metric(text, 'lars_reporter_rows_committed_total')).toBe(4);
      expect(metric(text, 'lars_reporter_rows_dropped_total')).toBe(0);
      expect(metric(text, 'lars_reporter_database_up')).toBe(1);
      expect(text).toMatch(/^lars_reporter_batch_rows_count \d+$/m);
      expect(text).toMatch(/^lars_reporter_db_write_seconds_count \d+$/m);
      expect(text).toMatch(/^lars_reporter_queue_depth\{writer="0"\} 0$/m);
      const health = await (await fetch(`http://127.0.0.1:${httpPort}/healthz`)).json();
      expect(health).toMatchObject({ status: 'ok', database: 'ok', connections: 1, reports: 3 });
    });

    it('keeps per-key order under concurrent connections: succ never goes backwards', async () => {
      const { store, url } = await freshStore(b);
      // Small batches: many batches per lane, so batch boundaries fall everywhere.
      const { svc, port } = await startReporter(url, { writers: 3, batchMaxRows: 64, now: () => T0_MS });
      const CONNS = 4;
      const ROUTES = 12;
      const HOSTS = 5;
      const STEPS = 40;
      const agents = await Promise.all(Array.from({ length: CONNS }, () => Agent.connect(port)));
      const lanesUsed = new Set(Array.from({ length: ROUTES }, (_, r) => svc.writerOf(1 + (r % 3), 10 + r)));
      expect(lanesUsed.size).toBe(3);

      // An observer reads the table throughout the run and records any counter that went back.
      const lastSeen = new Map<string, number>();
      const violations: string[] = [];
      let reads = 0;
      let running = true;
      const observer = (async () => {
        while (running) {
          for (const r of await statusRows(store)) {
            const key = `${r.modid}/${r.cmdid} ${r.ip}:${r.port} <${r.caller}>`;
            const before = lastSeen.get(key) ?? 0;
            if (r.succ_cnt < before) violations.push(`${key}: ${before} -> ${r.succ_cnt}`);
            if (r.err_cnt !== 2 * r.succ_cnt) violations.push(`${key}: torn row ${r.succ_cnt}/${r.err_cnt}`);
            lastSeen.set(key, Math.max(before, r.succ_cnt));
          }
          reads += 1;
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();

      let sent = 0;
      for (let step = 1; step <= STEPS; step++) {
        for (let a = 0; a < CONNS; a++) {
          for (let r = 0; r < ROUTES; r++) {
            agents[a]!.report({
              modid: 1 + (r % 3),
              cmdid: 10 + r,
              caller: ipToWire(`10.9.0.${a + 1}`),
              ts: 1_700_000_000 + step,
              results: Array.from({ length: HOSTS }, (_, h) => ({
                ip: ipToWire(`192.168.7.${h + 1}`),
                port: 8000 + h,
                succ: step,
                err: 2 * step,
                overload: step % 2 === 0,
              })),
            });
            sent += HOSTS;
          }
        }
        // Let the reporter take this step in (and write some of it) before the next one.
        if (step % 5 === 0) await waitFor(() => svc.stats.rowsReceived >= sent, 10_000, 'step received');
      }
      await settled(svc, sent);
      running = false;
      await observer;

      expect(violations).toEqual([]);
      expect(reads).toBeGreaterThan(1);
      const rows = await statusRows(store);
      expect(rows).toHaveLength(CONNS * ROUTES * HOSTS);
      for (const r of rows) {
        expect(r).toMatchObject({
          succ_cnt: STEPS,
          err_cnt: 2 * STEPS,
          ts: 1_700_000_000 + STEPS,
          overload: '1',
        });
      }
      const history = await historyRows(store);
      expect(history).toHaveLength(CONNS * ROUTES * HOSTS);
      expect(history.every((h) => h.succ_cnt === STEPS && h.minute === MINUTE0)).toBe(true);
      const lanes = svc.laneStats();
      expect(lanes.reduce((n, l) => n + l.rowsCommitted, 0)).toBe(sent);
      expect(lanes.filter((l) => l.batches > 0)).toHaveLength(3);
    });

    // SQLite has one writer connection (on its thread): there, lanes take turns by design, so this
    // test exists only for the servers (not registered, rather than skipped, on SQLite).
    (b.kind === 'sqlite' ? () => undefined : it)(
      'writers run in parallel: a lane blocked on a row lock does not hold up the others',
      async () => {
        const { store, url } = await freshStore(b);
        const { svc, port } = await startReporter(url, { writers: 3, now: () => T0_MS });
        const a = { modid: 1, cmdid: 1 };
        let other = 2;
        while (svc.writerOf(1, other) === svc.writerOf(a.modid, a.cmdid)) other += 1;
        const bRoute = { modid: 1, cmdid: other };
        const laneA = svc.writerOf(a.modid, a.cmdid);
        const laneB = svc.writerOf(bRoute.modid, bRoute.cmdid);
        const report = (route: { modid: number; cmdid: number }, succ: number): ReportStatusRequest => ({
          ...route,
          caller: 1,
          ts: 1,
          results: [{ ip: 10, port: 80, succ, err: 0, overload: false }],
        });
        const agent = await Agent.connect(port);
        agent.report(report(a, 1));
        await settled(svc, 1);

        // Another connection holds route A's row lock (by full primary key: a record lock, no InnoDB
        // gap lock that would also stop inserts of other routes): lane A's next upsert waits for it.
        const locked = new Latch(1, 'row locked');
        const release = new Latch(1, 'release the lock');
        onTestFinished(() => release.countDown());
        const holder = store.db.transaction().execute(async (trx) => {
          await trx
            .selectFrom('ServerCallStatus')
            .selectAll()
            .where('modid', '=', a.modid)
            .where('cmdid', '=', a.cmdid)
            .where('ip', '=', 10)
            .where('port', '=', 80)
            .where('caller', '=', 1)
            .forUpdate()
            .execute();
          locked.countDown();
          await release.wait(20_000).catch(() => undefined);
        });
        await locked.wait();
        agent.report(report(a, 2));
        agent.report(report(bRoute, 1));
        await waitFor(() => svc.laneStats()[laneB]!.rowsCommitted === 1, 10_000, 'lane B committed');
        expect(svc.laneStats()[laneA]!.rowsCommitted).toBe(1);
        expect(svc.queueDepths()[laneA]).toBe(1);
        release.countDown();
        await holder;
        await svc.drained();
        expect((await statusRows(store)).map((r) => [r.cmdid, r.succ_cnt])).toEqual([
          [1, 2],
          [other, 1],
        ]);
      },
    );

    it('closes only the connection that breaks the protocol; unknown msgids are skipped', async () => {
      const { store, url } = await freshStore(b);
      const { svc, port, httpPort } = await startReporter(url, { now: () => T0_MS });
      const report = (succ: number): ReportStatusRequest => ({
        modid: 5,
        cmdid: 6,
        caller: 1,
        ts: 1,
        results: [{ ip: 2, port: 3, succ, err: 0, overload: false }],
      });
      const good = await Agent.connect(port);
      good.report(report(1));
      await settled(svc, 1);

      const negative = await Agent.connect(port);
      negative.write(header(MsgId.ReportStatusRequest, -1));
      const tooLarge = await Agent.connect(port);
      tooLarge.write(header(MsgId.ReportStatusRequest, 70_000));
      const badBody = await Agent.connect(port);
      // Tag 0xff: field 31 with wire type 7, which does not exist.
      badBody.write(encodeFrame(MsgId.ReportStatusRequest, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff])));
      const unknown = await Agent.connect(port);
      unknown.write(encodeFrame(99, Buffer.from([1, 2, 3])));
      await Promise.all([negative.waitClosed(), tooLarge.waitClosed(), badBody.waitClosed()]);

      unknown.report(report(2));
      await settled(svc, 2);
      good.report(report(3));
      await settled(svc, 3);
      expect(good.closed).toBe(false);
      expect(unknown.closed).toBe(false);
      expect((await statusRows(store)).map((r) => r.succ_cnt)).toEqual([3]);
      const text = await metrics(httpPort);
      expect(metric(text, 'lars_reporter_protocol_errors_total')).toBe(3);
      expect(metric(text, 'lars_reporter_unknown_msgid_total')).toBe(1);
      expect(metric(text, 'lars_reporter_connections')).toBe(2);
    });

    it('samples history once per host per minute (latest wins) and prunes it by retention, on a fake clock', async () => {
      const { store, url } = await freshStore(b);
      let nowMs = T0_MS;
      const { svc, port } = await startReporter(url, { now: () => nowMs, historyRetentionDays: 7 });
      const agent = await Agent.connect(port);
      let sent = 0;
      const at = async (ms: number, succ: number): Promise<void> => {
        nowMs = ms;
        agent.report({
          modid: 9,
          cmdid: 9,
          caller: 7,
          ts: 0,
          results: [{ ip: 1, port: 2, succ, err: succ, overload: false }],
        });
        await settled(svc, ++sent);
      };
      await at(T0_MS + 5_000, 1);
      await at(T0_MS + 30_000, 2); // same minute: replaces the sample
      await at(T0_MS + 65_000, 3); // next minute: a new sample
      await at(T0_MS + 2 * 3600_000, 4); // two hours later
      await at(T0_MS + 5 * 3600_000 + 59_000, 5); // five hours later, end of that minute
      const minutes = async () => (await historyRows(store)).map((h) => [h.minute - MINUTE0, h.succ_cnt]);
      expect(await minutes()).toEqual([
        [0, 2],
        [60, 3],
        [7200, 4],
        [18000, 5],
      ]);
      expect((await statusRows(store)).map((r) => [r.succ_cnt, r.ts])).toEqual([[5, MINUTE0 + 18059]]);

      const DAY = 86_400_000;
      // Exactly 7 days after the first sample's minute: nothing is older than the retention yet.
      nowMs = T0_MS + 7 * DAY + 59_000;
      expect(await svc.pruneHistory()).toBe(0);
      // One minute later the first sample is out.
      nowMs = T0_MS + 7 * DAY + 60_000;
      expect(await svc.pruneHistory()).toBe(1);
      expect(await minutes()).toEqual([
        [60, 3],
        [7200, 4],
        [18000, 5],
      ]);
      // Hours of samples at once (pruned an hour of minutes per statement).
      nowMs = T0_MS + 7 * DAY + 5 * 3600_000;
      expect(await svc.pruneHistory()).toBe(2);
      expect(await minutes()).toEqual([[18000, 5]]);
      expect(svc.stats.historyPruned).toBe(3);
      // ServerCallStatus is not history: it keeps the latest row.
      expect(await statusRows(store)).toHaveLength(1);
    });

    it('start() fails on a database without the reporter tables; close() is idempotent and final', async () => {
      const { url } = await freshStore(b, { migrate: false });
      const svc = new ReporterService({
        dbUrl: url,
        host: '127.0.0.1',
        port: 0,
        maxConnections: 10,
        maxOutboundBytes: 1 << 20,
        sqliteWorkerScript,
      });
      onTestFinished(() => svc.destroy());
      await expect(svc.start()).rejects.toMatchObject({ code: 'LARS_ERR_STORE' });

      const { url: url2 } = await freshStore(b);
      const { svc: ok, port } = await startReporter(url2);
      const agent = await Agent.connect(port);
      agent.report({
        modid: 1,
        cmdid: 1,
        caller: 1,
        ts: 1,
        results: [{ ip: 1, port: 1, succ: 1, err: 0, overload: false }],
      });
      await waitFor(() => ok.stats.rowsReceived === 1);
      const closing = ok.close(1_000);
      expect(ok.close()).toBe(closing);
      await closing;
      await agent.waitClosed();
      expect(ok.laneStats()[ok.writerOf(1, 1)]!.rowsCommitted).toBe(1);
      await expect(ok.start()).rejects.toBeInstanceOf(ClosedError);
      await ok.destroy();
    });
  });
});
