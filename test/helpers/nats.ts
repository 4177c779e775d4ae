import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import { onTestFinished } from 'vitest';
import { waitForAsync } from './latch.js';
import { unusedPort } from './ports.js';

/** The NATS server of this machine (DESIGN: it runs on every development machine). */
export const NATS_URL = process.env.LARS_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

/** A subject prefix no other test (or helper) uses: tests share the one server. */
export function randomPrefix(): string {
  return `t${randomBytes(5).toString('hex')}`;
}

/**
 * Whether the shared NATS server answers. Under CI=true it must: an unreachable server fails the
 * test instead of skipping it (issue 14).
 */
export async function natsReachable(): Promise<boolean> {
  try {
    const nc = await connect({ servers: NATS_URL, timeout: 2_000, reconnect: false });
    await nc.close();
    return true;
  } catch (err) {
    if (process.env.CI === 'true')
      throw new Error(`NATS at ${NATS_URL} is not reachable: ${(err as Error).message}`);
    return false;
  }
}

export async function natsClient(url = NATS_URL): Promise<NatsConnection> {
  const nc = await connect({ servers: url, timeout: 5_000 });
  onTestFinished(() => nc.close());
  return nc;
}

/** A private nats-server (the same binary as the shared one) that a test may stop and restart. */
export class PrivateNats {
  private proc: ChildProcess | undefined;
  private constructor(readonly port: number) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<PrivateNats> {
    const n = new PrivateNats(await unusedPort());
    onTestFinished(() => n.stop());
    await n.restart();
    return n;
  }

  async restart(): Promise<void> {
    const proc = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(this.port)], { stdio: 'ignore' });
    this.proc = proc;
    await waitForAsync(
      async () => {
        try {
          const nc = await connect({ servers: this.url, timeout: 1_000, reconnect: false });
          await nc.close();
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      `nats-server on port ${this.port}`,
    );
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  }
}
