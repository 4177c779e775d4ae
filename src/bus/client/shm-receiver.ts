import { ClosedError, ErrorCode, ProtocolError } from '../../errors.js';
import type { ShmBuffer } from '../../shm/shm-buffer.js';
import { ShmClient, type ShmClientOptions } from '../../shm/shm-client.js';
import { readU32, SHM_HANDLE_BYTES, SHM_MSG_PAYLOAD_BYTES, type DataFields } from '../wire/data-frame.js';

/**
 * The receiving side of shared-memory messages (issue 14): a kind-1 MSG, REQ or REP names a batch
 * that lars shm holds for this process; `take` receives it (RECV) and returns the ShmBuffer, the
 * same memory the sender wrote. Uses the ShmClient the application gave (never closed here) or one
 * connected on first need (closed with the bus client).
 */
export class ShmReceiver {
  private client: ShmClient | undefined;
  private connecting: Promise<ShmClient> | undefined;
  private readonly owned: boolean;
  private closed = false;

  constructor(private readonly option: ShmClient | ShmClientOptions | undefined) {
    if (option instanceof ShmClient) this.client = option;
    this.owned = !(option instanceof ShmClient);
  }

  async take(buf: Uint8Array, f: DataFields): Promise<ShmBuffer> {
    if (f.end - f.payloadStart !== SHM_MSG_PAYLOAD_BYTES)
      throw new ProtocolError(
        ErrorCode.BAD_BODY,
        `a shared-memory message from the bus is ${SHM_MSG_PAYLOAD_BYTES} payload bytes, got ${f.end - f.payloadStart}`,
      );
    const batch = readU32(buf, f.payloadStart + SHM_HANDLE_BYTES);
    const [b] = await (await this.shm()).recv(batch);
    return b!;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (!this.owned) return;
    const c = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    await c?.close();
  }

  private shm(): Promise<ShmClient> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= ShmClient.connect((this.option as ShmClientOptions | undefined) ?? {}).then(
      (c) => {
        this.connecting = undefined;
        if (this.closed) {
          void c.close();
          throw new ClosedError('the bus client is closed');
        }
        this.client = c;
        return c;
      },
      (err: unknown) => {
        this.connecting = undefined;
        throw err;
      },
    );
    return this.connecting;
  }
}
