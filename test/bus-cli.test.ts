import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, onTestFinished } from 'vitest';
import { BusClient, type BusMsg } from '../src/bus/index.js';
import { client, startBus } from './helpers/bus.js';
import { Latch, waitFor } from './helpers/latch.js';
import { CLI, CLI_BUILT } from './supervisor-harness.js';

/** `lars bus …` of the compiled CLI (npm run build) against a bus started by the test. */
const suite = CLI_BUILT ? describe : describe.skip;
const exec = promisify(execFile);

async function lars(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [CLI, ...args], { env: cleanEnv() });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('LARS_')) delete env[k];
  return env;
}

const noStack = (s: string) => expect(s).not.toMatch(/\n\s+at /);

suite('lars bus CLI', () => {
  it('procs and topics list procs (with their kernel pid), served topics and subscriptions', async () => {
    const bus = await startBus();
    const app = await client(bus, 'app', { publicInfo: 'the app' });
    app.serve('svc.one', () => 'x');
    app.subscribe('events', { queue: 'q' });
    await app.flush();
    const procs = await lars('bus', 'procs', '--socket', bus.socket, '--json');
    expect(procs.code).toBe(0);
    const list = JSON.parse(procs.stdout) as { name: string; pid: number; state: string }[];
    expect(list.map((p) => [p.name, p.pid, p.state])).toEqual([['app', process.pid, 'normal']]);
    const table = await lars('bus', '--socket', bus.socket, 'procs');
    expect(table.stdout).toMatch(/^NAME\s+STATE\s+PID/);
    expect(table.stdout).toMatch(new RegExp(`app\\s+normal\\s+${process.pid}`));
    const topics = JSON.parse((await lars('bus', 'topics', '--socket', bus.socket, '--json')).stdout);
    expect(topics.topics).toEqual([{ topic: 'svc.one', proc: 'app', online: true, queue: '' }]);
    expect(topics.subscriptions.map((s: { subject: string; proc: string }) => [s.subject, s.proc])).toEqual([
      ['events', 'app'],
    ]);
  });

  it('pub publishes with headers; sub prints messages and exits after --count', async () => {
    const bus = await startBus();
    const app = await client(bus, 'app');
    const got = new Latch(1, 'message from the CLI');
    let msg: BusMsg | undefined;
    app.subscribe('news', { callback: (m) => ((msg = m), got.countDown()) });
    await app.flush();
    const pub = await lars(
      'bus',
      'pub',
      'news.today',
      'hello bus',
      '--header',
      'lang=en',
      '--socket',
      bus.socket,
    );
    expect(pub.code).toBe(0);
    await got.wait();
    expect([msg!.subject, msg!.string(), msg!.headers.lang, msg!.from.startsWith('lars-pub-')]).toEqual([
      'news.today',
      'hello bus',
      'en',
      true,
    ]);

    const sub = spawn(process.execPath, [CLI, 'bus', 'sub', 'news', '--count', '2', '--socket', bus.socket], {
      env: cleanEnv(),
    });
    onTestFinished(() => void sub.kill('SIGKILL'));
    let out = '';
    sub.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((r) => sub.once('exit', (code) => r(code)));
    await waitFor(() => bus.svc.engine.sublist.count === 2, 10_000, 'CLI subscribed');
    app.publish('news.a', 'one');
    app.publish('news', 'two');
    expect(await exited).toBe(0);
    expect(out.trim().split('\n')).toEqual(['[news.a] app: one', '[news] app: two']);
  });

  it('req prints the reply; no responders and timeout exit 1 with the code and no stack', async () => {
    const bus = await startBus();
    const app = await client(bus, 'app');
    app.serve('svc.upper', (r) => r.string().toUpperCase());
    app.serve('svc.silent', () => new Promise(() => {}));
    await app.flush();
    const ok = await lars('bus', 'req', 'svc.upper', 'shout', '--socket', bus.socket);
    expect([ok.code, ok.stdout]).toEqual([0, 'SHOUT\n']);
    const none = await lars('bus', 'req', 'svc.nobody', 'x', '--socket', bus.socket);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^lars: LARS_ERR_BUS_NO_RESPONDERS: no responders for "svc.nobody"/);
    noStack(none.stderr);
    const slow = await lars('bus', 'req', 'svc.silent', 'x', '--timeout', '200', '--socket', bus.socket);
    expect(slow.code).toBe(1);
    expect(slow.stderr).toMatch(/^lars: LARS_ERR_TIMEOUT: request to "svc.silent" timed out after 200 ms/);
    noStack(slow.stderr);
    const bad = await lars('bus', 'pub', 'a.*', 'x', '--socket', bus.socket);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^lars: LARS_ERR_INVALID_ARGUMENT: subject "a\.\*": wildcards/);
  });

  it('a command against no bus fails with a clear message', async () => {
    const dir = mkdtempSync('/tmp/lars-');
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const r = await lars('bus', 'procs', '--socket', join(dir, 'none.sock'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^lars: LARS_ERR_TIMEOUT: bus at .*none\.sock not reachable within 2000 ms: connect ENOENT/,
    );
    noStack(r.stderr);
  });

  it('lars bus runs the daemon until SIGTERM; a bad [bus] setting is refused by name', async () => {
    const dir = mkdtempSync('/tmp/lars-');
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const socket = join(dir, 'b.sock');
    const daemon = spawn(process.execPath, [CLI, 'bus', '--socket', socket, '--http-port', '0'], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onTestFinished(() => void daemon.kill('SIGKILL'));
    const exited = new Promise<number | null>((r) => daemon.once('exit', (code) => r(code)));
    const c = await BusClient.connect({ name: 'probe', socket, reconnect: false });
    onTestFinished(() => c.destroy());
    expect((await c.queryProc('probe'))?.state).toBe('normal');
    daemon.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(existsSync(socket)).toBe(false);
    await waitFor(() => c.state === 'closed', 5_000, 'client closed');

    const ini = join(dir, 'bad.ini');
    writeFileSync(ini, '[bus]\noffline_ms = 1000\nkill_ms = 500\n');
    const bad = await lars('bus', '--config', ini, '--socket', socket);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /^lars: LARS_ERR_CONFIG: \[bus\] kill_ms \(500\) must be greater than offline_ms \(1000\)/,
    );
  });
});
