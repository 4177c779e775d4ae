import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { decodeMessage, encodeFrame, encodeMessage, MsgId, parseDatagram } from '../src/protocol/index.js';
import { explainListenError } from '../src/service/listen-error.js';
import { unusedPort } from './helpers/ports.js';
import { CLI, CLI_BUILT } from './supervisor-harness.js';
import { stretch } from './helpers/latch.js';

/**
 * Issue 16: every CLI failure is one line, `lars: LARS_ERR_…: message` with a next step, never a
 * stack. A port in use names the address, the flag/key and the process holding it.
 */
const suite = CLI_BUILT ? describe : describe.skip;
const dir = mkdtempSync(join(tmpdir(), 'lars-cli-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('LARS_')) delete env[k];
  return env;
}

/** Runs the compiled CLI to its exit; the deadline only bounds a hang. */
function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = cleanEnv(),
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`lars ${args.join(' ')} did not exit:\n${out}\n${err}`));
    }, stretch(30_000));
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

async function tcpBlocker(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as { port: number }).port;
}

async function udpBlocker(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  onTestFinished(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return socket.address().port;
}

function expectOneLine(err: string, code: string, mustContain: string[]): void {
  const lines = err.trim().split('\n');
  expect(lines, err).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^lars: ${code}: `));
  for (const s of mustContain) expect(lines[0]).toContain(s);
  expect(err).not.toMatch(/EADDRINUSE|\n\s+at /);
}

suite('CLI failures are one typed line (compiled CLI)', () => {
  const db = () => `sqlite:${join(dir, 'lars.db')}`;
  const holder = `by pid ${process.pid}`;

  it('lars web: port in use', async () => {
    const port = await tcpBlocker();
    const r = await runCli(['web', '--db', db(), '--port', String(port)]);
    expect(r.code).toBe(1);
    expectOneLine(r.err, 'LARS_ERR_ADDRESS_IN_USE', [
      `the console cannot listen on tcp 127.0.0.1:${port}`,
      holder,
      '--port or [web] port',
    ]);
  });

  it('lars dns: port in use (one process, and with --workers: once, before forking)', async () => {
    const port = await tcpBlocker();
    for (const extra of [[], ['--workers', '2']]) {
      const r = await runCli(['dns', '--db', db(), '--port', String(port), ...extra]);
      expect(r.code).toBe(1);
      expectOneLine(r.err, 'LARS_ERR_ADDRESS_IN_USE', [
        `dns cannot listen on tcp 127.0.0.1:${port}`,
        holder,
        '--port or [reactor]/[dnsserver] port',
      ]);
    }
  });

  it('lars reporter: port in use', async () => {
    const port = await tcpBlocker();
    const r = await runCli(['reporter', '--db', db(), '--port', String(port)]);
    expect(r.code).toBe(1);
    expectOneLine(r.err, 'LARS_ERR_ADDRESS_IN_USE', [
      `the reporter cannot listen on tcp 127.0.0.1:${port}`,
      holder,
      '--port or [reactor]/[reporter] port',
    ]);
  });

  it('lars agent: UDP port in use', async () => {
    const port = await udpBlocker();
    const r = await runCli([
      'agent',
      '--no-reporter',
      '--ports',
      String(port),
      '--data-dir',
      join(dir, 'agent'),
    ]);
    expect(r.code).toBe(1);
    expectOneLine(r.err, 'LARS_ERR_ADDRESS_IN_USE', [
      `the agent UDP API cannot listen on udp 127.0.0.1:${port}`,
      holder,
      '--ports or [agent] ports',
    ]);
  });
});

/** A UDP "agent" that knows no route: NOEXIST to every GetHost, no host to every GetRoute. */
async function agentWithoutRoutes(): Promise<number> {
  const socket = createSocket('udp4');
  socket.on('message', (msg, from) => {
    const f = parseDatagram(msg);
    let reply: Buffer | undefined;
    if (f.msgid === MsgId.GetHostRequest) {
      const q = decodeMessage(MsgId.GetHostRequest, f.body);
      const body = encodeMessage(MsgId.GetHostResponse, {
        seq: q.seq,
        modid: q.modid,
        cmdid: q.cmdid,
        retcode: 3,
      });
      reply = encodeFrame(MsgId.GetHostResponse, body);
    } else if (f.msgid === MsgId.ApiGetRouteRequest) {
      const q = decodeMessage(MsgId.ApiGetRouteRequest, f.body);
      const body = encodeMessage(MsgId.ApiGetRouteResponse, { modid: q.modid, cmdid: q.cmdid, host: [] });
      reply = encodeFrame(MsgId.ApiGetRouteResponse, body);
    }
    if (reply) socket.send(reply, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  onTestFinished(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return socket.address().port;
}

suite('lars test gethost/getroute: exit statuses (compiled CLI)', () => {
  it('no agent: both report LARS_ERR_NOT_CONNECTED, exit 1', async () => {
    const port = await unusedPort();
    for (const cmd of ['gethost', 'getroute']) {
      const r = await runCli(['test', cmd, '1', '1', '--ports', String(port)]);
      expect({ cmd, code: r.code }).toEqual({ cmd, code: 1 });
      expectOneLine(r.err, 'LARS_ERR_NOT_CONNECTED', [`127.0.0.1:${port}`]);
      expect(r.out).not.toContain('NOEXIST');
    }
  });

  it('an agent without the route: "no host" / "route unknown", exit 2', async () => {
    const port = await agentWithoutRoutes();
    const host = await runCli(['test', 'gethost', '7', '9', '--ports', String(port), '--once']);
    expect(host).toMatchObject({ code: 2, err: '' });
    expect(host.out).toContain('no host: retcode 3 NOEXIST (modid 7 cmdid 9)');
    const route = await runCli(['test', 'getroute', '7', '9', '--ports', String(port)]);
    expect(route).toMatchObject({ code: 2, err: '' });
    expect(route.out).toContain('route unknown: retcode 3 NOEXIST (modid 7 cmdid 9)');
  });

  it('negative or too large ids: LARS_ERR_INVALID_ARGUMENT naming the field', async () => {
    for (const [args, field] of [
      [['test', 'gethost', '-1', '1'], 'modid "-1"'],
      [['test', 'getroute', '1', '2147483648'], 'cmdid "2147483648"'],
      [['test', 'report', '1', '-7', '10.0.0.1', '80', '0'], 'cmdid "-7"'],
      [['route', 'add', '-1', '1', '10.0.0.1', '80', '--db', 'sqlite::memory:'], 'modid "-1"'],
    ] as const) {
      const r = await runCli([...args]);
      expect(r.code).toBe(1);
      expectOneLine(r.err, 'LARS_ERR_INVALID_ARGUMENT', [
        `invalid ${field}: expected an integer from 0 to 2147483647`,
      ]);
    }
  });
});

describe('explainListenError', () => {
  const web = { what: 'the console', proto: 'tcp' as const, host: '0.0.0.0', port: 80, setting: '--port' };

  it('names the setting for a privileged port and an address not of this host', () => {
    const eacces = Object.assign(new Error('listen EACCES'), { code: 'EACCES', syscall: 'listen', port: 80 });
    expect(explainListenError(eacces, [web])?.message).toMatch(
      /tcp 0\.0\.0\.0:80: permission denied.*--port/,
    );
    const notHere = Object.assign(new Error('x'), { code: 'EADDRNOTAVAIL', syscall: 'bind', port: 80 });
    expect(explainListenError(notHere, [web])?.code).toBe('LARS_ERR_CONFIG');
    expect(explainListenError(notHere, [{ ...web, hostSetting: '--host' }])?.message).toMatch(
      /not one of this host\. Change --host\.$/,
    );
  });

  it('finds the errno in the cause chain and leaves other errors alone', () => {
    const inner = Object.assign(new Error('bind EADDRINUSE'), {
      code: 'EADDRINUSE',
      syscall: 'bind',
      port: 80,
    });
    expect(explainListenError(new Error('start failed', { cause: inner }), [web])?.code).toBe(
      'LARS_ERR_ADDRESS_IN_USE',
    );
    expect(explainListenError(new Error('other'), [web])).toBeUndefined();
    expect(
      explainListenError(Object.assign(new Error('x'), { code: 'ENOENT', syscall: 'open' }), [web]),
    ).toBeUndefined();
  });
});
