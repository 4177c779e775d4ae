import {
  BusError,
  ClosedError,
  ConnectionError,
  ErrorCode,
  InvalidArgumentError,
  LarsError,
  ProtocolError,
} from '../../errors.js';
import type { Err } from '../wire/control.js';
import { ReplyStatus } from '../wire/data-frame.js';
import type { BusMsg } from './bus-msg.js';

/** Header carrying a failed handler's error code in a HANDLER_ERROR reply. */
export const ERROR_CODE_HEADER = 'lars-error-code';

/** The typed error an ERR frame stands for (its code is a LARS_ERR_* string). */
export function errFrameError(m: Err): LarsError {
  const known = Object.values(ErrorCode).includes(m.code as ErrorCode);
  const code = known ? (m.code as ErrorCode) : ErrorCode.INVALID_ARGUMENT;
  switch (code) {
    case ErrorCode.BUS_NAME_IN_USE:
    case ErrorCode.BUS_NOT_REGISTERED:
    case ErrorCode.BUS_LIMIT:
    case ErrorCode.BUS_NO_RESPONDERS:
    case ErrorCode.BUS_OVERLOADED:
    case ErrorCode.BUS_HANDLER:
      return new BusError(code, m.message, m.subject);
    case ErrorCode.MAX_CONNECTIONS:
    case ErrorCode.SLOW_PEER:
      return new ConnectionError(code, m.message);
    case ErrorCode.CLOSED:
      return new ClosedError(m.message);
    default:
      return new LarsError(code, m.message);
  }
}

/** The error a non-OK reply stands for; it names the topic (P2). */
export function replyError(status: number, topic: string, msg: BusMsg): LarsError {
  const detail = msg.string();
  const more = detail ? `: ${detail}` : '';
  switch (status) {
    case ReplyStatus.NO_RESPONDERS:
      return new BusError(ErrorCode.BUS_NO_RESPONDERS, `no responders for "${topic}"${more}`, topic);
    case ReplyStatus.OVERLOADED:
      return new BusError(ErrorCode.BUS_OVERLOADED, `every server of "${topic}" is busy${more}`, topic);
    case ReplyStatus.CLOSED:
      return new ClosedError(`request to "${topic}" failed: ${detail || 'the responder closed'}`);
    case ReplyStatus.HANDLER_ERROR:
      return new BusError(
        ErrorCode.BUS_HANDLER,
        `the responder of "${topic}" failed: ${msg.headers[ERROR_CODE_HEADER] ?? 'Error'}: ${detail}`,
        topic,
      );
    case ReplyStatus.TOO_LARGE:
      return new ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, detail);
    case ReplyStatus.NOT_REGISTERED:
      return new BusError(ErrorCode.BUS_NOT_REGISTERED, detail, topic);
    case ReplyStatus.SHM_FAILED:
      return shmFailure(detail, `shared-memory payload of "${topic}" not handed over: `);
    default:
      return new InvalidArgumentError(`request to "${topic}" refused: ${detail}`);
  }
}

/** "CODE: message" (how the bus and responders report a failed shared-memory hand-off) as a typed error. */
export function shmFailure(detail: string, prefix: string): LarsError {
  const m = /^(LARS_ERR_[A-Z_]+): /.exec(detail);
  const known = m !== null && Object.values(ErrorCode).includes(m[1] as ErrorCode);
  return new LarsError(known ? (m[1] as ErrorCode) : ErrorCode.INVALID_ARGUMENT, prefix + detail);
}
