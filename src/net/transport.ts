import type { KnownMsgId, MessageMap } from '../protocol/index.js';

/**
 * Where a message came from. For TCP this is the connected peer; for UDP the datagram's source.
 * `family` is 'IPv4' or 'IPv6' as Node reports it.
 */
export interface RemoteAddress {
  readonly address: string;
  readonly port: number;
  readonly family: string;
}

/**
 * The one interface protocol code is handed (STYLE §2): the dispatcher passes a Transport-shaped
 * context to every handler, so the agent, dns and reporter protocol logic is written once and runs
 * over TCP connections (TcpConnection), TCP clients (TcpClient), UDP endpoints (UdpPeer) and the
 * in-memory pair used in tests (memory-transport.ts).
 *
 * Contract:
 * - `send`/`sendRaw` queue one frame to the peer and never block. They throw ClosedError when
 *   `closed` is already true (a caller that fans out checks `closed` first); a frame refused by an
 *   outbound limit is handled by the transport's own stated policy, never by throwing.
 * - `close(reason)` means "I am done with this peer": frames already queued are still delivered
 *   where the transport can (TCP flushes, then ends). Idempotent.
 * - `id` is stable and unique among transports of one process; `remote` never changes.
 */
export interface Transport {
  readonly id: number;
  readonly remote: RemoteAddress;
  readonly closed: boolean;
  send<K extends KnownMsgId>(msgid: K, message: MessageMap[K]): void;
  sendRaw(msgid: number, body: Uint8Array): void;
  close(reason?: Error): void;
}

let lastTransportId = 0;

/** Process-wide ids for transports: distinct across servers, clients and endpoints. */
export function nextTransportId(): number {
  lastTransportId += 1;
  return lastTransportId;
}
