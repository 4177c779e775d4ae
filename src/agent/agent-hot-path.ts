import type { RemoteInfo } from 'node:dgram';
import type { UdpEndpoint } from '../net/udp-endpoint.js';
import {
  decodeGetHostDatagram,
  decodeReportDatagram,
  encodeGetHostResponseFrame,
  hotMsgId,
  MAX_HOT_RESPONSE_LEN,
  type HotGetHost,
  type HotReport,
} from '../protocol/hot-codec.js';
import { MsgId } from '../protocol/msg-id.js';
import { RetCode } from '../protocol/retcode.js';
import type { AgentCore } from './agent-core.js';

export interface AgentHotPathOptions {
  core: AgentCore;
  /** False when another shard owns the route: the generic path forwards it. */
  owns?: (modid: number, cmdid: number) => boolean;
}

/** Replies carved from one slab: a fresh view per reply (the socket may hold it until sent). */
const SLAB_BYTES = 64 * 1024;

/**
 * The agent's answer to get_host and report datagrams without the generic machinery (issue 17):
 * no protobuf objects, no dispatcher, no result objects, replies written straight into a slab. On
 * a busy host the agent gets short slices of a CPU; the less it does per request, the more requests
 * finish inside one. Anything it does not recognise — another message, an unusual encoding, a
 * report without a host, a route another shard owns — it leaves to the generic path, which gives
 * the same answers (the balancer is the same; weighted routes pick by weight either way).
 */
export class AgentHotPath {
  readonly stats = { getHost: 0, report: 0 };
  private readonly core: AgentCore;
  private readonly owns: ((modid: number, cmdid: number) => boolean) | undefined;
  private readonly getHostReq: HotGetHost = { seq: 0, modid: 0, cmdid: 0 };
  private readonly reportReq: HotReport = { modid: 0, cmdid: 0, ip: 0, port: 0, retcode: 0, timecostMs: 0 };
  private slab = Buffer.allocUnsafe(SLAB_BYTES);
  private slabUsed = 0;

  constructor(options: AgentHotPathOptions) {
    this.core = options.core;
    this.owns = options.owns;
  }

  /** UdpEndpoint's fastPath hook: true when answered here. */
  readonly handle = (datagram: Buffer, rinfo: RemoteInfo, endpoint: UdpEndpoint): boolean => {
    const len = datagram.length;
    const msgid = hotMsgId(datagram, len);
    if (msgid === MsgId.GetHostRequest) return this.getHost(datagram, len, rinfo, endpoint);
    if (msgid === MsgId.ReportRequest) return this.report(datagram, len);
    return false;
  };

  private getHost(datagram: Buffer, len: number, rinfo: RemoteInfo, endpoint: UdpEndpoint): boolean {
    const m = this.getHostReq;
    if (!decodeGetHostDatagram(datagram, len, m)) return false;
    if (this.owns !== undefined && !this.owns(m.modid, m.cmdid)) return false;
    this.stats.getHost++;
    const h = this.core.pick(m.modid, m.cmdid);
    if (this.slabUsed + MAX_HOT_RESPONSE_LEN > SLAB_BYTES) {
      this.slab = Buffer.allocUnsafe(SLAB_BYTES);
      this.slabUsed = 0;
    }
    const out = this.slab.subarray(this.slabUsed);
    const n =
      h === undefined || h === null
        ? encodeGetHostResponseFrame(
            out,
            m.seq,
            m.modid,
            m.cmdid,
            h === undefined ? RetCode.NOEXIST : RetCode.OVERLOAD,
            false,
            0,
            0,
          )
        : encodeGetHostResponseFrame(out, m.seq, m.modid, m.cmdid, RetCode.SUCC, true, h.ip | 0, h.port);
    this.slabUsed += n;
    // Closed between the datagram and now (shutting down): the request simply goes unanswered.
    if (!endpoint.closed) endpoint.replyFrame(rinfo, out, n);
    return true;
  }

  private report(datagram: Buffer, len: number): boolean {
    const m = this.reportReq;
    if (!decodeReportDatagram(datagram, len, m)) return false;
    if (this.owns !== undefined && !this.owns(m.modid, m.cmdid)) return false;
    this.stats.report++;
    this.core.report(m.modid, m.cmdid, m.ip, m.port, m.retcode, m.timecostMs || undefined);
    return true;
  }
}

/** Requests by msgid, the generic path's counts plus the hot path's. */
export function hotPathCounts(
  generic: ReadonlyMap<number, number>,
  hot: AgentHotPath | undefined,
): Map<number, number> {
  const out = new Map(generic);
  if (hot) {
    if (hot.stats.getHost)
      out.set(MsgId.GetHostRequest, (out.get(MsgId.GetHostRequest) ?? 0) + hot.stats.getHost);
    if (hot.stats.report)
      out.set(MsgId.ReportRequest, (out.get(MsgId.ReportRequest) ?? 0) + hot.stats.report);
  }
  return out;
}
