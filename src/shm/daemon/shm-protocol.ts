import { ErrorCode, ShmError } from '../../errors.js';
import type { DispatchObserver, FrameDispatcher } from '../../net/dispatcher.js';
import type { TcpConnection } from '../../net/tcp-connection.js';
import { MAX_BODY_LEN } from '../../protocol/frame.js';
import type { HelloInfo } from '../reports.js';
import {
  decodeRequest,
  encodeErrorReply,
  encodeHandlesPayload,
  encodeI32Payload,
  encodeJsonReply,
  encodeRecvPayload,
  encodeReply,
  encodeU32ListPayload,
  encodeU32Payload,
  MAX_ALLOC_COUNT,
  requestId,
  type ShmRequest,
} from '../wire-codec.js';
import {
  codeStatus,
  COMMAND_NAMES,
  ReclaimReason,
  SHM_PROTOCOL_VERSION,
  ShmMsg,
  ShmStatus,
} from '../wire-ids.js';
import { holdersReply } from './core-reports.js';
import { cancel, transfer } from './relay.js';
import type { ProofBook } from './peer-proof.js';
import type { ShmPeer } from './peer.js';
import type { ShmCore } from './shm-core.js';

export interface ShmConnState {
  peer: ShmPeer;
}
export type ShmConnection = TcpConnection<ShmConnState>;

export interface ShmProtocolStats {
  requests: Record<string, number>;
  errors: Record<string, number>;
}

/**
 * Turns request frames into core operations and replies (DESIGN §10). Every request gets exactly
 * one reply, in request order (every operation is synchronous on the daemon's one thread), and
 * every failure is a reply with a status; nothing a client sends throws out of here. Only framing
 * violations (caught by the FrameDecoder before this) close a connection.
 */
export class ShmProtocol implements FrameDispatcher<ShmConnection> {
  readonly stats: ShmProtocolStats = { requests: {}, errors: {} };

  constructor(
    private readonly core: ShmCore,
    private readonly proofs: ProofBook,
  ) {}

  dispatch(
    msgid: number,
    body: Uint8Array,
    conn: ShmConnection,
    observer: DispatchObserver<ShmConnection>,
  ): void {
    const name = COMMAND_NAMES[msgid] ?? 'UNKNOWN';
    this.stats.requests[name] = (this.stats.requests[name] ?? 0) + 1;
    // A body too short for a request id still gets its error reply (with id 0).
    const reqid = requestId(body) ?? 0;
    let reply: Buffer;
    try {
      if (body.byteLength < 4)
        throw new ShmError(
          ErrorCode.SHM_INVALID_ARGUMENT,
          `body of ${body.byteLength} bytes has no request id`,
        );
      reply = this.handle(decodeRequest(msgid, body), conn, reqid);
    } catch (err) {
      if (!(err instanceof ShmError)) {
        // A bug in the daemon, not the peer's fault: report it, and still answer the request.
        observer.handlerError(err, msgid, conn);
      }
      const code = err instanceof ShmError ? err.code : ErrorCode.SHM_INVALID_ARGUMENT;
      this.stats.errors[code] = (this.stats.errors[code] ?? 0) + 1;
      reply = encodeErrorReply(reqid, codeStatus(code), (err as Error).message);
    }
    if (reply.length > MAX_BODY_LEN) {
      // Never a frame too large to send (that would throw out of the socket's data handler).
      reply = encodeErrorReply(
        reqid,
        ShmStatus.INVALID_ARGUMENT,
        `reply of ${reply.length} bytes does not fit one frame`,
      );
    }
    if (!conn.closed) conn.sendRaw(ShmMsg.REPLY, reply);
  }

