import type { Logger } from '../../log/logger.js';
import { Control, NoticeKind } from '../wire/control.js';
import { BusMsgId } from '../wire/msg-id.js';
import { slowPeerError, type BusConn } from './bus-conn.js';
import type { BusStats } from './bus-stats.js';
import type { Proc } from './proc.js';
import type { BusSettings } from './settings.js';

/**
 * The slow-consumer policy (DESIGN §9, fixing seed defect 8 and NATS's silent loss, P1): a message
 * for a connection whose queue in the bus is over `max_pending_msgs`/`max_pending_bytes` is dropped
 * and counted; the first drop starts an episode; when the queue has drained to half its limits the
 * episode ends with one NOTICE carrying the number dropped (and one warning line); a connection still
 * in its episode after `write_deadline_ms` is cut (LARS_ERR_SLOW_PEER).
 */
export class SlowConsumers {
  private readonly episodes = new Set<BusConn>();

  constructor(
    private readonly settings: BusSettings,
    private readonly stats: BusStats,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  drop(conn: BusConn, proc: Proc): void {
    this.stats.dropped.slow_consumer += 1;
    proc.dropped += 1;
    if (conn.episodeStartMs < 0) {
      conn.episodeStartMs = this.now();
      conn.episodeDropped = 0;
      this.stats.slowConsumerEpisodes += 1;
      this.episodes.add(conn);
    }
    conn.episodeDropped += 1;
  }

  /** Ends the episode of `conn` once its queue has drained to half its limits. */
  maybeEnd(conn: BusConn): void {
    const s = this.settings;
    if (conn.pendingMsgs > s.maxPendingMsgs / 2 || conn.pendingBytes > s.maxPendingBytes / 2) return;
    const dropped = conn.episodeDropped;
    const ms = Math.round(this.now() - conn.episodeStartMs);
    conn.episodeStartMs = -1;
    conn.episodeDropped = 0;
    this.episodes.delete(conn);
    this.log.warn({ proc: conn.proc?.name, conn: conn.id, dropped, ms }, 'slow consumer: messages dropped');
    conn.sendControl(
      BusMsgId.Notice,
      Control.notice.encode({
        kind: NoticeKind.SLOW_CONSUMER,
        dropped,
        message: `${dropped} messages for this connection were dropped in ${ms} ms: its queue in the bus was full`,
      }),
    );
  }

  /** At each sweep: cut connections past the write deadline, end drained episodes. */
  sweep(nowMs: number): void {
    for (const conn of [...this.episodes]) {
      if (nowMs - conn.episodeStartMs >= this.settings.writeDeadlineMs) this.cut(conn);
      else this.maybeEnd(conn);
    }
  }

  forget(conn: BusConn): void {
    this.episodes.delete(conn);
  }

  private cut(conn: BusConn): void {
    this.episodes.delete(conn);
    this.stats.slowConsumerDisconnects += 1;
    const err = slowPeerError(conn, this.settings.writeDeadlineMs);
    this.log.warn({ proc: conn.proc?.name, conn: conn.id, dropped: conn.episodeDropped }, err.message);
    conn.destroy(err);
  }
}
