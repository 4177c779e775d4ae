import { ErrorCode, type ShmErrorCode } from '../errors.js';

/**
 * Message ids of the shm protocol (DESIGN §10). Frames are Lars frames (DESIGN §2: i32 msgid, i32
 * msglen, body of at most 65527 bytes) over a Unix stream socket; requests carry a u32 request id,
 * replies echo it. Replies come strictly in request order on each connection.
 */
export const ShmMsg = {
  HELLO: 0x4301,
  PROVE: 0x4302,
  ALLOC: 0x4303,
  FREE: 0x4304,
  SEND: 0x4305,
  RECV: 0x4306,
  ADDREF: 0x4307,
  STAT: 0x4308,
  HOLDERS: 0x4309,
  RECLAIM: 0x430a,
  /** A relay (the bus) moves one reference held by another process into batches for addressees. */
  TRANSFER: 0x430b,
  /** The relay ends batches it made that are not received yet (by tag, or by id). */
  CANCEL: 0x430c,
  /** daemon -> client, unsolicited: a batch this connection sent was released unreceived. */
  NOTICE: 0x43fe,
  /** daemon -> client: the reply to one request. */
  REPLY: 0x43ff,
} as const;
export type ShmMsgId = (typeof ShmMsg)[keyof typeof ShmMsg];

export const COMMAND_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(ShmMsg).map(([k, v]) => [v, k]),
);

/** Reply status on the wire; 0 is success, every other value maps to one LARS_ERR_SHM_* code. */
export const ShmStatus = {
  OK: 0,
  NO_MEMORY: 1,
  QUOTA: 2,
  NOT_HELD: 3,
  STALE: 4,
  UNKNOWN_BATCH: 5,
  NOT_ADDRESSEE: 6,
  EXPIRED: 7,
  INVALID_ARGUMENT: 8,
  UNKNOWN_COMMAND: 9,
  NOT_VERIFIED: 10,
} as const;
export type ShmStatus = (typeof ShmStatus)[keyof typeof ShmStatus];

const STATUS_TO_CODE: Readonly<Record<number, ShmErrorCode>> = {
  [ShmStatus.NO_MEMORY]: ErrorCode.SHM_NO_MEMORY,
  [ShmStatus.QUOTA]: ErrorCode.SHM_QUOTA,
  [ShmStatus.NOT_HELD]: ErrorCode.SHM_NOT_HELD,
  [ShmStatus.STALE]: ErrorCode.SHM_STALE,
  [ShmStatus.UNKNOWN_BATCH]: ErrorCode.SHM_UNKNOWN_BATCH,
  [ShmStatus.NOT_ADDRESSEE]: ErrorCode.SHM_NOT_ADDRESSEE,
  [ShmStatus.EXPIRED]: ErrorCode.SHM_EXPIRED,
  [ShmStatus.INVALID_ARGUMENT]: ErrorCode.SHM_INVALID_ARGUMENT,
  [ShmStatus.UNKNOWN_COMMAND]: ErrorCode.SHM_UNKNOWN_COMMAND,
  [ShmStatus.NOT_VERIFIED]: ErrorCode.SHM_NOT_VERIFIED,
};

const CODE_TO_STATUS: Readonly<Record<string, ShmStatus>> = Object.fromEntries(
  Object.entries(STATUS_TO_CODE).map(([s, c]) => [c, Number(s) as ShmStatus]),
);

/** The error code of a non-zero status; an unknown status (newer daemon) reads as INVALID_ARGUMENT. */
export function statusCode(status: number): ShmErrorCode {
  return STATUS_TO_CODE[status] ?? ErrorCode.SHM_INVALID_ARGUMENT;
}

/** The wire status of an error code (SHM_POOL is never sent: INVALID_ARGUMENT). */
export function codeStatus(code: string): ShmStatus {
  return CODE_TO_STATUS[code] ?? ShmStatus.INVALID_ARGUMENT;
}

/** Why a batch was released without being received (NOTICE `reason`, recv's EXPIRED message). */
export type BatchEndReason = 'ttl' | 'addressee-gone' | 'addressee-reclaimed' | 'cancelled';

/** Why blocks were reclaimed (metric label, RECLAIM `reason`). */
export const ReclaimReason = { KILLME: 1, MANUAL: 2 } as const;
export type ReclaimReasonName = 'disconnect' | 'killme' | 'manual' | 'expired';

/** Protocol version this build speaks (HELLO). */
export const SHM_PROTOCOL_VERSION = 1;
