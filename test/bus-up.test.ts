import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it, onTestFinished } from 'vitest';
import { BusClient, type BusClientState } from '../src/bus/index.js';
import { ExitCode } from '../src/supervisor/exit-codes.js';
import { waitFor } from './helpers/latch.js';
import { CLI, CLI_BUILT, eventually, startStack } from './supervisor-harness.js';

/** `lars up` runs the bus as a supervised service (issue 13), against the compiled CLI (npm run build). */
const suite = CLI_BUILT ? describe : describe.skip;
const run = promisify(execFile);

suite('lars up runs the bus', () => {
  it('starts it, shows it in lars status, restarts it when killed, and clients reconnect and replay', async () => {
    const stack = await startStack({ supervisor: { dns_workers: 1, agent_workers: 0 } });
    const s = await stack.status();
    const bus = s.services.find((x) => x.name === 'bus')!;
    expect(bus.state).toBe('running');
    const socket = bus.listen[0]!.host;
    expect(bus.listen[0]).toMatchObject({ proto: 'unix', port: 0 });
    expect(socket).toBe(`${stack.dataDir}/bus/bus.sock`);

    const { stdout } = await run(process.execPath, [CLI, 'status', '--data-dir', stack.dataDir]);
    const line = stdout.split('\n').find((l) => l.startsWith('bus '));
    expect(line).toContain(`unix ${socket}`);
    expect(line).toMatch(/running.*ok$/);

    const server = await BusClient.connect({ name: 'app', socket, reconnect: { initialMs: 20, maxMs: 200 } });
    onTestFinished(() => server.destroy());
    server.serve('svc.echo', (req) => req.data);
    await server.flush();
    const caller = await BusClient.connect({ name: 'ui', socket, reconnect: { initialMs: 20, maxMs: 200 } });
    onTestFinished(() => caller.destroy());
    expect((await caller.request('svc.echo', 'one')).string()).toBe('one');

    const states: BusClientState[] = [];
    server.on('state', (st: BusClientState) => states.push(st));
    const [busPid] = await stack.workerPids('bus');
    process.kill(busPid!, 'SIGKILL');
    await eventually(
      async () => {
        const b = (await stack.status()).services.find((x) => x.name === 'bus')!;
        return b.restarts === 1 && b.state === 'running' ? true : undefined;
      },
      15_000,
      'bus restarted',
    );
    await waitFor(() => server.state === 'ready' && caller.state === 'ready', 10_000, 'clients back');
    await server.flush(); // the replayed SERVE is in place
    expect((await caller.request('svc.echo', 'two')).string()).toBe('two');
    expect(states).toEqual(['reconnecting', 'ready']);

    const lame = new Promise<void>((r) => caller.once('lameDuck', () => r()));
    process.kill(stack.pid, 'SIGTERM');
    await lame;
    expect((await stack.exited).code).toBe(ExitCode.STOPPED);
  });
});
