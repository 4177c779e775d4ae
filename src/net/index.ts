// Public surface of the networking core ("reactor"). Siblings import from here, not from the files.
export type { RemoteAddress, Transport } from './transport.js';
export {
  Dispatcher,
  type DispatchObserver,
  type FrameDispatcher,
  type MessageHandler,
  type RawHandler,
} from './dispatcher.js';
export { Backoff, type BackoffOptions } from './backoff.js';
export { DropOldestQueue } from './drop-oldest-queue.js';
export { TcpConnection } from './tcp-connection.js';
export {
  TcpServer,
  DEFAULT_CLOSE_GRACE_MS,
  DEFAULT_LINGER_MS,
  DEFAULT_HEADER_TIMEOUT_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CONN_PER_IP,
  type TcpServerOptions,
  type TcpServerStats,
} from './tcp-server.js';
export {
  TcpClient,
  DEFAULT_BACKOFF,
  DEFAULT_MAX_QUEUED_FRAMES,
  DEFAULT_CLIENT_MAX_OUTBOUND_BYTES,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type TcpClientOptions,
  type TcpClientStats,
  type TcpClientState,
} from './tcp-client.js';
export {
  UdpEndpoint,
  UdpPeer,
  DEFAULT_UDP_RECV_BUFFER_BYTES,
  type UdpEndpointOptions,
  type UdpEndpointStats,
} from './udp-endpoint.js';
export {
  UdpClient,
  seqOrRouteKey,
  DEFAULT_UDP_REQUEST_TIMEOUT_MS,
  DEFAULT_UDP_MAX_IN_FLIGHT,
  type UdpClientOptions,
  type UdpClientStats,
  type UdpRequestOptions,
  type ReplyKey,
  type ReplyKeyFn,
} from './udp-client.js';
export { MemoryTransport, memoryPair, type MemoryTransportStats } from './memory-transport.js';
export { WorkerPool, type WorkerPoolOptions, type WorkerPoolStats } from './worker-pool.js';
export { serveTasks, type TaskFn } from './worker-serve.js';
