import { Command } from 'commander';
import { connect, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../src/config/index.js';
import { controlPaths, ControlServer, controlRequest } from '../src/supervisor/control.js';
import { addressKey, HandoffServer, pickSlot, type HandoffTarget } from '../src/supervisor/handoff.js';
import { LineSplitter } from '../src/supervisor/line-splitter.js';
import { PortBook } from '../src/supervisor/ports.js';
import { RestartPolicy } from '../src/supervisor/restart-policy.js';
import {
  commandAvailable,
  commandHasOption,
  resolveStackPorts,
  SERVICES,
  STOP_GROUPS,
  type LaunchContext,
  type ServiceName,
} from '../src/supervisor/services.js';
import { supervisorSettings } from '../src/supervisor/settings.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from './supervisor-harness.js';

describe('RestartPolicy', () => {
  const policy = (max = 4) =>
    new RestartPolicy({
      maxCrashes: max,
      windowMs: 10_000,
      initialDelayMs: 100,
      maxDelayMs: 1_000,
      jitter: 0,
    });

  it('backs off exponentially and gives up at the K-th crash within the window', () => {
    const p = policy();
    expect([0, 1, 2, 3].map((t) => p.recordCrash(t * 1000))).toEqual([
      { action: 'restart', delayMs: 100, crashesInWindow: 1 },
      { action: 'restart', delayMs: 200, crashesInWindow: 2 },
      { action: 'restart', delayMs: 400, crashesInWindow: 3 },
      { action: 'give-up', crashesInWindow: 4, windowMs: 10_000 },
    ]);
    expect(p.gaveUp).toBe(true);
  });

  it('forgets crashes older than the window, caps the delay, and reset() retries', () => {
    const p = new RestartPolicy({
      maxCrashes: 10,
      windowMs: 10_000,
      initialDelayMs: 100,
      maxDelayMs: 300,
      jitter: 0,
    });
    expect(p.recordCrash(0)).toMatchObject({ delayMs: 100 });
    expect(p.recordCrash(1)).toMatchObject({ delayMs: 200 });
    expect(p.recordCrash(2)).toMatchObject({ delayMs: 300 });
    expect(p.recordCrash(3)).toMatchObject({ delayMs: 300 });
    expect(p.crashesInWindow(10_001)).toBe(2);
    expect(p.recordCrash(20_000)).toMatchObject({ action: 'restart', delayMs: 100, crashesInWindow: 1 });
    const q = policy(1);
    expect(q.recordCrash(0).action).toBe('give-up');
    q.reset();
    expect(q.gaveUp).toBe(false);
    expect(q.crashesInWindow(0)).toBe(0);
  });

  it('jitter only shortens the delay', () => {
    const p = new RestartPolicy({
      maxCrashes: 5,
      windowMs: 1000,
      initialDelayMs: 1000,
      maxDelayMs: 1000,
      jitter: 0.5,
      random: () => 1,
    });
    expect(p.recordCrash(0)).toMatchObject({ delayMs: 500 });
  });
});

describe('LineSplitter', () => {
  it('splits at every offset, strips CR, keeps the unterminated rest', () => {
    const text = 'alpha\r\nbeta\n\ngamma';
    for (let cut = 0; cut <= text.length; cut++) {
      const s = new LineSplitter();
      const lines = [...s.push(text.slice(0, cut)), ...s.push(text.slice(cut)), ...s.flush()];
      expect(lines).toEqual(['alpha', 'beta', '', 'gamma']);
    }
  });

  it('bounds a line without a newline', () => {
    const s = new LineSplitter(4);
    expect(s.push('abcdefghij')).toEqual(['abcd', 'efgh']);
    expect(s.flush()).toEqual(['ij']);
  });
});

describe('handoff selection', () => {
  it('keeps a peer on one slot and moves it to the next ready slot while its own is down', () => {
    const key = addressKey('10.0.0.7');
    expect(addressKey('10.0.0.7')).toBe(key);
    const slots = ['a', 'b', 'c'];
    const home = pickSlot(slots, key);
    expect(home).toBe(slots[key % 3]);
    const down = slots.map((s) => (s === home ? undefined : s));
    expect(pickSlot(down, key)).toBe(slots[(key + 1) % 3]);
    expect(pickSlot([undefined, undefined], key)).toBeUndefined();
  });

  it('spreads many peers over the slots', () => {
    const counts = [0, 0];
    for (let i = 0; i < 1000; i++) counts[pickSlot([0, 1], addressKey(`10.0.${i >> 8}.${i & 0xff}`))!]!++;
    expect(Math.min(...counts)).toBeGreaterThan(400);
  });

  it('hands accepted sockets to the picked worker, holding them while none is ready', async () => {
    const handed: Array<{ pid: number; socket: Socket }> = [];
    const target = (pid: number): HandoffTarget => ({
      pid,
      send: (_m, socket, cb) => {
        handed.push({ pid, socket });
        cb(null);
        return true;
      },
    });
    let slots: Array<HandoffTarget | undefined> = [undefined];
    const server = new HandoffServer({ host: '127.0.0.1', port: 0, slots: () => slots });
    const port = await server.listen();
    onTestFinished(() => server.close());
    const client = connect(port, '127.0.0.1');
    client.on('error', () => {});
    onTestFinished(() => void client.destroy());
    await eventually(() => (server.stats.held === 1 ? true : undefined), 5_000, 'held');
    slots = [target(42)];
    server.drainPending();
    expect(handed.map((h) => h.pid)).toEqual([42]);
    expect(server.stats.handed).toBe(1);
    for (const h of handed) h.socket.destroy();
  });
});

describe('control socket', () => {
  it('answers requests, refuses a second master, and uses a tmpdir socket for long data directories', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lars-ctl-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const { socket } = controlPaths(dir);
    const server = new ControlServer(socket, async (req) => ({ ok: true, pid: req.cmd === 'stop' ? 1 : 2 }));
    expect(await server.listen()).toEqual({});
    onTestFinished(() => server.close());
    expect(await controlRequest(socket, { cmd: 'stop' }, 1_000)).toEqual({ ok: true, pid: 1 });
    const second = new ControlServer(socket, async () => ({ ok: false, error: 'x' }));
    expect(await second.listen()).toEqual({ busyPid: 2 });
    const long = controlPaths('/x'.repeat(80)).socket;
    expect(long.startsWith(tmpdir())).toBe(true);
    expect(Buffer.byteLength(long)).toBeLessThan(100);
  });
});

