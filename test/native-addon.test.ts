import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadNative, nativeStatus, socketPeerCred } from '../src/native/index.js';
import { Latch } from './helpers/latch.js';

// Under CI the addon must have been built: a silent fallback would hide a broken build.
const addon = loadNative();
const status = nativeStatus();
const skip = !addon && process.env.CI !== 'true';
const why = skip ? ` (skipped: ${status.reason})` : '';

function segName(): string {
  return `/lars-test-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** A segment created by this test and unlinked when the test ends. */
function create(size: number): { name: string; ab: ArrayBuffer } {
  const name = segName();
  const ab = addon!.map(name, size, true);
  onTestFinished(() => {
    addon!.unmap(ab);
    addon!.unlink(name);
  });
  return { name, ab };
}

/** Runs `body` in a separate Node process with `addon` (the native module) and `argv` in scope. */
function child(body: string, args: string[]): { proc: ChildProcess; done: Promise<string> } {
  const script = `const addon = require(process.argv[1]); const argv = process.argv.slice(2);\n${body}`;
  const proc = spawn(process.execPath, ['-e', script, status.path, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  onTestFinished(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<string>((resolve, reject) => {
    proc.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`child exit ${code}: ${err}`))));
  });
  return { proc, done };
}

describe('native addon', () => {
  it('is built and loads under CI', () => {
    if (process.env.CI === 'true')
      expect(status, `addon missing under CI: ${status.reason}`).toMatchObject({ loaded: true });
    expect(status.loaded).toBe(addon !== undefined);
    if (!addon) expect(status.reason).toBeTruthy();
  });

  it.skipIf(skip)(`creates a 0600 segment exclusively, opens, unmaps and unlinks it${why}`, () => {
    const { name, ab } = create(8192);
    expect(ab.byteLength).toBe(8192);
    expect(statSync(`/dev/shm${name}`).mode & 0o777).toBe(0o600);
    expect(() => addon!.map(name, 8192, true)).toThrow(
      expect.objectContaining({ code: 'EEXIST', syscall: 'shm_open' }),
    );
    expect(() => addon!.map(`${name}-missing`, 0, false)).toThrow(
      expect.objectContaining({ code: 'ENOENT' }),
    );
    expect(() => addon!.map(name, 16384, false)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => addon!.map('no-slash', 10, true)).toThrow(TypeError);
    expect(() => addon!.map('/a/b', 10, true)).toThrow(TypeError);

    const second = addon!.map(name, 0, false); // size 0: the segment's own size
    expect(second.byteLength).toBe(8192);
    const view = Buffer.from(second, 100, 10);
    new Uint8Array(ab)[100] = 42;
    expect(view[0]).toBe(42); // two mappings of one segment in one process share pages
    expect(addon!.unmap(second)).toBe(true);
    expect(view.length).toBe(0); // detached: no view can reach unmapped memory
    expect(second.byteLength).toBe(0);
    expect(addon!.unmap(second)).toBe(false);

    expect(addon!.unlink(name)).toBe(true);
    expect(addon!.unlink(name)).toBe(false);
    new Uint8Array(ab)[0] = 1; // an unlinked segment stays valid for those who map it
    expect(new Uint8Array(ab)[0]).toBe(1);
  });

  it.skipIf(skip)(`two processes see each other's writes through one segment${why}`, async () => {
    const { name, ab } = create(1 << 20);
    const mine = Buffer.from(ab);
    const pattern = randomBytes(65536);
    pattern.copy(mine, 0);
    const c = child(
      `const m = Buffer.from(addon.map(argv[0], 0, false));
       const seen = require('node:crypto').createHash('sha256').update(m.subarray(0, 65536)).digest('hex');
       if (seen !== argv[1]) { console.error('parent bytes differ'); process.exit(2); }
       for (let i = 0; i < 65536; i++) m[65536 + i] = m[i] ^ 0xff;
       console.log('written');`,
      [name, createHash('sha256').update(pattern).digest('hex')],
    );
    expect((await c.done).trim()).toBe('written');
    for (let i = 0; i < 65536; i++)
      if (mine[65536 + i] !== (pattern[i]! ^ 0xff)) expect.fail(`byte ${i} differs`);
  });

  it.skipIf(skip)(`Atomics.add and compareExchange are exact across two processes${why}`, async () => {
    // words: 0 add counter, 1 CAS counter, 2 child ready, 3 go
    const { name, ab } = create(4096);
    const words = new Int32Array(ab);
    const N = 300_000;
    const hammer = `
      const deadline = Date.now() + 20000;
      let casRetries = 0;
      for (let i = 0; i < N; i++) {
        Atomics.add(words, 0, 1);
        for (;;) {
          const v = Atomics.load(words, 1);
          if (Atomics.compareExchange(words, 1, v, v + 1) === v) break;
          casRetries++;
        }
      }`;
    const c = child(
      `const words = new Int32Array(addon.map(argv[0], 0, false)); const N = Number(argv[1]);
       Atomics.store(words, 2, 1);
       const spinUntil = Date.now() + 20000;
       while (Atomics.load(words, 3) !== 1) if (Date.now() > spinUntil) process.exit(3);
       ${hammer}
       console.log(casRetries);`,
      [name, String(N)],
    );
    const ready = Date.now() + 20_000;
    while (Atomics.load(words, 2) !== 1) {
      if (Date.now() > ready || c.proc.exitCode !== null) expect.fail('child did not map the segment');
      await new Promise((r) => setImmediate(r));
    }
    Atomics.store(words, 3, 1);
    // Same loop in this process, synchronously, while the child runs its own.
    const run = new Function('words', 'N', `${hammer}; return casRetries;`) as (
      w: Int32Array,
      n: number,
    ) => number;
    run(words, N);
    await c.done;
    expect(Atomics.load(words, 0)).toBe(2 * N);
    expect(Atomics.load(words, 1)).toBe(2 * N);
  });

  it.skipIf(skip)(
    `refuses Atomics.wait on mapped memory (an ArrayBuffer, not a SharedArrayBuffer)${why}`,
    () => {
      const { ab } = create(4096);
      const words = new Int32Array(ab);
      expect(ab instanceof SharedArrayBuffer).toBe(false);
      expect(() => Atomics.wait(words, 0, 0, 1)).toThrow(TypeError);
      expect(Atomics.notify(words, 0, 1)).toBe(0);
    },
  );

  it.skipIf(skip)(`reads a Unix-socket peer's pid, uid and gid from the kernel${why}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lars-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 's.sock');
    const accepted: Socket[] = [];
    const connected = new Latch(1, 'child connection');
    const server: Server = createServer((s) => {
      accepted.push(s);
      connected.countDown();
    });
    onTestFinished(() => {
      for (const s of accepted) s.destroy();
      server.close();
    });
    await new Promise<void>((r) => server.listen(path, r));
    const c = child(
      `const s = require('node:net').createConnection(argv[0]);
       s.on('connect', () => console.log('connected')); s.on('close', () => process.exit(0)); s.resume();`,
      [path],
    );
    await connected.wait(10_000);
    expect(socketPeerCred(accepted[0]!)).toEqual({
      pid: c.proc.pid,
      uid: process.getuid!(),
      gid: process.getgid!(),
    });
    accepted[0]!.destroy();
    await c.done;
    expect(socketPeerCred(accepted[0]!)).toBeUndefined(); // closed: no descriptor any more

    // The client side sees the server's process.
    const self = createConnection(path);
    onTestFinished(() => {
      self.destroy();
    });
    await new Promise<void>((r) => self.on('connect', r));
    expect(socketPeerCred(self)).toEqual({
      pid: process.pid,
      uid: process.getuid!(),
      gid: process.getgid!(),
    });
  });

  it.skipIf(skip)(`gives no credentials for a TCP socket${why}`, async () => {
    const server = createServer((s) => s.destroy());
    onTestFinished(() => {
      server.close();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const tcp = createConnection(port, '127.0.0.1');
    onTestFinished(() => {
      tcp.destroy();
    });
    await new Promise<void>((r) => tcp.on('connect', r));
    expect(socketPeerCred(tcp)).toBeUndefined();
  });
});