  private handle(req: ShmRequest, conn: ShmConnection, reqid: number): Buffer {
    const core = this.core;
    const peer = conn.state.peer;
    switch (req.cmd) {
      case ShmMsg.HELLO:
        return encodeJsonReply(reqid, this.hello(req.version, req.pid, conn));
      case ShmMsg.PROVE: {
        if (!peer.verified) {
          const r = this.proofs.check(conn.id);
          if ('error' in r) throw new ShmError(ErrorCode.SHM_NOT_VERIFIED, r.error);
          core.verify(peer, r.pid);
        }
        return encodeReply(reqid, ShmStatus.OK, encodeI32Payload(peer.pid));
      }
      case ShmMsg.ALLOC:
        return encodeReply(
          reqid,
          ShmStatus.OK,
          encodeHandlesPayload(core.alloc(peer, req.size, req.align, req.count)),
        );
      case ShmMsg.FREE:
        core.free(peer, req.handles);
        return encodeReply(reqid, ShmStatus.OK);
      case ShmMsg.ADDREF:
        core.addref(peer, req.handles);
        return encodeReply(reqid, ShmStatus.OK);
      case ShmMsg.SEND:
        return encodeReply(
          reqid,
          ShmStatus.OK,
          encodeU32Payload(core.send(peer, req.to, req.ttlMs, req.handles)),
        );
      case ShmMsg.RECV: {
        const r = core.recv(peer, req.batchId);
        return encodeReply(reqid, ShmStatus.OK, encodeRecvPayload(r.fromPid, r.handles));
      }
      case ShmMsg.TRANSFER:
        return encodeReply(
          reqid,
          ShmStatus.OK,
          encodeU32ListPayload(transfer(core, peer, req.fromPid, req.handle, req.to, req.keep, req.ttlMs)),
        );
      case ShmMsg.CANCEL:
        return encodeReply(reqid, ShmStatus.OK, encodeU32Payload(cancel(core, peer, req.tag, req.batchIds)));
      case ShmMsg.STAT:
        return encodeJsonReply(reqid, core.stat(peer));
      case ShmMsg.HOLDERS:
        this.requireVerified(peer);
        return holdersReply(reqid, core.holders());
      case ShmMsg.RECLAIM: {
        this.requireVerified(peer);
        const reason =
          req.reason === ReclaimReason.KILLME
            ? 'killme'
            : req.reason === ReclaimReason.MANUAL
              ? 'manual'
              : undefined;
        if (!reason)
          throw new ShmError(
            ErrorCode.SHM_INVALID_ARGUMENT,
            `reclaim reason ${req.reason} must be 1 (killme) or 2 (manual)`,
          );
        return encodeJsonReply(reqid, core.reclaim(req.pid, reason));
      }
    }
  }

  private hello(version: number, declaredPid: number, conn: ShmConnection): HelloInfo {
    if (version !== SHM_PROTOCOL_VERSION) {
      throw new ShmError(
        ErrorCode.SHM_INVALID_ARGUMENT,
        `protocol version ${version} is not supported (daemon speaks ${SHM_PROTOCOL_VERSION})`,
      );
    }
    const peer = conn.state.peer;
    const o = this.core.options;
    let proofPath: string | undefined;
    if (!peer.verified) {
      if (!Number.isInteger(declaredPid) || declaredPid <= 0) {
        throw new ShmError(
          ErrorCode.SHM_INVALID_ARGUMENT,
          `HELLO needs the caller's pid for the identity proof, got ${declaredPid}`,
        );
      }
      proofPath = this.proofs.issue(conn.id, declaredPid);
    }
    return {
      version: SHM_PROTOCOL_VERSION,
      daemonPid: process.pid,
      mode: o.mode,
      pool: {
        name: o.poolName,
        size: o.layout.size,
        generation: o.generation,
        classes: o.layout.classes.map((c) => ({ ...c })),
      },
      limits: {
        quotaBytes: o.quotaBytes,
        maxBatchesPerProc: o.maxBatchesPerProc,
        defaultTtlMs: o.defaultTtlMs,
        maxTtlMs: o.maxTtlMs,
        maxAllocCount: MAX_ALLOC_COUNT,
      },
      verified: peer.verified,
      pid: peer.pid,
      ...(proofPath ? { proofPath } : {}),
    };
  }

  private requireVerified(peer: ShmPeer): void {
    if (!peer.verified)
      throw new ShmError(ErrorCode.SHM_NOT_VERIFIED, 'send HELLO (and PROVE in file mode) first');
  }
}