describe('service table', () => {
  function program(withReporter: boolean): Command {
    const p = new Command('lars');
    p.command('dns').option('--host <h>').option('--port <p>').option('--http-port <p>');
    p.command('agent').option('--dns <d>');
    p.command('web').option('--host <h>').option('--port <p>').option('--db <u>');
    p.command('bus').option('--socket <p>').option('--http-port <p>');
    if (withReporter) p.command('reporter').option('--db <u>');
    p.command('shm').option('--socket <s>').option('--http-port <p>');
    return p;
  }

  async function context(withReporter: boolean, handoff = false): Promise<LaunchContext> {
    const { config, fileSections } = loadConfig({ env: {} });
    const settings = { ...supervisorSettings(config), dnsHandoff: handoff };
    const prog = program(withReporter);
    const book = new PortBook();
    const runsHere = (name: ServiceName) => commandAvailable(prog, name) && settings.workers[name] > 0;
    return {
      config,
      fileSections,
      configFile: '/etc/lars.ini',
      settings,
      dataDir: '/var/lib/lars',
      dbUrl: 'sqlite:/var/lib/lars/lars.db',
      ports: await resolveStackPorts(config, fileSections, runsHere, book, '/var/lib/lars'),
      runsHere,
      hasOption: (c, f) => commandHasOption(prog, c, f),
      book,
    };
  }

  it('launches each service with the stack ports; one entry per service', async () => {
    const ctx = await context(true);
    const byName = Object.fromEntries(SERVICES.map((s) => [s.name, s]));
    expect(Object.keys(byName)).toEqual(['shm', 'bus', 'dns', 'reporter', 'web', 'agent']);
    // The shared-memory manager first; the services find it through LARS_SHM_SOCKET.
    const shm = await byName.shm!.launch(ctx, 0);
    expect(shm.args.slice(0, 5)).toEqual([
      'shm',
      '--config',
      '/etc/lars.ini',
      '--socket',
      '/var/lib/lars/shm/shm.sock',
    ]);
    expect(shm.args[5]).toBe('--http-port');
    expect(shm.healthUrl).toBe(`http://127.0.0.1:${shm.ports.http}/healthz`);
    expect(shm.nodeFlags).toEqual(['--max-semi-space-size=1']);
    expect(byName.shm!.listen(ctx)).toEqual([{ proto: 'unix', host: '/var/lib/lars/shm/shm.sock', port: 0 }]);
    expect(STOP_GROUPS.at(-1)).toEqual(['shm']);
    const dns = await byName.dns!.launch(ctx, 0);
    expect(dns.args.slice(0, 7)).toEqual([
      'dns',
      '--config',
      '/etc/lars.ini',
      '--host',
      '127.0.0.1',
      '--port',
      '7778',
    ]);
    expect(dns.env).toMatchObject({
      LARS_SHM_SOCKET: '/var/lib/lars/shm/shm.sock',
      LARSUP_SERVICE: 'dns',
      LARSUP_SLOT: '0',
      LARS_DB: 'sqlite:/var/lib/lars/lars.db',
    });
    const agent = await byName.agent!.launch(ctx, 0);
    expect(agent.args).toEqual(
      expect.arrayContaining([
        '--dns',
        '127.0.0.1:7778',
        '--reporter',
        '127.0.0.1:7779',
        '--ports',
        '8888,8889,8890',
      ]),
    );
    // The reporter has no --host/--port flags here: its address goes through LARS_REPORTER_*.
    const reporter = await byName.reporter!.launch(ctx, 0);
    expect(reporter.env).toMatchObject({ LARS_REPORTER_IP: '127.0.0.1', LARS_REPORTER_PORT: '7779' });
    expect(reporter.args).toEqual([
      'reporter',
      '--config',
      '/etc/lars.ini',
      '--db',
      'sqlite:/var/lib/lars/lars.db',
    ]);
    expect(reporter.readyPort).toBe(7779);
    const bus = await byName.bus!.launch(ctx, 0);
    expect(bus.args.slice(0, 5)).toEqual([
      'bus',
      '--config',
      '/etc/lars.ini',
      '--socket',
      '/var/lib/lars/bus/bus.sock',
    ]);
    expect(bus.args[5]).toBe('--http-port');
    expect(bus.healthUrl).toBe(`http://127.0.0.1:${bus.args[6]}/healthz`);
    const web = await byName.web!.launch(ctx, 0);
    expect(web.args).toEqual([
      'web',
      '--config',
      '/etc/lars.ini',
      '--host',
      '127.0.0.1',
      '--port',
      '8080',
      '--db',
      'sqlite:/var/lib/lars/lars.db',
    ]);
  });

  it('without a reporter command the agent runs without statistics; handoff gives dns a private port', async () => {
    const ctx = await context(false, true);
    const agent = await SERVICES.find((s) => s.name === 'agent')!.launch(ctx, 0);
    expect(agent.args).toContain('--no-reporter');
    const dns = await SERVICES.find((s) => s.name === 'dns')!.launch(ctx, 1);
    expect(dns.env.LARSUP_HANDOFF).toBe('1');
    expect(dns.ports.tcp).toBe(7778);
    expect(dns.ports.internal).not.toBe(7778);
    expect(dns.args[dns.args.indexOf('--port') + 1]).toBe(String(dns.ports.internal));
  });
});
