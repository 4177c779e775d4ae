import { ClosedError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import { ShmClient, type ShmHandle, type TransferTarget } from '../../shm/index.js';

/** How long a hand-off waits for lars shm to be reachable before the message is dropped. */
const SHM_CONNECT_WAIT_MS = 500;

/**
 * The bus's connection to `lars shm` (issue 14), opened on the first shared-memory payload and
 * kept (it redials by itself). Through it the bus moves references between the processes of its
 * procs (TRANSFER, by their kernel pids), ends batches meant for a connection that went away
 * (CANCEL by tag = the connection id) and reclaims a hung proc's holdings at killme.
 */
export class ShmRelay {
  private client: ShmClient | undefined;
  private connecting: Promise<ShmClient> | undefined;
  private closed = false;
  /** Hand-offs done (TRANSFERs answered). */
  transfers = 0;
  /** Hand-offs lars shm refused or could not be asked. */
  failures = 0;

  constructor(
    readonly socketPath: string,
    private readonly log: Logger,
  ) {}

  get connected(): boolean {
    return this.client?.state === 'ready';
  }

  /** Moves (or with `keep` copies) `fromPid`'s reference of `handle` to each target; batch ids in order. */
  async transfer(
    fromPid: number,
    handle: ShmHandle,
    to: readonly TransferTarget[],
    keep: boolean,
  ): Promise<number[]> {
    try {
      const ids = await (await this.shm()).transfer(fromPid, handle, to, { keep });
      this.transfers += 1;
      return ids;
    } catch (err) {
      this.failures += 1;
      throw err;
    }
  }

  /** Ends the unreceived batches made for connection `tag` (it closed); failures only logged. */
  cancelTag(tag: number): void {
    if (!this.client) return;
    this.client
      .cancel({ tag })
      .catch((err: Error) => this.log.debug({ tag, err: err.message }, 'shm cancel failed'));
  }

  cancelBatches(batchIds: number[]): void {
    if (!this.client || batchIds.length === 0) return;
    this.client
      .cancel({ batchIds })
      .catch((err: Error) => this.log.debug({ batchIds, err: err.message }, 'shm cancel failed'));
  }

  /** A proc declared killme while still connected (hung): lars shm releases what its process holds. */
  reclaim(pid: number, proc: string): void {
    this.shm()
      .then((c) => c.reclaim(pid, { reason: 'killme' }))
      .then((r) => this.log.info({ proc, ...r }, 'shm holdings of a killme proc reclaimed'))
      .catch((err: Error & { code?: string }) => {
        // No lars shm on this host (it does not use shared memory): nothing to reclaim, no warning.
        const level = err.code === 'LARS_ERR_NOT_CONNECTED' ? 'debug' : 'warn';
        this.log[level]({ proc, pid, err: err.message }, 'shm reclaim of a killme proc failed');
      });
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    await c?.close();
  }

  private shm(): Promise<ShmClient> {
    if (this.client) return Promise.resolve(this.client);
    if (this.closed) return Promise.reject(new ClosedError('the bus is shutting down'));
    this.connecting ??= ShmClient.connect({
      socket: this.socketPath,
      connectWaitMs: SHM_CONNECT_WAIT_MS,
    }).then(
      (c) => {
        this.client = c;
        this.connecting = undefined;
        if (this.closed) void c.close();
        this.log.info({ socket: this.socketPath, mode: c.mode }, 'connected to lars shm');
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
